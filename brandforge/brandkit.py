"""The brand kit (`brand.yaml` beside a brand's images), validated like `params.yaml`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from brandforge.names import Brand
from brandforge.params import format_validation_errors

_HEX = re.compile(r"^#[0-9A-Fa-f]{6}$")
_RATIO = re.compile(r"^([1-9]\d*):([1-9]\d*)$")
_FONT_SUFFIXES = (".ttf", ".otf")


class BrandKitError(ValueError):
    """`brand.yaml` is missing, unreadable or does not match the schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_hex(value: str) -> str:
    if not _HEX.match(value):
        raise ValueError(f"{value!r} is not a #RRGGBB colour")
    return value.upper()


def _check_ratio(value: str) -> str:
    if not _RATIO.match(value):
        raise ValueError(f"{value!r} is not an aspect ratio like 4:5")
    return value


def parse_ratio(ratio: str) -> tuple[int, int]:
    """Width and height terms of an aspect ratio like "4:5"; ValueError names a bad one."""
    match = _RATIO.match(ratio)
    if not match:
        raise ValueError(f"{ratio!r} is not an aspect ratio like 4:5")
    return int(match.group(1)), int(match.group(2))


AspectRatio = Annotated[str, AfterValidator(_check_ratio)]


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


# A composed asset's text is never smaller than one line of `min_size` plus the plate's padding
# (compose pads by 0.2 of the font size above and below); fonts' line heights run to about 1.3
# of their size, so a text box shorter than this many `min_size` cannot hold one line.
_MIN_BOX_LINES = 1.75


class Box(_Strict):
    """A rectangle in relative image coordinates: x, y of the top-left corner and w, h, as shares
    of the image width and height (0..1), so one layout serves every output size of a ratio."""

    x: float = Field(ge=0, le=1)
    y: float = Field(ge=0, le=1)
    w: float = Field(gt=0, le=1)
    h: float = Field(gt=0, le=1)

    @model_validator(mode="after")
    def _inside(self) -> Box:
        if self.x + self.w > 1 + 1e-9 or self.y + self.h > 1 + 1e-9:
            raise ValueError(
                f"box reaches x {self.x + self.w:.3g}, y {self.y + self.h:.3g}; "
                "x + w and y + h must be at most 1 (shares of the image)"
            )
        return self

    @property
    def placement(self) -> Placement:
        """The logo placement this box is in, by its centre: the centre ninth, else the nearest
        corner (the rule evaluation.logo.logo_placement applies to a found logo)."""
        cx, cy = self.x + self.w / 2, self.y + self.h / 2
        if 1 / 3 <= cx <= 2 / 3 and 1 / 3 <= cy <= 2 / 3:
            return "center"
        vertical = "top" if cy < 0.5 else "bottom"
        horizontal = "left" if cx < 0.5 else "right"
        return f"{vertical}-{horizontal}"  # type: ignore[return-value]


class TextBox(_Strict):
    """Where and how one text (headline, call to action) is set on a composed asset."""

    box: Box
    align: Literal["left", "center", "right"] = "left"
    valign: Literal["top", "middle", "bottom"] = "middle"
    max_size: float = Field(0.08, gt=0, le=0.5, description="font px as a share of image height")
    min_size: float = Field(0.03, gt=0, le=0.5, description="font px as a share of image height")
    color: str | None = Field(None, description="palette colour name; else the best contrast")
    background: str | None = Field(None, description="palette colour name of a plate behind")

    @model_validator(mode="after")
    def _sizes(self) -> TextBox:
        if self.min_size > self.max_size:
            raise ValueError(f"min_size {self.min_size} is larger than max_size {self.max_size}")
        if self.box.h < _MIN_BOX_LINES * self.min_size - 1e-9:
            raise ValueError(
                f"box.h {self.box.h} cannot hold one line at min_size {self.min_size} "
                f"(needs at least {_MIN_BOX_LINES * self.min_size:.3g})"
            )
        return self


