"""Brand compliance of one image: every rule of the brand kit, a score and the violations.

The rules, their defaults (chosen for real marketing images, overridable per brand in
`brand.yaml` under `quality:`) and the score are documented in README.md ("Compliance report").
An `error` violation fails the image; a `warning` lowers its score but does not fail it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from brandforge.brandkit import BrandKit, LogoRules
from evaluation import regions
from evaluation.palette import (
    PaletteDistances,
    expected_shares,
    hex_to_rgb,
    largest_off_palette_color,
    near_colors,
    off_palette_mask,
    palette_balance_distance,
    palette_distances,
    palette_report,
    rgb_to_hex,
    subsample,
    subsample_step,
)
from evaluation.quality import (
    ANALYSIS_MAX_SIDE,
    DEFAULT_QUALITY_FLOORS,
    QualityFloors,
    analysis_view,
    luminance,
    quality_metrics,
)

# Palette rules for real marketing images: brand colours dominate, but photography, gradients,
# anti-aliased edges and text take their share, so half the pixels is the floor, not 90 %.
DEFAULT_MIN_PALETTE_ADHERENCE = 0.5
# One non-brand colour covering a sixth of the image is a design decision the brand did not make
# (a swapped background or block colour); gradients and photos spread over many colours instead.
DEFAULT_MAX_OFF_PALETTE_SHARE = 0.15
# How far the on-palette pixels may stray from the brand's intended shares before a warning.
DEFAULT_MAX_PALETTE_BALANCE_DISTANCE = 0.45
# Forbidden colours are forbidden: half a percent of the image (a small badge) already counts.
DEFAULT_MAX_FORBIDDEN_SHARE = 0.005

# Region rules (evaluation/regions.py): the worst tile of a 6x6 grid (tiles a sixth of the
# short side, at least 16 px; none below 128 px a side), calibrated on the demo brand's visuals
# (README, "Compliance rules and defaults": clean worst tile vs a local defect covering 10 %).
# Noise across the tile's dominant colour axis, grey levels: clean at most 1.6 (JPEG q85 of
# dot patterns), a patch of sigma-25 noise about 25; 8 leaves room for a photo's grain.
DEFAULT_MAX_REGION_NOISE = 8.0
# Mean strong-edge width over the median tile's: clean at most 1.8, a 2 px (at 256) blur over
# the shapes' edges 2.8 and more.
DEFAULT_MAX_REGION_BLUR_RATIO = 2.4
# Tile blockiness (4-level steps, prior 16): the weakest separation. Clean at most 0.12 at
# 256 px but 0.244 at 512 px JPEG q85 (1 of 80 visuals); a JPEG q5 block of shaded content
# 0.27-0.38 (one tile's count saturates near 0.27). Set to pass every clean visual measured.
DEFAULT_MAX_REGION_BLOCKINESS = 0.25
# Largest single non-brand colour, share of one tile: clean at most 0.5 (1 px stripes, whose
# chroma JPEG q85 averages off the blend line), a patch in a wrong colour fills 0.9 of a tile.
DEFAULT_MAX_REGION_OFF_PALETTE_SHARE = 0.7
# Forbidden colour, share of one tile: a 5 % cluster (0.14 % of the image, under the whole-image
# 0.5 %) is a visible element in that colour, where the same pixels scattered are fringes.
DEFAULT_MAX_REGION_FORBIDDEN_SHARE = 0.05

# Pixels the palette rules look at: every pixel up to 512 x 512, a regular subsample above.
_PALETTE_SAMPLE = 262_144

# Weights of the score's components; components that do not apply are left out and the rest
# renormalised (a brand without a logo is not scored on logos).
_WEIGHTS = {
    "palette": 0.35,
    "off_palette": 0.1,
    "balance": 0.1,
    "forbidden": 0.15,
    "quality": 0.2,
    "text": 0.05,
    "logo": 0.05,
}

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Violation:
    rule: str
    value: float
    limit: float
    severity: Severity = "error"
    message: str = ""
    box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) of the tile, region rules


@dataclass(frozen=True)
class ComplianceReport:
    score: float  # 0..1, weighted mean of the rule components (README: "Compliance report")
    passed: bool  # no error-severity violation
    violations: list[Violation]
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "passed": self.passed,
            "violations": [_violation_dict(v) for v in self.violations],
            "metrics": self.metrics,
        }


def _violation_dict(v: Violation) -> dict[str, Any]:
    d = asdict(v)
    d["value"] = _round(v.value)
    d["limit"] = _round(v.limit)
    if v.box is None:
        del d["box"]  # whole-image rules keep the keys they always had
    else:
        d["box"] = list(v.box)
    return d


def _round(value: float) -> float:
    return float(f"{value:.4g}")


@dataclass(frozen=True)
class RegionLimits:
    """Limits on the worst tile (evaluation/regions.py), each named like its `quality:` key."""

    max_region_noise: float = DEFAULT_MAX_REGION_NOISE
    max_region_blur_ratio: float = DEFAULT_MAX_REGION_BLUR_RATIO
    max_region_blockiness: float = DEFAULT_MAX_REGION_BLOCKINESS
    max_region_off_palette_share: float = DEFAULT_MAX_REGION_OFF_PALETTE_SHARE
    max_region_forbidden_share: float = DEFAULT_MAX_REGION_FORBIDDEN_SHARE


DEFAULT_REGION_LIMITS = RegionLimits()


@dataclass(frozen=True)
class Limits:
    """The limits in force for one brand: its `quality:` overrides over the defaults."""

    min_palette_adherence: float
    max_off_palette_share: float
    max_palette_balance_distance: float
    max_forbidden_share: float
    min_text_contrast: float
    quality: QualityFloors
    regions: RegionLimits = DEFAULT_REGION_LIMITS


def brand_limits(kit: BrandKit) -> Limits:
    q = kit.quality

    def pick(value: float | None, default: float) -> float:
        return default if value is None else value

    floors = DEFAULT_QUALITY_FLOORS
    return Limits(
        min_palette_adherence=pick(q.min_palette_adherence, DEFAULT_MIN_PALETTE_ADHERENCE),
        max_off_palette_share=pick(q.max_off_palette_share, DEFAULT_MAX_OFF_PALETTE_SHARE),
        max_palette_balance_distance=pick(
            q.max_palette_balance_distance, DEFAULT_MAX_PALETTE_BALANCE_DISTANCE
        ),
        max_forbidden_share=pick(q.max_forbidden_share, DEFAULT_MAX_FORBIDDEN_SHARE),
        min_text_contrast=kit.min_text_contrast,
        quality=QualityFloors(
            max_blur=pick(q.max_blur, floors.max_blur),
            max_noise=pick(q.max_noise, floors.max_noise),
            max_blockiness=pick(q.max_blockiness, floors.max_blockiness),
            max_clipped_share=pick(q.max_clipped_share, floors.max_clipped_share),
            min_sharpness=q.min_sharpness if q.min_sharpness is not None else floors.min_sharpness,
        ),
        regions=RegionLimits(
            **{
                name: pick(getattr(q, name), default)
                for name, default in asdict(DEFAULT_REGION_LIMITS).items()
            }
        ),
    )


def compliance_report(
    image: np.ndarray,
    kit: BrandKit,
    *,
    logo: np.ndarray | None = None,
    text_boxes: list[tuple[int, int, int, int]] | None = None,
    limits: Limits | None = None,
) -> ComplianceReport:
    """Score one sRGB `uint8` (H, W, 3) image against the brand kit.

    Args:
        logo: the brand's logo (RGB or RGBA array) when the kit names one; its presence is checked.
        text_boxes: where a composed asset put its text; without them text is searched for.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    limits = limits or brand_limits(kit)
    found = _Findings(metrics={"width": int(image.shape[1]), "height": int(image.shape[0])})
    # Quality first: a blank frame is a failure whatever its colour, and nothing else is
    # meaningful on it.
    if _judge_quality(image, limits, found):
        return ComplianceReport(
            score=0.0, passed=False, violations=found.violations, metrics=found.metrics
        )
    near, forbidden = _judge_palette(image, kit, limits, found)
    # Regions: the same statistics per tile, so a defect confined to one area does not average
    # away (README: "Compliance rules and defaults").
    palette = [c.rgb for c in kit.palette]
    found.metrics["regions"], in_regions = _region_checks(
        image,
        near,
        off_palette_mask(near, palette, kit.color_tolerance),
        forbidden,
        kit.color_tolerance,
        limits,
    )
    found.violations.extend(in_regions)
    _judge_text(image, text_boxes, limits, found)
    if kit.logo is not None and logo is not None:
        _judge_logo(image, logo, kit.logo, found)
    return found.report()


