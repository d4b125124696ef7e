"""Setting text in a box (serving.delivery.typeset) with Pillow's bundled font: the largest size
that fits, and the cut at the minimum size."""

from __future__ import annotations

import pytest
from PIL import ImageFont

from serving.delivery.typeset import ELLIPSIS, PAD_X, PAD_Y, fit_text, line_metrics, wrap


def font_at(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def test_the_largest_size_that_fits_is_chosen_and_its_lines_fit():
    box = (0, 0, 300, 120)
    fit = fit_text("Spring sale on every teal thing", box, 8, 96, font_at)
    assert 8 < fit.size < 96 and not fit.truncated
    assert " ".join(fit.lines) == "Spring sale on every teal thing"
    inner_w = 300 - 2 * round(PAD_X * fit.size)
    inner_h = 120 - 2 * round(PAD_Y * fit.size)
    font = font_at(fit.size)
    assert all(font.getlength(line) <= inner_w for line in fit.lines)
    line_h, spacing = line_metrics(font, fit.size)
    assert len(fit.lines) * (line_h + spacing) - spacing <= inner_h
    bigger = fit_text("Spring sale on every teal thing", box, fit.size + 1, 96, font_at)
    assert bigger.truncated or bigger.size == fit.size + 1  # one size up no longer fits


def test_text_too_long_at_the_minimum_size_is_cut_with_an_ellipsis():
    text = "forty percent off " * 20
    fit = fit_text(text, (0, 0, 120, 40), 10, 40, font_at)
    assert fit.truncated and fit.size == 10 and fit.lines[-1].endswith(ELLIPSIS)


def test_a_box_that_cannot_hold_one_line_is_refused():
    with pytest.raises(ValueError, match="cannot hold one line"):
        fit_text("Sale", (0, 0, 100, 6), 10, 40, font_at)


def test_wrap_breaks_words_only_when_asked():
    font = font_at(12)
    assert wrap(["Supercalifragilistic"], font, 30, break_words=False) is None
    pieces = wrap(["Supercalifragilistic"], font, 30, break_words=True)
    assert pieces and "".join(pieces) == "Supercalifragilistic"