class Layout(_Strict):
    """Where a composed asset's logo and texts go, for one aspect ratio (`layouts:` key)."""

    safe_margin: float = Field(0.05, ge=0, lt=0.5, description="share of the short side")
    logo: Box | None = Field(None, description="the logo is fitted inside, keeping its shape")
    headline: TextBox | None = None
    cta: TextBox | None = None

    def safe_box(self, ratio: str) -> Box:
        """The area inside the safe margin, in relative coordinates of an image of `ratio`."""
        width, height = parse_ratio(ratio)
        short = min(width, height)
        mx = self.safe_margin * short / width
        my = self.safe_margin * short / height
        return Box(x=mx, y=my, w=1 - 2 * mx, h=1 - 2 * my)

    def boxes(self) -> dict[str, Box]:
        """The layout's boxes by key (logo, headline.box, cta.box), for checks and drawing."""
        found = {"logo": self.logo}
        found["headline.box"] = self.headline.box if self.headline else None
        found["cta.box"] = self.cta.box if self.cta else None
        return {key: box for key, box in found.items() if box is not None}


def default_layout(
    ratio: str,
    *,
    logo_placement: Placement = "bottom-right",
    logo_width_share: float = 0.15,
    safe_margin: float = 0.05,
) -> Layout:
    """The layout used for a ratio the brand kit gives none for: headline across the top, logo
    in its (first allowed) placement, call to action in the bottom corner the logo leaves free.

    The logo box is `logo_width_share` of the width and square in pixels (at most a fifth of
    the height); compose fits the logo inside it, pinned to the corner.
    """
    width, height = parse_ratio(ratio)
    short = min(width, height)
    mx, my = safe_margin * short / width, safe_margin * short / height
    logo_w = logo_width_share
    logo_h = min(logo_width_share * width / height, 0.2)
    vertical, _, horizontal = logo_placement.partition("-")
    if logo_placement == "center":
        logo = Box(x=(1 - logo_w) / 2, y=(1 - logo_h) / 2, w=logo_w, h=logo_h)
    else:
        logo = Box(
            x=mx if horizontal == "left" else 1 - mx - logo_w,
            y=my if vertical == "top" else 1 - my - logo_h,
            w=logo_w,
            h=logo_h,
        )
    headline_top = logo.y + logo.h + my if vertical == "top" else my
    headline = TextBox(
        box=Box(x=mx, y=headline_top, w=1 - 2 * mx, h=0.22),
        align="center",
        valign="top",
        max_size=0.08,
        min_size=0.03,
    )
    cta_h = 0.1
    cta_w = 0.5 - mx - mx / 2
    cta_right = logo_placement == "bottom-left"
    cta = TextBox(
        box=Box(x=1 - mx - cta_w if cta_right else mx, y=1 - my - cta_h, w=cta_w, h=cta_h),
        align="right" if cta_right else "left",
        valign="bottom",
        max_size=0.05,
        min_size=0.025,
    )
    return Layout(safe_margin=safe_margin, logo=logo, headline=headline, cta=cta)


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
    # Region rules: the worst tile of the image (evaluation/regions.py).
    max_region_noise: float | None = Field(None, ge=0, description="noise sigma in one tile")
    max_region_blur_ratio: float | None = Field(
        None, ge=1, description="a tile's edge width over the median tile's"
    )
    max_region_blockiness: float | None = Field(None, ge=0, le=1)
    max_region_off_palette_share: float | None = Field(
        None, ge=0, le=1, description="largest single non-brand colour, share of one tile"
    )
    max_region_forbidden_share: float | None = Field(
        None, ge=0, le=1, description="forbidden colours, share of one tile"
    )