@dataclass
class _Findings:
    """What the rules found so far: violations, score components (0..1, weighted by
    `_WEIGHTS`; a rule that does not apply adds none) and the metrics of the report."""

    metrics: dict[str, Any]
    violations: list[Violation] = field(default_factory=list)
    components: dict[str, float] = field(default_factory=dict)

    def fail(
        self, rule: str, value: float, limit: float, message: str, severity: Severity = "error"
    ) -> None:
        self.violations.append(Violation(rule, value, limit, severity, message))

    def report(self) -> ComplianceReport:
        total = sum(_WEIGHTS[k] for k in self.components)
        score = sum(_WEIGHTS[k] * v for k, v in self.components.items()) / total
        return ComplianceReport(
            score=float(np.clip(score, 0.0, 1.0)),
            passed=not any(v.severity == "error" for v in self.violations),
            violations=self.violations,
            metrics=self.metrics,
        )


def _judge_quality(image: np.ndarray, limits: Limits, found: _Findings) -> bool:
    """The quality floors (README: "Compliance rules and defaults"); True for a blank frame."""
    from evaluation.quality import quality_violations

    quality = quality_metrics(image)
    found.metrics["quality"] = {
        k: _round(v) if isinstance(v, float) else v for k, v in asdict(quality).items()
    }
    failed = quality_violations(quality, limits.quality)
    for rule, value, limit in failed:
        found.fail(rule, value, limit, _QUALITY_MESSAGES.get(rule, ""))
    if not quality.blank:
        n_floors = 4 + (limits.quality.min_sharpness is not None)
        found.components["quality"] = 1.0 - min(1.0, len(failed) / n_floors)
    return quality.blank


