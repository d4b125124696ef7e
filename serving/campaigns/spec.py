"""What a campaign asks for, and the items it expands to: pure, no database, no HTTP.

A campaign is a prompt template expanded over its variables (`{"product": [...], "season":
[...]}`), for each channel's aspect ratio and `variants` seeds per combination. The spec is
validated whole before anything is queued, on the expanded result as well as the input: a
template may only use plain `{name}` fields naming its variables (or `{brand}`), so it cannot
pad, convert or index a value, and the longest prompt it can expand to must fit the generator's
prompt limit (`serving.text.PROMPT_MAX`), so a small template cannot store thousands of huge
prompts.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from brandforge.names import Brand
from serving.text import PROMPT_MAX, OptionalText, Prompt, check_optional_text, check_text

# A campaign is a batch job, not a bulk loader: more items than this is a request to split it.
MAX_ITEMS = 5000
MAX_VARIABLES = 16
MAX_VALUES = 200  # values per variable
VALUE_MAX = 200  # characters per value
# The longest expanded headline and call to action: more text than this does not fit a banner.
HEADLINE_MAX = 400
CTA_MAX = 200
STILL = ("png", "jpeg", "webp", "heic", "svg")
MOTION = ("gif", "mp4")
StillFormat = Literal["png", "jpeg", "webp", "heic", "svg"]
_RATIO = re.compile(r"^[1-9]\d{0,2}:[1-9]\d{0,2}$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


Value = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=VALUE_MAX),
    AfterValidator(check_text),
]
Headline = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=200), AfterValidator(check_text)
]
Cta = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=100), AfterValidator(check_text)
]
Label = Annotated[
    str, StringConstraints(strict=True, max_length=200), AfterValidator(check_optional_text)
]


def _default_formats() -> list[StillFormat]:
    return ["png"]


class MotionSpec(BaseModel):
    """A short loop made by walking around a circle between two seeds' starting noise."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["gif", "mp4"] = "gif"
    frames: int | None = Field(
        None, strict=True, ge=2, le=96, description="default 8, or duration x fps"
    )
    fps: float = Field(8.0, strict=True, gt=0, le=60, allow_inf_nan=False)
    duration_s: float | None = Field(
        None, strict=True, gt=0, le=12, allow_inf_nan=False, description="loop length in seconds"
    )

    @model_validator(mode="after")
    def _length(self) -> MotionSpec:
        if self.frames is not None and self.duration_s is not None:
            if abs(self.frames / self.fps - self.duration_s) > 0.5 / self.fps:
                raise ValueError(
                    f"frames {self.frames} at {self.fps:g} fps last "
                    f"{self.frames / self.fps:.2f} s, not duration_s {self.duration_s:g}: "
                    "give two of frames, fps and duration_s"
                )
        return self

    @property
    def frame_count(self) -> int:
        """Frames of the loop: `frames`, else `duration_s` x `fps` (at least 2, at most 96)."""
        if self.frames is not None:
            return self.frames
        if self.duration_s is not None:
            return max(2, min(96, round(self.duration_s * self.fps)))
        return 8