class BrandKit(_Strict):
    name: Brand  # the brand's id: its registered model, folders and API scope are named by it
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
    font_file: str | None = Field(None, description=".ttf/.otf in the brand folder")
    layouts: dict[AspectRatio, Layout] = Field(default_factory=dict)

    @field_validator("font_file")
    @classmethod
    def _font_file(cls, value: str | None) -> str | None:
        if value is None:
            return value
        path = Path(value)
        if path.is_absolute() or ".." in path.parts:
            raise ValueError(f"{value!r} must be a path inside the brand folder")
        if path.suffix.lower() not in _FONT_SUFFIXES:
            raise ValueError(f"{value!r} is not a .ttf or .otf font file")
        return value

    @field_validator("layouts")
    @classmethod
    def _layouts_fit_the_kit(
        cls, value: dict[str, Layout], info: ValidationInfo
    ) -> dict[str, Layout]:
        # Checks that need the rest of the kit: the palette, the logo rules, the contrast floor
        # (declared above `layouts`, so validated first; skipped when they were invalid). Each
        # problem is reported at its own key, e.g. layouts.9:16.cta.color.
        palette = {c.name: c for c in info.data.get("palette", [])}
        logo: LogoRules | None = info.data.get("logo")
        floor = info.data.get("min_text_contrast")
        problems: list[InitErrorDetails] = []

        def problem(loc: tuple[str, ...], message: str, given: object) -> None:
            error = PydanticCustomError("layout", "{message}", {"message": message})
            problems.append(InitErrorDetails(type=error, loc=loc, input=given))

        for ratio, layout in value.items():
            safe = layout.safe_box(ratio)
            for key, box in layout.boxes().items():
                if (
                    box.x < safe.x - 1e-9
                    or box.y < safe.y - 1e-9
                    or box.x + box.w > safe.x + safe.w + 1e-9
                    or box.y + box.h > safe.y + safe.h + 1e-9
                ):
                    problem(
                        (ratio, *key.split(".")),
                        f"outside the safe margin {layout.safe_margin:g}: boxes must lie "
                        f"within x {safe.x:.3g}..{safe.x + safe.w:.3g}, "
                        f"y {safe.y:.3g}..{safe.y + safe.h:.3g}",
                        box.model_dump(),
                    )
            if layout.logo is not None and logo is not None:
                if layout.logo.placement not in logo.placement:
                    problem(
                        (ratio, "logo"),
                        f"the box is at {layout.logo.placement}; logo.placement allows "
                        f"{', '.join(logo.placement)}",
                        layout.logo.model_dump(),
                    )
                if layout.logo.w < logo.min_width_share - 1e-9:
                    problem(
                        (ratio, "logo", "w"),
                        f"narrower than logo.min_width_share {logo.min_width_share:g}",
                        layout.logo.w,
                    )
            for name, text in (("headline", layout.headline), ("cta", layout.cta)):
                if text is None:
                    continue
                for field in ("color", "background"):
                    colour = getattr(text, field)
                    if colour is not None and palette and colour not in palette:
                        problem(
                            (ratio, name, field),
                            f"not a palette colour (palette: {', '.join(palette)})",
                            colour,
                        )
                fg, bg = palette.get(text.color or ""), palette.get(text.background or "")
                if fg is not None and bg is not None and floor is not None:
                    from brandforge.wcag import contrast_ratio

                    contrast = contrast_ratio(fg.rgb, bg.rgb)
                    if contrast < floor:
                        problem(
                            (ratio, name),
                            f"{fg.name} on {bg.name} has contrast {contrast:.2f}:1, below "
                            f"min_text_contrast {floor:g}:1",
                            {"color": fg.name, "background": bg.name},
                        )
        if problems:
            raise ValidationError.from_exception_data("layouts", problems)
        return value

    @field_validator("forbidden_colors")
    @classmethod
    def _forbidden_hex(cls, value: list[str]) -> list[str]:
        return [_check_hex(v) for v in value]

    @field_validator("aspect_ratios")
    @classmethod
    def _ratios(cls, value: list[str]) -> list[str]:
        return [_check_ratio(r) for r in value]

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

    def layout_for(self, ratio: str) -> Layout:
        """The kit's layout for an aspect ratio, else `default_layout` with its logo rules."""
        if ratio in self.layouts:
            return self.layouts[ratio]
        if self.logo is None:
            return default_layout(ratio)
        share = min(max(0.15, self.logo.min_width_share), self.logo.max_width_share)
        return default_layout(ratio, logo_placement=self.logo.placement[0], logo_width_share=share)


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