def _judge_palette(
    image: np.ndarray, kit: BrandKit, limits: Limits, found: _Findings
) -> tuple[PaletteDistances, np.ndarray]:
    """Adherence, the largest non-brand colour, balance and forbidden colours; returns the
    per-pixel distances and the forbidden mask, which the region rules read per tile."""
    palette = [c.rgb for c in kit.palette]
    tolerance = kit.color_tolerance
    # One distance per sampled pixel and brand colour, shared by the palette rules below.
    small = subsample(image, _PALETTE_SAMPLE)
    near = palette_distances(small, palette, subsample_step(image.shape, _PALETTE_SAMPLE))
    report = palette_report(small, palette, tolerance, distances=near)
    found.metrics["palette_adherence"] = _round(report.adherence)
    found.metrics["palette_distance"] = {
        "mean": _round(report.mean_distance),
        "p50": _round(report.p50_distance),
        "p90": _round(report.p90_distance),
    }
    found.metrics["palette_shares"] = {
        c.name: _round(s) for c, s in zip(kit.palette, report.shares, strict=True)
    }
    found.components["palette"] = report.adherence
    if report.adherence < limits.min_palette_adherence:
        found.fail(
            "palette_adherence",
            report.adherence,
            limits.min_palette_adherence,
            f"only {report.adherence:.0%} of the pixels are within ΔE {tolerance:g} of the "
            "brand palette",
        )

    off = largest_off_palette_color(image, palette, tolerance, distances=near)
    off_share = off.share if off else 0.0
    found.metrics["off_palette"] = {
        "share": _round(off_share),
        "color": rgb_to_hex(off.rgb) if off else None,
    }
    found.components["off_palette"] = 1.0 - min(1.0, off_share / (2 * limits.max_off_palette_share))
    if off is not None and off.share > limits.max_off_palette_share:
        found.fail(
            "off_palette_color",
            off.share,
            limits.max_off_palette_share,
            f"{rgb_to_hex(off.rgb)} covers {off.share:.0%} of the image and is not a brand colour",
        )

    expected = expected_shares([c.share for c in kit.palette])
    if expected is not None:
        balance = palette_balance_distance(report.shares, expected)
        found.metrics["palette_balance_distance"] = None if balance is None else _round(balance)
        found.components["balance"] = 0.0 if balance is None else 1.0 - balance
        if balance is not None and balance > limits.max_palette_balance_distance:
            found.fail(
                "palette_balance",
                balance,
                limits.max_palette_balance_distance,
                "brand colours are used in proportions far from the brand kit's shares",
                severity="warning",
            )

    forbidden_mask = near_colors(near.lab, [hex_to_rgb(h) for h in kit.forbidden_colors], tolerance)
    forbidden = float(forbidden_mask.mean())
    found.metrics["forbidden_share"] = _round(forbidden)
    if kit.forbidden_colors:
        found.components["forbidden"] = 1.0 - min(
            1.0, forbidden / (10 * limits.max_forbidden_share)
        )
        if forbidden > limits.max_forbidden_share:
            found.fail(
                "forbidden_color",
                forbidden,
                limits.max_forbidden_share,
                f"{forbidden:.1%} of the image is within ΔE {tolerance:g} of a forbidden "
                f"colour ({', '.join(kit.forbidden_colors)})",
            )
    return near, forbidden_mask


