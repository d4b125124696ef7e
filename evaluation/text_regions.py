"""Text regions in an image, found without OCR, and the WCAG contrast of their colours.

Pure functions on numpy arrays; no I/O. Images are `uint8` arrays of shape (H, W, 3) in sRGB.
Boxes are (x0, y0, x1, y1) in the input image's pixels, x1 and y1 exclusive (as in PIL's crop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage, signal
from scipy.spatial import cKDTree

from brandforge.colour import LUMA_709
from brandforge.wcag import contrast_ratio
from evaluation.matching import Box, as_rgb, box_overlap, masked_ncc
from evaluation.palette import RGB


@dataclass(frozen=True)
class TextRegion:
    box: Box  # x0, y0, x1, y1 in the input image's pixels
    foreground: RGB  # median colour of the glyph pixels (those the glyphs cover fully)
    background: RGB  # median colour of the surrounding pixels (those not touching a glyph)
    contrast: float  # WCAG ratio of the two


# The thresholds below were calibrated on Pillow-rendered text (14-64 px, clean, noisy, JPEG,
# on gradients and on boxes over photos) against text-free textures, photo-like images, dot
# patterns and JPEG damage: a false "low-contrast text" finding is the costliest error, so the
# line tests are set for no such finding there, at the price of missing small, JPEG-damaged,
# very low-contrast text.

# Detection runs on a copy whose longest side is at most this; smaller text is too small to
# matter for a contrast check.
_WORK_SIDE = 1024
# Each pyramid level looks for glyphs of this height (pixels at that level); halving the image
# between levels covers text from ~8 px to 40 % of the image height with one window size.
_MIN_GLYPH, _MAX_GLYPH = 6, 34
_WINDOW = 31  # local-mean window, larger than the strokes of the biggest glyph
_K_STD = 0.5  # a glyph pixel lies this many local standard deviations from the local mean
_MIN_FLOOR = 6.0  # grey levels: smaller local differences are JPEG steps and quantisation
_NOISE_FLOOR = 3.5  # ... and so are differences within this many noise sigmas
_MIN_GLYPHS = 3
_MAX_STROKE = 0.6  # median widest-stroke/height of a line: letters ~0.3, dots and blobs ~1
_MAX_REPEATS = 0.5  # share of glyphs repeating the shape a few places on: dots, tiles, grids
_MAX_EDGE_INK = 0.2  # ink share in the rows above and below a glyph: text has paper there
_MIN_DEPTH = 12.0  # grey levels between ink and background; fainter "text" is JPEG blocking
_MIN_SEPARABILITY = 0.78  # Otsu's eta around each glyph: two clean colours, not a smooth blob
_MIN_PURITY = 3.5  # ink depth over the background's own variation around the glyph
_MAX_INK_SPREAD = 0.1  # spread of the glyphs' ink levels over the depth: text has one colour
_SHORT_LINE_PENALTY = 0.1  # per glyph short of 5: chance alignments of 3 or 4 blobs are common
_MAX_SELF_SIMILARITY = 0.9  # a line band found again nearby (NCC) is a pattern, not text
_MEASURE_HEIGHT = 70  # glyphs are measured on the finest image where they are at most this tall


@dataclass
class _Glyph:
    box: Box  # in working-copy pixels
    dark: bool
    level: int
    mask: np.ndarray  # the blob inside its box, at its pyramid level


@dataclass
class _Line:
    box: Box  # input image pixels
    dark: bool
    height: float  # median glyph height, input image pixels
    fg: np.ndarray  # (n, 3) per glyph, median colour of its fully covered pixels
    bg: np.ndarray  # (n, 3) per glyph, median colour of the background around it

    @property
    def fg_rgb(self) -> np.ndarray:
        return np.median(self.fg, axis=0)

    @property
    def bg_rgb(self) -> np.ndarray:
        return np.median(self.bg, axis=0)


def _otsu(values: np.ndarray) -> tuple[float, float]:
    """Otsu threshold of 1-D values and its separability (between-class / total variance)."""
    v = np.sort(values.astype(np.float64))
    n = v.size
    if n < 4 or v[-1] - v[0] <= 1e-9:
        return (float(v.mean()) if n else 0.0), 0.0
    csum = np.cumsum(v)
    k = np.arange(1, n)
    w0 = k / n
    mu0 = csum[:-1] / k
    mu1 = (csum[-1] - csum[:-1]) / (n - k)
    between = w0 * (1 - w0) * (mu0 - mu1) ** 2
    between[v[1:] == v[:-1]] = -1  # split only between distinct values
    best = int(np.argmax(between))
    return float((v[best] + v[best + 1]) / 2), float(between[best] / v.var())


def _median(values: np.ndarray) -> float:
    """np.median without its overhead, which dominates on the small arrays used here."""
    n = values.size
    k = n // 2
    part = np.partition(values, k)
    return float(part[k]) if n % 2 else float((part[k] + part[:k].max()) / 2)


@dataclass
class _Split:
    fg_core: np.ndarray  # (N, 3) the more extreme half of the glyph pixels
    bg: np.ndarray  # (M, 3) non-glyph pixels not touching a glyph pixel
    separability: float  # Otsu's eta of the projection, 1 for two clean colours
    ink: float  # median projection of fg_core
    paper: float  # median projection of bg
    paper_spread: float  # 90th percentile of the background's distance from `paper`
    edge_ink: float  # share of glyph pixels in the patch's first and last rows


def _split_patch(patch: np.ndarray, axis: np.ndarray, glyph_side: int) -> _Split | None:
    """Split a patch's pixels into glyph and background along a colour axis.

    glyph_side: -1 glyphs lie at low projections, +1 at high ones, 0 they are the minority.
    """
    h, w, _ = patch.shape
    pixels = patch.reshape(-1, 3)
    proj = pixels @ axis
    threshold, eta = _otsu(proj)
    low = proj < threshold
    if glyph_side == 0:
        glyph_side = -1 if low.sum() <= low.size / 2 else 1
    glyph = low if glyph_side < 0 else ~low
    if not glyph.any() or glyph.all():
        return None
    # anti-aliased edge pixels mix both colours, so the background leaves them out
    near = ndimage.binary_dilation(glyph.reshape(h, w), structure=np.ones((3, 3), bool))
    bg = ~near.ravel()
    if np.count_nonzero(bg) < 3:
        bg = ~glyph
    bg_proj = proj[bg]
    paper = _median(bg_proj)
    depth = (proj[glyph] - paper) * glyph_side
    # only fully covered pixels show the ink's colour, and thin strokes have few of them
    core = depth >= _median(depth)
    distance = np.abs(bg_proj - paper)
    k = int(0.9 * (distance.size - 1))
    rows = glyph.reshape(h, w)
    return _Split(
        fg_core=pixels[glyph.nonzero()[0][core]],
        bg=pixels[bg],
        separability=eta,
        ink=_median(proj[glyph][core]),
        paper=paper,
        paper_spread=float(np.partition(distance, k)[k]),
        edge_ink=float(rows[0].mean() + rows[-1].mean()) / 2,
    )


def _rgb_tuple(values: np.ndarray) -> RGB:
    return (int(round(values[0])), int(round(values[1])), int(round(values[2])))


def region_contrast(image: np.ndarray, box: Box) -> TextRegion:
    """Glyph and background colours, and their WCAG contrast, inside a known text box.

    The box's pixels are split in two along their main colour axis (luminance for most text,
    hue for isoluminant text); the glyphs are the smaller part.
    """
    rgb = as_rgb(image)
    height, width = rgb.shape[:2]
    x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
    x1, y1 = min(int(box[2]), width), min(int(box[3]), height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"text box {box} is empty inside an image of {width}x{height} pixels")
    patch = rgb[y0:y1, x0:x1].astype(np.float64)
    pixels = patch.reshape(-1, 3)
    sample = pixels[:: max(1, len(pixels) // 20000)]
    _, _, axes = np.linalg.svd(sample - sample.mean(axis=0), full_matrices=False)
    split = _split_patch(patch, axes[0], glyph_side=0)
    if split is None:  # one flat colour: nothing to read, contrast 1
        colour = _rgb_tuple(np.median(pixels, axis=0))
        return TextRegion((x0, y0, x1, y1), colour, colour, 1.0)
    fg = np.median(split.fg_core, axis=0)
    bg = np.median(split.bg, axis=0)
    return TextRegion((x0, y0, x1, y1), _rgb_tuple(fg), _rgb_tuple(bg), contrast_ratio(fg, bg))


def _noise_sigma(grey: np.ndarray) -> float:
    """Robust noise estimate: median response of a filter that cancels smooth content."""
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
    response = signal.convolve2d(grey, kernel, mode="valid") if min(grey.shape) >= 3 else None
    if response is None or response.size == 0:
        return 0.0
    # the filter's gain on white noise is 6; 0.6745 turns a median |x| into a sigma
    return float(np.median(np.abs(response)) / (6 * 0.6745))


def _halve(values: np.ndarray) -> np.ndarray:
    h, w = values.shape[0] // 2 * 2, values.shape[1] // 2 * 2
    return values[:h, :w].reshape(h // 2, 2, w // 2, 2, *values.shape[2:]).mean(axis=(1, 3))


def _glyph_candidates(grey: np.ndarray, level: int, max_height: float) -> list[_Glyph]:
    """Glyph-sized blobs of either polarity at one pyramid level, boxes in working pixels;
    max_height in working pixels.

    A pixel is ink when it differs from its local mean by a share of the local spread, so faint
    text on a flat background is found as readily as black on white; the absolute floor keeps
    noise and JPEG steps on flat areas out.
    """
    mean = ndimage.uniform_filter(grey, _WINDOW, mode="reflect")
    sq = ndimage.uniform_filter(grey * grey, _WINDOW, mode="reflect")
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    floor = max(_MIN_FLOOR, _NOISE_FLOOR * _noise_sigma(grey))
    threshold = np.maximum(_K_STD * std, floor)
    diff = grey - mean
    scale = 2**level
    glyphs: list[_Glyph] = []
    for dark, mask in ((True, diff < -threshold), (False, diff > threshold)):
        labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
        if count == 0:
            continue
        area = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        slices = ndimage.find_objects(labels)
        bounds = np.array([(s[0].start, s[0].stop, s[1].start, s[1].stop) for s in slices])
        h = bounds[:, 1] - bounds[:, 0]
        w = bounds[:, 3] - bounds[:, 2]
        fill = area / (h * w)
        keep = (
            (h >= _MIN_GLYPH)
            & (h <= min(_MAX_GLYPH, max_height / scale))
            & (w <= 3 * h)
            & (fill >= 0.1)  # thin lines and outlines
            & (fill <= 0.95)  # solid rectangles
        )
        for index in np.flatnonzero(keep):
            y0, y1, x0, x1 = (int(v) for v in bounds[index])
            box = (x0 * scale, y0 * scale, x1 * scale, y1 * scale)
            glyphs.append(_Glyph(box, dark, level, labels[y0:y1, x0:x1] == index + 1))
    return glyphs


def _chain_lines(glyphs: list[_Glyph]) -> list[list[_Glyph]]:
    """Chain glyphs (one level, one polarity) into lines: similar height, overlapping rows,
    gaps below a glyph height. Each glyph links only to its nearest right neighbour, so the
    blobs of a texture do not join into webs."""
    if len(glyphs) < _MIN_GLYPHS:
        return []
    boxes = np.array([g.box for g in glyphs], dtype=np.float64)
    x0, y0, x1, y1 = boxes.T
    h = y1 - y0
    centres = np.column_stack([(x0 + x1) / 2, (y0 + y1) / 2])
    pairs = cKDTree(centres).query_pairs(r=float(2.5 * h.max()), output_type="ndarray")
    if len(pairs) == 0:
        return []
    left_first = centres[pairs[:, 0], 0] <= centres[pairs[:, 1], 0]
    a = np.where(left_first, pairs[:, 0], pairs[:, 1])
    b = np.where(left_first, pairs[:, 1], pairs[:, 0])
    h_min, h_max = np.minimum(h[a], h[b]), np.maximum(h[a], h[b])
    overlap = np.minimum(y1[a], y1[b]) - np.maximum(y0[a], y0[b])
    gap = x0[b] - x1[a]
    ok = (
        (h_max <= 1.8 * h_min)  # x-height letters next to capitals and descenders
        & (overlap >= 0.6 * h_min)
        & (gap <= (h[a] + h[b]) / 2)
        & (gap >= -0.25 * h_min)  # kerned pairs overlap a little
    )
    a, b, gap = a[ok], b[ok], gap[ok]
    parent = list(range(len(glyphs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    has_right: set[int] = set()
    has_left: set[int] = set()
    for k in np.lexsort((gap, a)):
        i, j = int(a[k]), int(b[k])
        if i in has_right or j in has_left:
            continue
        has_right.add(i)
        has_left.add(j)
        parent[root(i)] = root(j)
    groups: dict[int, list[_Glyph]] = {}
    for i, glyph in enumerate(glyphs):
        groups.setdefault(root(i), []).append(glyph)
    return [g for g in groups.values() if len(g) >= _MIN_GLYPHS]


def _aligned(members: list[_Glyph]) -> bool:
    """Most glyphs share a baseline (or, with descenders, a top line)."""
    boxes = np.array([g.box for g in members], dtype=np.float64)
    tol = max(1.5, 0.15 * float(np.median(boxes[:, 3] - boxes[:, 1])))
    need = math.ceil(0.6 * len(members))
    bottoms = np.abs(boxes[:, 3] - np.median(boxes[:, 3])) <= tol
    tops = np.abs(boxes[:, 1] - np.median(boxes[:, 1])) <= tol
    return bool(bottoms.sum() >= need or tops.sum() >= need)


def _same_shape(a: _Glyph, b: _Glyph) -> bool:
    (ha, wa), (hb, wb) = a.mask.shape, b.mask.shape
    if abs(ha - hb) > 1 or abs(wa - wb) > 1:
        return False
    h, w = min(ha, hb), min(wa, wb)
    ma, mb = a.mask[:h, :w], b.mask[:h, :w]
    union = np.count_nonzero(ma | mb)
    return bool(union and np.count_nonzero(ma & mb) / union >= 0.7)


def _repeats(members: list[_Glyph]) -> float:
    """Largest share of glyphs with the same shape as the glyph `period` places on, for periods
    of 1-4: high for dots, tiles and grids (and their JPEG damage), low for words."""
    ordered = sorted(members, key=lambda g: g.box[0])
    shares = [
        np.mean([_same_shape(a, b) for a, b in zip(ordered, ordered[period:], strict=False)])
        for period in range(1, 5)
        if len(ordered) - period >= 2
    ]
    return float(max(shares, default=0.0))


def _stroke_ratios(members: list[_Glyph]) -> np.ndarray:
    """Widest stroke over height per glyph: about 0.1-0.3 for letters, near 1 for dots."""
    # one distance transform for the whole line: the glyphs side by side, one pixel apart
    height = max(g.mask.shape[0] for g in members) + 2
    width = sum(g.mask.shape[1] + 1 for g in members) + 1
    canvas = np.zeros((height, width), bool)
    x = 1
    for g in members:
        h, w = g.mask.shape
        canvas[1 : h + 1, x : x + w] = g.mask
        x += w + 1
    inside = ndimage.distance_transform_edt(canvas)
    ratios = []
    x = 1
    for g in members:
        h, w = g.mask.shape
        ratios.append(2 * inside[1 : h + 1, x : x + w].max() / h)
        x += w + 1
    return np.array(ratios)


def _looks_like_text(members: list[_Glyph]) -> bool:
    """The shape tests, cheap enough to run on every candidate line before measuring it."""
    if not _aligned(members) or _repeats(members) >= _MAX_REPEATS:
        return False
    return _median(_stroke_ratios(members)) <= _MAX_STROKE


class _Pyramid:
    """The input image and halved copies of the working copy, made when first needed."""

    def __init__(self, rgb: np.ndarray, work: np.ndarray, factor: float) -> None:
        self.rgb = rgb
        self.factor = factor  # input pixels per working-copy pixel
        self._levels: dict[int, np.ndarray] = {0: work.astype(np.float64)}

    def for_height(self, glyph_height: float) -> tuple[np.ndarray, float]:
        """The finest image where glyphs of this height (working pixels) are small enough to
        measure quickly, with its scale in working pixels per image pixel."""
        if glyph_height * self.factor <= _MEASURE_HEIGHT:
            return self.rgb, 1 / self.factor
        level = 0
        while glyph_height / 2**level > _MEASURE_HEIGHT:
            level += 1
        return self._level(level), float(2**level)

    def _level(self, level: int) -> np.ndarray:
        if level not in self._levels:
            self._levels[level] = _halve(self._level(level - 1))
        return self._levels[level]


def _measure_line(members: list[_Glyph], pyramid: _Pyramid, dark: bool) -> _Line | None:
    """Measure a candidate line glyph by glyph; None when it does not look like ink on a
    background (smooth blob, busy background, glyphs of different colours, too faint)."""
    heights = [g.box[3] - g.box[1] for g in members]
    image, scale = pyramid.for_height(_median(np.array(heights, dtype=np.float64)))
    height, width = image.shape[:2]
    side = -1 if dark else 1
    # the tests below take medians, so once half the glyphs fail one the line cannot pass
    need = 1 + _SHORT_LINE_PENALTY * max(0, 5 - len(members))
    allowed = len(members) // 2
    weak_eta = weak_purity = 0
    fgs, bgs, etas, purities, inks, depths, edges = [], [], [], [], [], [], []
    for g in members:
        gx0, gy0, gx1, gy1 = (v / scale for v in g.box)
        pad = max(2.0, 0.25 * (gy1 - gy0))
        x0, y0 = max(int(gx0 - pad), 0), max(int(gy0 - pad), 0)
        x1, y1 = min(math.ceil(gx1 + pad), width), min(math.ceil(gy1 + pad), height)
        split = _split_patch(image[y0:y1, x0:x1].astype(np.float64), LUMA_709, side)
        if split is None or len(split.bg) < 3:
            return None
        fgs.append(split.fg_core)
        bgs.append(split.bg)
        etas.append(split.separability)
        purities.append(abs(split.ink - split.paper) / (split.paper_spread + 1.0))
        inks.append(split.ink)
        depths.append(abs(split.ink - split.paper))
        edges.append(split.edge_ink)
        weak_eta += etas[-1] < _MIN_SEPARABILITY * need
        weak_purity += purities[-1] < _MIN_PURITY * need
        if max(weak_eta, weak_purity) > allowed:
            return None
    depth = float(np.median(depths))
    if depth < _MIN_DEPTH or float(np.median(edges)) > _MAX_EDGE_INK:
        return None
    ink_spread = 1.4826 * float(np.median(np.abs(np.array(inks) - np.median(inks)))) / depth
    evidence = min(
        float(np.median(etas)) / _MIN_SEPARABILITY,
        float(np.median(purities)) / _MIN_PURITY,
        _MAX_INK_SPREAD / max(ink_spread, 1e-9),
    )
    if evidence < need:
        return None
    # a blob of the background chained onto the line has its own colour: leave it out
    fg = np.array([np.median(x, axis=0) for x in fgs])
    bg = np.array([np.median(x, axis=0) for x in bgs])
    same_ink = np.abs(fg - np.median(fg, axis=0)).max(axis=1) <= max(0.25 * depth, 8.0)
    if same_ink.sum() < _MIN_GLYPHS:
        return None
    f = pyramid.factor
    b = np.array([g.box for g in members], dtype=np.float64)[same_ink]
    box = (
        int(b[:, 0].min() * f),
        int(b[:, 1].min() * f),
        math.ceil(b[:, 2].max() * f),
        math.ceil(b[:, 3].max() * f),
    )
    return _Line(
        box=box,
        dark=dark,
        height=float(np.median(b[:, 3] - b[:, 1])) * f,
        fg=fg[same_ink],
        bg=bg[same_ink],
    )


def _self_similarity(grey: np.ndarray, members: list[_Glyph], level: int) -> float:
    """How well the line's band reappears nearby, in another row or further along itself:
    near 1 for dot grids and tiles (and their JPEG damage), lower for words."""
    scale = 2**level
    boxes = np.array([g.box for g in members]) // scale
    x0, y0 = int(boxes[:, 0].min()), int(boxes[:, 1].min())
    x1, y1 = int(boxes[:, 2].max()), int(boxes[:, 3].max())
    h = y1 - y0
    # the middle of the band, so that it can also be found further along the line
    cut = (x1 - x0) // 5
    tx0, tx1 = x0 + cut, x1 - cut
    template = grey[y0:y1, tx0:tx1]
    rx0, ry0 = max(0, tx0 - 4 * h), max(0, y0 - 3 * h)
    rx1, ry1 = min(grey.shape[1], tx1 + 4 * h), min(grey.shape[0], y1 + 3 * h)
    region = grey[ry0:ry1, rx0:rx1]
    if template.size == 0:
        return 0.0
    ncc, _, _ = masked_ncc(region[None], template[None], np.ones(template.shape))
    dy = np.arange(ncc.shape[0])[:, None] + ry0 - y0
    dx = np.arange(ncc.shape[1])[None, :] + rx0 - tx0
    # lowercase letters are stems at a near-regular pitch, so short shifts along the line are
    # excluded; a pattern repeats at every multiple of its period and is found further on
    near = (np.abs(dy) < 0.5 * h) & (np.abs(dx) < 2 * h)
    return float(np.where(near, -1.0, ncc).max())


def _dedupe(lines: list[_Line]) -> list[_Line]:
    """One line where several pyramid levels, or the counters of letters, found the same text."""
    kept: list[_Line] = []
    for line in sorted(lines, key=lambda ln: (len(ln.fg), ln.height), reverse=True):
        if all(box_overlap(line.box, k.box) < 0.5 for k in kept):
            kept.append(line)
    return kept


def _blocks(lines: list[_Line]) -> list[list[_Line]]:
    """Stack lines of the same colours and size into blocks (paragraphs, headlines)."""
    blocks: list[list[_Line]] = []
    for line in sorted(lines, key=lambda ln: (ln.box[1], ln.box[0])):
        for block in blocks:
            last = block[-1]
            tallest = max(line.height, last.height)
            if (
                last.dark == line.dark
                and -0.5 * line.height <= line.box[1] - last.box[3] <= 1.5 * tallest
                and tallest <= 1.5 * min(line.height, last.height)
                and min(line.box[2], last.box[2]) > max(line.box[0], last.box[0])
                and np.abs(last.fg_rgb - line.fg_rgb).max() < 24
                and np.abs(last.bg_rgb - line.bg_rgb).max() < 24
            ):
                block.append(line)
                break
        else:
            blocks.append([line])
    return blocks


def find_text_regions(image: np.ndarray) -> list[TextRegion]:
    """Text blocks in an image, each with its glyph and background colours and WCAG contrast.

    No OCR: glyph-sized blobs from a local adaptive threshold (relative to the local spread, so
    low-contrast text is found too) are chained into lines of at least three aligned glyphs of
    similar height; lines that look like strokes of one ink on a clean background, and do not
    repeat nearby as dot grids and tiles do, are measured in the input image and stacked into
    blocks. Regions are sorted top to bottom; an image without text gives [].
    """
    rgb = as_rgb(image)
    height, width = rgb.shape[:2]
    if min(height, width) < 2 * _MIN_GLYPH:
        return []
    shrink = min(1.0, _WORK_SIDE / max(height, width))
    if shrink < 1.0:
        size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        work = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))
    else:
        work = rgb
    pyramid = _Pyramid(rgb, work, factor=width / work.shape[1])

    greys = [work.astype(np.float64) @ LUMA_709]
    glyphs: list[_Glyph] = []
    # a level smaller than two windows has no "local" left to compare with
    while len(greys) == 1 or min(greys[-1].shape) >= 2 * _WINDOW:
        glyphs.extend(_glyph_candidates(greys[-1], len(greys) - 1, max_height=0.4 * work.shape[0]))
        greys.append(_halve(greys[-1]))

    lines: list[_Line] = []
    for dark, lvl in sorted({(g.dark, g.level) for g in glyphs}):
        same = [g for g in glyphs if g.dark == dark and g.level == lvl]
        for members in _chain_lines(same):
            if _looks_like_text(members):
                line = _measure_line(members, pyramid, dark)
                if line is None:
                    continue
                if _self_similarity(greys[lvl], members, lvl) < _MAX_SELF_SIMILARITY:
                    lines.append(line)

    regions = []
    for block in _blocks(_dedupe(lines)):
        fg = np.median(np.concatenate([ln.fg for ln in block]), axis=0)
        bg = np.median(np.concatenate([ln.bg for ln in block]), axis=0)
        box = (
            min(ln.box[0] for ln in block),
            min(ln.box[1] for ln in block),
            min(max(ln.box[2] for ln in block), width),
            min(max(ln.box[3] for ln in block), height),
        )
        regions.append(TextRegion(box, _rgb_tuple(fg), _rgb_tuple(bg), contrast_ratio(fg, bg)))
    return sorted(regions, key=lambda r: (r.box[1], r.box[0]))
