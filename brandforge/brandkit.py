"""The brand kit (`brand.yaml` beside a brand's images), validated like `params.yaml`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from brandforge.params import format_validation_errors

_HEX = re.compile(r"^#[0-9A-Fa-f]{6}$")


class BrandKitError(ValueError):
    """`brand.yaml` is missing, unreadable or does not match the schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_hex(value: str) -> str:
    if not _HEX.match(value):
        raise ValueError(f"{value!r} is not a #RRGGBB colour")
    return value.upper()


class PaletteColor(_Strict):
    name: str = Field(min_length=1)
    hex: str
    share: float | None = Field(None, ge=0, le=1, description="expected share of the image")
    role: str | None = None  # e.g. primary, background, accent

    @field_validator("hex")
    @classmethod
    def _valid_hex(cls, value: str) -> str:
        return _check_hex(value)

    @property
    def rgb(self) -> tuple[int, int, int]:
        return (int(self.hex[1:3], 16), int(self.hex[3:5], 16), int(self.hex[5:7], 16))


Placement = Literal["top-left", "top-right", "bottom-left", "bottom-right", "center"]


class LogoRules(_Strict):
    file: str
    placement: list[Placement] = Field(default_factory=lambda: list[Placement](["bottom-right"]))
    min_width_share: float = Field(0.05, gt=0, le=1)
    max_width_share: float = Field(0.3, gt=0, le=1)


class QualityFloors(_Strict):
    """Per-brand overrides of the compliance limits; None keeps the evaluation default."""

    min_sharpness: float | None = Field(None, ge=0, description="variance of the Laplacian")
    max_blur: float | None = Field(None, ge=0, le=1, description="blur effect, 0 sharp .. 1")
    max_noise: float | None = Field(None, ge=0, description="noise sigma, grey levels")
    max_blockiness: float | None = Field(None, ge=0, description="compression block artefacts")
    max_clipped_share: float | None = Field(None, ge=0, le=1)
    min_palette_adherence: float | None = Field(None, ge=0, le=1)
    max_off_palette_share: float | None = Field(
        None, ge=0, le=1, description="largest single non-brand colour, share of the image"
    )
    max_palette_balance_distance: float | None = Field(None, ge=0, le=1)
    max_forbidden_share: float | None = Field(None, ge=0, le=1)


class BrandKit(_Strict):
    name: str = Field(min_length=1)
    trigger: str | None = Field(None, description="phrase that invokes the brand in prompts")
    palette: list[PaletteColor] = Field(min_length=1)
    forbidden_colors: list[str] = Field(default_factory=list)
    color_tolerance: float = Field(12.0, gt=0, le=100, description="CIEDE2000")
    logo: LogoRules | None = None
    fonts: list[str] = Field(default_factory=list)
    banned_terms: list[str] = Field(default_factory=list)
    aspect_ratios: list[str] = Field(default_factory=lambda: ["1:1"])
    min_text_contrast: float = Field(4.5, ge=1, le=21, description="WCAG contrast ratio")
    quality: QualityFloors = QualityFloors()

    @field_validator("forbidden_colors")
    @classmethod
    def _forbidden_hex(cls, value: list[str]) -> list[str]:
        return [_check_hex(v) for v in value]

    @field_validator("aspect_ratios")
    @classmethod
    def _ratios(cls, value: list[str]) -> list[str]:
        for r in value:
            if not re.match(r"^[1-9]\d*:[1-9]\d*$", r):
                raise ValueError(f"{r!r} is not an aspect ratio like 4:5")
        return value

    @model_validator(mode="after")
    def _shares(self) -> BrandKit:
        shares = [c.share for c in self.palette if c.share is not None]
        if shares and sum(shares) > 1.0 + 1e-6:
            raise ValueError(f"palette shares add up to {sum(shares):.3f}, more than 1")
        names = [c.name for c in self.palette]
        if len(set(names)) != len(names):
            raise ValueError("palette colour names must be unique")
        return self

    @property
    def phrase(self) -> str:
        """What a prompt says to ask for this brand (the trigger, else the name)."""
        return self.trigger or self.name


def load_brand_kit(path: str | Path) -> BrandKit:
    """Read and validate a `brand.yaml`; errors name the file and every bad key."""
    path = Path(path)
    if path.is_dir():
        path = path / "brand.yaml"
    if not path.is_file():
        raise BrandKitError(f"{path}: brand kit not found (every brand folder needs brand.yaml)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise BrandKitError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise BrandKitError(f"{path}: expected a mapping of brand settings")
    try:
        return BrandKit.model_validate(raw)
    except ValidationError as err:
        raise BrandKitError(format_validation_errors(err, str(path))) from None