def _judge_text(
    image: np.ndarray,
    text_boxes: list[tuple[int, int, int, int]] | None,
    limits: Limits,
    found: _Findings,
) -> None:
    """WCAG contrast of the boxes a composed asset declares, else of whatever text is found."""
    from evaluation.text_regions import find_text_regions, region_contrast

    regions = (
        [region_contrast(image, box) for box in text_boxes]
        if text_boxes is not None
        else find_text_regions(image)
    )
    found.metrics["text_regions"] = [
        {"box": list(r.box), "contrast": _round(r.contrast)} for r in regions
    ]
    if not regions:
        return
    worst = min(r.contrast for r in regions)
    found.components["text"] = min(1.0, worst / limits.min_text_contrast)
    if worst < limits.min_text_contrast:
        found.fail(
            "text_contrast",
            worst,
            limits.min_text_contrast,
            f"text contrast {worst:.2f}:1 is below the WCAG minimum {limits.min_text_contrast:g}:1",
        )


def _judge_logo(image: np.ndarray, logo: np.ndarray, rules: LogoRules, found: _Findings) -> None:
    """The logo's presence (an error when missing), then its placement and size (warnings)."""
    from evaluation.logo import find_logo, logo_placement

    match = find_logo(image, logo)
    placement = logo_placement(match.box, image.shape) if match.box else None
    found.metrics["logo"] = {
        "found": match.found,
        "score": _round(match.score),
        "placement": placement,
        "width_share": None if match.scale is None else _round(match.scale),
    }
    found.components["logo"] = 1.0 if match.found else 0.0
    if not match.found:
        found.fail("logo_missing", match.score, 0.7, "the brand logo was not found")
    elif placement not in rules.placement:
        found.components["logo"] = 0.5
        found.fail(
            "logo_placement",
            match.score,
            0.7,
            f"logo is at {placement}; the brand kit allows {', '.join(rules.placement)}",
            severity="warning",
        )
    elif match.scale is not None and not (
        rules.min_width_share <= match.scale <= rules.max_width_share
    ):
        found.components["logo"] = 0.5
        limit = (
            rules.min_width_share if match.scale < rules.min_width_share else rules.max_width_share
        )
        found.fail(
            "logo_size",
            match.scale,
            limit,
            f"logo is {match.scale:.0%} of the image width",
            severity="warning",
        )


def _region_checks(
    image: np.ndarray,
    near: PaletteDistances,
    off: np.ndarray,
    forbidden: np.ndarray,
    tolerance: float,
    limits: Limits,
) -> tuple[dict[str, Any], list[Violation]]:
    """The worst tile per region statistic (value and box) and a violation for each over its
    limit. Below `regions.MIN_SIDE` nothing is judged and the metrics say why."""
    grid = regions.tile_grid(image.shape[0], image.shape[1])
    if grid is None:
        return {
            "skipped": f"image side under {regions.MIN_SIDE} px: its tiles would hold too few "
            "pixels to judge; the whole-image rules apply"
        }, []
    gray = luminance(image)
    view = analysis_view(gray)
    factor = max(1, math.ceil(max(gray.shape) / ANALYSIS_MAX_SIDE))  # as analysis_view reduces
    stats = {
        "noise": regions.tile_noise(image, grid),
        "blur": regions.relative_blur(regions.tile_edge_width(view, grid, factor)),
        "blockiness": regions.tile_blockiness(gray, grid),
        "off_palette": regions.tile_off_palette(near.lab, off, grid, tolerance, near.step),
        "forbidden": regions.tile_means(forbidden, grid, near.step),
    }
    lim = limits.regions
    limit_of = {
        "noise": lim.max_region_noise,
        "blur": lim.max_region_blur_ratio,
        "blockiness": lim.max_region_blockiness,
        "off_palette": lim.max_region_off_palette_share,
        "forbidden": lim.max_region_forbidden_share,
    }
    metrics: dict[str, Any] = {"grid": list(grid.shape)}
    violations: list[Violation] = []
    for name, values in stats.items():
        found = regions.worst(values, grid)
        if found is None:
            metrics[name] = None  # no tile judged (too small, or no strong edges to compare)
            continue
        value, box = found
        metrics[name] = {"value": _round(value), "box": list(box)}
        if value > limit_of[name]:
            message = f"{_REGION_MESSAGES[name]} in the tile at {box} (x0, y0, x1, y1)"
            violations.append(
                Violation(f"region_{name}", value, limit_of[name], "error", message, box)
            )
    return metrics, violations


_REGION_MESSAGES = {
    "noise": "visible noise",
    "blur": "edges smeared compared with the rest of the image",
    "blockiness": "compression block artefacts",
    "off_palette": "a single non-brand colour fills much of the area",
    "forbidden": "a forbidden colour",
}


_QUALITY_MESSAGES = {
    "blank": "blank or uniform frame",
    "blur": "the image is blurred",
    "noise": "visible noise",
    "blockiness": "compression block artefacts",
    "clipped_exposure": "large areas clipped to pure black or white",
    "sharpness": "not enough fine detail",
}
