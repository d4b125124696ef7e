"""Setting text in a box: the largest font size whose greedily wrapped lines fit, else the
smallest size with the overflow cut at an ellipsis (`fit_text`). Pure layout arithmetic on PIL
fonts; `serving.delivery.compose` chooses the boxes, fonts and colours and draws.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from textwrap import shorten

from PIL import ImageFont

logger = logging.getLogger(__name__)

PixelBox = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1 and y1 exclusive
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

ELLIPSIS = "…"
LINE_SPACING = 0.15  # extra space between lines, share of the font size
PAD_X, PAD_Y = 0.3, 0.2  # room around the text (and the plate's margin), share of font size


@dataclass(frozen=True)
class Fit:
    """Text set in a box: its font size, lines and line pitch; `truncated` when cut."""

    size: int
    lines: list[str]
    line_height: int  # baseline to baseline
    truncated: bool


def wrap(words: list[str], font: Font, width: float, *, break_words: bool) -> list[str] | None:
    """Greedy word wrap; None when a word is wider than `width` and break_words is off."""
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        if font.getlength(word) <= width:
            current = word
        elif not break_words:
            return None
        else:  # a word wider than the box at the minimum size: split it where it must
            piece = ""
            for char in word:
                if piece and font.getlength(piece + char) > width:
                    lines.append(piece)
                    piece = ""
                piece += char
            current = piece
    if current:
        lines.append(current)
    return lines


def line_metrics(font: Font, size: int) -> tuple[int, int]:
    """Line height (ascent + descent) and the spacing added between lines."""
    ascent, descent = font.getmetrics()  # type: ignore[union-attr]
    return ascent + descent, round(LINE_SPACING * size)


def fit_text(
    text: str, spec_box: PixelBox, low: int, high: int, font_at: Callable[[int], Font]
) -> Fit:
    """Largest size in [low, high] whose wrapped lines fit the box (minus padding); at `low`
    what does not fit is cut, the last line ending in an ellipsis."""
    words = text.split()
    box_w, box_h = spec_box[2] - spec_box[0], spec_box[3] - spec_box[1]

    def attempt(size: int) -> Fit | None:
        font = font_at(size)
        inner_w = box_w - 2 * round(PAD_X * size)
        inner_h = box_h - 2 * round(PAD_Y * size)
        lines = wrap(words, font, inner_w, break_words=False) if inner_w > 0 else None
        if lines is None:
            return None
        line_h, spacing = line_metrics(font, size)
        if len(lines) * (line_h + spacing) - spacing > inner_h:
            return None
        return Fit(size, lines, line_h + spacing, truncated=False)

    best = attempt(low)
    if best is not None:  # binary search: the fit only gets harder as the size grows
        lo, hi = low, high
        while lo < hi:
            mid = (lo + hi + 1) // 2
            found = attempt(mid)
            if found is not None:
                best, lo = found, mid
            else:
                hi = mid - 1
        return best

    font = font_at(low)
    inner_w = box_w - 2 * round(PAD_X * low)
    inner_h = box_h - 2 * round(PAD_Y * low)
    line_h, spacing = line_metrics(font, low)
    max_lines = (inner_h + spacing) // (line_h + spacing)
    if max_lines < 1 or inner_w <= font.getlength(ELLIPSIS):
        raise ValueError(
            f"a text box of {box_w}x{box_h} px cannot hold one line at the minimum size {low} px"
        )
    lines = wrap(words, font, inner_w, break_words=True) or [""]
    kept, rest = lines[:max_lines], lines[max_lines:]
    if rest:
        last = kept[-1]
        while last and font.getlength(last.rstrip() + ELLIPSIS) > inner_w:
            cut = last.rstrip().rsplit(" ", 1)
            last = cut[0] if len(cut) == 2 else last.rstrip()[:-1]
        kept[-1] = last.rstrip() + ELLIPSIS
    logger.warning(
        "text %r does not fit its %dx%d px box at the minimum size %d px; truncated to %d of "
        "its %d characters",
        shorten(text, 80, placeholder=" ..."),
        box_w,
        box_h,
        low,
        len(" ".join(kept)) - 1,
        len(text),
    )
    return Fit(low, kept, line_h + spacing, truncated=bool(rest))