class CampaignSpec(BaseModel):
    """`POST /v1/campaigns`: what to make. Texts (`headline`, `cta`) are templates like the
    prompt; they are composed on top of the generated background, never drawn by the model."""

    model_config = ConfigDict(extra="forbid")

    brand: Brand
    name: Label = ""
    template: Prompt  # the same rules as a live prompt
    variables: dict[str, list[Value]] = Field(default_factory=dict)
    negative_prompt: OptionalText | None = None
    ratios: list[str] = Field(default_factory=lambda: ["1:1"], min_length=1, max_length=12)
    variants: int = Field(1, strict=True, ge=1, le=16, description="seeds per combination, ratio")
    formats: list[StillFormat] = Field(default_factory=_default_formats, min_length=1)
    motion: MotionSpec | None = None
    headline: Headline | None = None
    cta: Cta | None = None
    size: int = Field(
        1024, strict=True, ge=32, le=4096, description="long side of the delivered asset, px"
    )
    generation_size: int | None = Field(
        None,
        strict=True,
        ge=16,
        le=2048,
        description="long side the model draws at, px (default: the version's native size)",
    )
    steps: int | None = Field(None, strict=True, ge=1, le=150)
    guidance: float | None = Field(None, strict=True, ge=0, le=30, allow_inf_nan=False)
    seed: int | None = Field(
        None, strict=True, ge=0, lt=2**62, description="base seed (default: random)"
    )
    priority: int = Field(0, strict=True, ge=-100, le=100)
    deadline: datetime | None = None
    max_regenerations: int = Field(2, strict=True, ge=0, le=10)
    review: bool = Field(False, strict=True, description="send every item to human review")
    idempotency_key: Label | None = None

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if len(value) > MAX_VARIABLES:
            raise ValueError(f"{len(value)} variables (at most {MAX_VARIABLES})")
        for name, values in value.items():
            if not _VARIABLE.match(name):
                raise ValueError(f"variable name {name[:80]!r} must be an identifier")
            if not values:
                raise ValueError(f"variable {name!r} has no values")
            if len(values) > MAX_VALUES:
                raise ValueError(
                    f"variable {name!r} has {len(values)} values (at most {MAX_VALUES})"
                )
        return value

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, value: list[str]) -> list[str]:
        for r in value:
            if not isinstance(r, str) or not _RATIO.match(r):
                raise ValueError(f"{str(r)[:40]!r} is not an aspect ratio like 4:5")
        if len(set(value)) != len(value):
            raise ValueError("ratios repeat")
        return value

    @field_validator("deadline")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("deadline needs a time zone (e.g. 2026-12-01T09:00:00Z)")
        return value

    @model_validator(mode="after")
    def _templates(self) -> CampaignSpec:
        longest = {name: max(len(v) for v in values) for name, values in self.variables.items()}
        longest["brand"] = len(self.brand)
        limits = {"template": PROMPT_MAX, "headline": HEADLINE_MAX, "cta": CTA_MAX}
        for field, limit in limits.items():
            text = getattr(self, field)
            if text is None:
                continue
            expanded = expanded_length(text, field=field, longest=longest)
            if expanded > limit:
                raise ValueError(
                    f"{field} expands to texts of up to {expanded} characters with the longest "
                    f"values (at most {limit}); shorten the {field} or the values"
                )
        if self.item_count() > MAX_ITEMS:
            raise ValueError(
                f"the campaign expands to {self.item_count()} items (at most {MAX_ITEMS}); split it"
            )
        return self

    def item_count(self) -> int:
        combos = 1
        for values in self.variables.values():
            combos *= len(values)
        return combos * len(self.ratios) * self.variants


def template_fields(text: str, *, field: str, known: set[str]) -> list[str]:
    """The names `text` fills, in order of use; ValueError naming `field` when it uses anything
    but plain `{name}` fields of `known` (no format spec, conversion, index or attribute)."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as err:
        raise ValueError(f"{field}: {err} (write literal braces as {{{{ and }}}})") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion is not None:
            written = name + (f"!{conversion}" if conversion is not None else "")
            written += f":{spec}" if spec else ""
            raise ValueError(
                f"{field} uses {{{written[:60]}}}: only plain fields like {{brand}} are allowed "
                "(no format spec or conversion)"
            )
        if name not in known:
            raise ValueError(
                f"{field} uses {{{name[:60]}}} but variables define only "
                f"{sorted(known - {'brand'}) or 'none'} (and {{brand}})"
            )
        names.append(name)
    return names


def expanded_length(text: str, *, field: str, longest: Mapping[str, int]) -> int:
    """The length of the longest text `text` expands to, given each name's longest value: the
    literal text plus, for every field, its longest value (each variable is chosen freely)."""
    names = template_fields(text, field=field, known=set(longest))
    literal = sum(len(lit) for lit, _, _, _ in string.Formatter().parse(text))
    return literal + sum(longest[n] for n in names)


@dataclass(frozen=True)
class PlannedItem:
    key: str
    values: dict[str, str]
    prompt: str
    ratio: str
    variant_index: int


def expand(spec: CampaignSpec) -> list[PlannedItem]:
    """Every item of a campaign, in a stable order; keys depend only on the spec."""
    names = sorted(spec.variables)
    combos = itertools.product(*(spec.variables[n] for n in names)) if names else [()]
    items = []
    for c_index, combo in enumerate(combos):
        values = dict(zip(names, combo, strict=True))
        prompt = spec.template.format(brand=spec.brand, **values)
        for ratio in spec.ratios:
            for v in range(spec.variants):
                key = f"{c_index}:{ratio}:{v}"
                items.append(PlannedItem(key, values, prompt, ratio, v))
    return items


def fill(text: str | None, brand: str, values: dict[str, str]) -> str | None:
    """A headline or call-to-action template with the item's values."""
    return None if text is None else text.format(brand=brand, **values)


def ratio_size(ratio: str, long_side: int, multiple: int = 8) -> tuple[int, int]:
    """(width, height) of `ratio` with the given long side, both multiples of `multiple`."""
    w, h = (int(x) for x in ratio.split(":"))
    scale = long_side / max(w, h)
    width = max(multiple, round(w * scale / multiple) * multiple)
    height = max(multiple, round(h * scale / multiple) * multiple)
    return width, height


def item_seed(base_seed: int, key: str, attempt: int = 0) -> int:
    """The seed of an item's `attempt`-th render: fixed by the campaign's base seed and the
    item's key, so a re-run after a crash draws the same image."""
    digest = hashlib.sha256(f"{base_seed}:{key}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:7], "big")
