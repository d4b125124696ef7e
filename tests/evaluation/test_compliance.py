"""The compliance report on constructed images whose defects are known.

The brand kit is the issue's minimal one (teal, white, orange; red forbidden; ΔE 12). The clean
layout is a marketing banner in the brand colours with a photo area and dark copy on a white
panel; every defect is applied to it and must be reported by its own rule.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from brandforge.brandkit import BrandKit
from evaluation.compliance import (
    DEFAULT_MAX_FORBIDDEN_SHARE,
    DEFAULT_MIN_PALETTE_ADHERENCE,
    brand_limits,
    compliance_report,
)
from tests.evaluation.test_quality import _photo, add_noise, gaussian_blur, jpeg

KIT = BrandKit.model_validate(
    {
        "name": "acme",
        "palette": [
            {"name": "teal", "hex": "#1A9E9E", "share": 0.4},
            {"name": "white", "hex": "#F5F5F5", "share": 0.4},
            {"name": "orange", "hex": "#F58C1E", "share": 0.2},
        ],
        "forbidden_colors": ["#DC2828"],
        "color_tolerance": 12,
    }
)
TEAL, WHITE, ORANGE = (0x1A, 0x9E, 0x9E), (0xF5, 0xF5, 0xF5), (0xF5, 0x8C, 0x1E)
INK = (20, 24, 30)


def banner(size: int = 384, *, background=TEAL, ink=INK, photo: bool = True) -> np.ndarray:
    """Teal background, a white panel with dark copy, an orange disc and a small photo area."""
    s = 2  # drawn at twice the size and reduced: anti-aliased edges, as real renders have
    big = size * s
    canvas = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0.05 * big, 0.05 * big, 0.62 * big, 0.75 * big), fill=WHITE)
    draw.ellipse((0.66 * big, 0.62 * big, 0.95 * big, 0.91 * big), fill=ORANGE)
    font = ImageFont.load_default(size=big // 14)
    draw.text((0.08 * big, 0.1 * big), "Spring Sale", font=font, fill=ink)
    small = ImageFont.load_default(size=big // 30)
    for i in range(3):
        draw.text(
            (0.08 * big, (0.3 + 0.06 * i) * big), "New looks for every day", font=small, fill=ink
        )
    image = np.asarray(canvas.reduce(s)).astype(np.float64)
    if photo:
        rng = np.random.default_rng(0)
        p = size // 4
        x0, y0 = size - p - size // 20, size // 12
        image[y0 : y0 + p, x0 : x0 + p] = _photo(rng, p, p, ORANGE)
    return np.round(image).astype(np.uint8)


def rules(image: np.ndarray, kit: BrandKit = KIT) -> set[str]:
    return {v.rule for v in compliance_report(image, kit).violations}


def test_a_clean_on_brand_banner_passes_with_a_high_score():
    report = compliance_report(banner(), KIT)
    assert report.passed, report.violations
    assert report.score > 0.85
    assert report.metrics["palette_adherence"] > 0.8
    assert report.metrics["forbidden_share"] == 0
    assert report.metrics["text_regions"], "the copy on the white panel is found"
    assert min(r["contrast"] for r in report.metrics["text_regions"]) > 7


def test_an_off_palette_background_fails_adherence_and_names_the_colour():
    report = compliance_report(banner(background=(0x7B, 0x3F, 0xA0)), KIT)
    assert not report.passed
    by_rule = {v.rule: v for v in report.violations}
    assert by_rule["palette_adherence"].value < DEFAULT_MIN_PALETTE_ADHERENCE
    assert by_rule["palette_adherence"].limit == DEFAULT_MIN_PALETTE_ADHERENCE
    off = by_rule["off_palette_color"]
    assert off.value > 0.3
    assert "#7" in off.message  # the purple, as hex
    assert report.score < compliance_report(banner(), KIT).score - 0.3


def test_a_forbidden_red_badge_fails_even_when_small():
    image = banner().copy()
    image[300:330, 20:60] = (0xDC, 0x28, 0x28)  # 1200 px of 147k: 0.8 %
    report = compliance_report(image, KIT)
    assert not report.passed
    (forbidden,) = [v for v in report.violations if v.rule == "forbidden_color"]
    assert forbidden.value == pytest.approx(1200 / 384**2, rel=0.15)
    assert forbidden.limit == DEFAULT_MAX_FORBIDDEN_SHARE
    assert "palette_adherence" not in {v.rule for v in report.violations}


def test_a_forbidden_colour_below_the_limit_passes():
    image = banner().copy()
    image[300:305, 20:30] = (0xDC, 0x28, 0x28)  # 50 px: a stray detail
    assert "forbidden_color" not in rules(image)


@pytest.mark.parametrize(
    ("defect", "rule"),
    [
        (lambda im: gaussian_blur(im, 4), "blur"),
        (lambda im: add_noise(im, 18), "noise"),
        (lambda im: jpeg(im, 8), "blockiness"),
    ],
    ids=["blur", "noise", "jpeg-q8"],
)
def test_quality_defects_fail_by_their_rule(defect, rule):
    found = rules(defect(banner()))
    assert rule in found, found


def test_a_light_jpeg_and_a_png_round_trip_still_pass():
    assert compliance_report(jpeg(banner(), 90), KIT).passed


@pytest.mark.parametrize("colour", [(0, 0, 0), (245, 245, 245), (26, 158, 158)])
def test_blank_frames_fail_with_score_zero(colour):
    frame = np.full((256, 256, 3), colour, np.uint8)
    report = compliance_report(frame, KIT)
    assert not report.passed and report.score == 0
    assert "blank" in {v.rule for v in report.violations}


def test_low_contrast_copy_fails_text_contrast_with_the_measured_ratio():
    report = compliance_report(banner(ink=(200, 200, 200)), KIT)
    (text,) = [v for v in report.violations if v.rule == "text_contrast"]
    assert 1.0 < text.value < 1.8  # light grey on the white panel
    assert text.limit == 4.5
    assert not report.passed


def test_declared_text_boxes_are_measured_instead_of_searched():
    image = banner(ink=(200, 200, 200))
    report = compliance_report(image, KIT, text_boxes=[(300, 300, 360, 360)])  # on the disc
    assert [r["box"] for r in report.metrics["text_regions"]] == [[300, 300, 360, 360]]


def test_brand_overrides_replace_the_defaults():
    strict = KIT.model_copy(
        update={"quality": KIT.quality.model_copy(update={"min_palette_adherence": 0.99})}
    )
    assert brand_limits(strict).min_palette_adherence == 0.99
    assert "palette_adherence" in rules(banner(), strict)
    assert "palette_adherence" not in rules(banner())


def test_the_score_orders_images_by_how_far_off_brand_they_are():
    clean = compliance_report(banner(), KIT).score
    badge = banner().copy()
    badge[300:330, 20:60] = (0xDC, 0x28, 0x28)
    off = banner(background=(0x7B, 0x3F, 0xA0))
    assert clean > compliance_report(badge, KIT).score > compliance_report(off, KIT).score


def test_the_report_serialises_rule_value_limit_and_message():
    d = compliance_report(banner(background=(0x7B, 0x3F, 0xA0)), KIT).to_dict()
    assert set(d) == {"score", "passed", "violations", "metrics"}
    assert 0 <= d["score"] <= 1
    v = d["violations"][0]
    assert set(v) == {"rule", "value", "limit", "severity", "message"}
    assert isinstance(v["value"], float) and isinstance(v["limit"], float)


def test_wrong_arrays_are_rejected_with_what_was_given():
    with pytest.raises(ValueError, match="uint8"):
        compliance_report(np.zeros((64, 64, 3), np.float32), KIT)
