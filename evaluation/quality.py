"""Image quality floors: blur, noise, JPEG blocking, clipped exposure and blank frames.

Pure functions on numpy arrays; no I/O. Images are `uint8` arrays of shape (H, W, 3) in sRGB, from
32x32 generated samples to 4000x3000 photographs. Greyscale planes are 2-D float arrays in grey
levels (0..255), as `luminance` returns them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brandforge.colour import LUMA_601

# Smaller images carry no usable block grid or edge statistics.
MIN_SIDE = 16

# Blur and sharpness are judged at display size: a 4000 px photograph is soft at 100 % (optics,
# demosaicing) yet sharp on any screen, and blur that survives this reduction is what viewers see.
ANALYSIS_MAX_SIDE = 1024

# A blank frame: (almost) no luminance variation, or one colour covering (almost) every pixel
# (at most 0.2 % of pixels, a 45 px square in a megapixel, differ). Clean layouts measured have a
# luminance std of 18 or more and at most 99.0 % of pixels in one colour (black copy on white).
BLANK_MAX_LUMINANCE_STD = 2.0
BLANK_MIN_DOMINANT_SHARE = 0.998

# Edge width (see `edge_width`): the window in which an edge's contrast and steepest step are read,
# and which edges count: at least 8 grey levels and 15 % of the image's strongest local contrast,
# so a low-contrast design is judged on its own edges and heavy blur cannot make edges vanish.
_EDGE_WINDOW = 5
_EDGE_MIN_CONTRAST = 8.0
_EDGE_RELATIVE_CONTRAST = 0.15

# Noise: the Immerkær mask has sum of squares 36, so its response to white noise of std s has std
# 6 s, and a zero-mean normal's median absolute value is 0.6745 std.
_IMMERKAER_MEDIAN = 6 * 0.6745
# Beyond this many pixels noise is read on evenly spaced row bands (a median needs far fewer).
_NOISE_MAX_PIXELS = 1 << 22
_NOISE_BAND = 64

# Blockiness (see `blockiness`). Between two textured blocks (mean in-block difference over 0.25
# grey levels) a boundary steps when its mean difference exceeds twice the larger difference right
# beside it plus 1 level; between two flat blocks, when it changes by 1 level or more from the
# same boundary one 8-row strip up and down. Boundaries over 32 levels are content edges, not
# coding artefacts. The prior count keeps a handful of boundaries from deciding.
_BLOCK = 8
_BLOCK_STEP_RATIO = 2.0
_BLOCK_STEP_MIN = 1.0
_BLOCK_TEXTURE_MIN = 0.25
_BLOCK_STEP_MAX = 32.0
_BLOCK_PRIOR_SEGMENTS = 32

# Dominant colour: 16 levels a channel. Each channel is also binned with a half-bin offset, so a
# flat colour that sits on a bin edge (and a JPEG round trip scatters across it) stays one colour.
_COLOUR_BIN = 16
_DOMINANT_MAX_PIXELS = 1 << 18

# "Clipped" allows 2 levels of slack: a JPEG round trip scatters a blown highlight over 253..255.
_CLIP_SLACK = 2


@dataclass(frozen=True)
class QualityMetrics:
    sharpness: float  # variance of the Laplacian of luminance (0..255 scale), at analysis size
    blur: float  # 0 = sharp .. 1 = very blurry (1 - 1 / mean edge width in px); 1 when no edges
    noise: float  # estimated standard deviation of additive noise per channel, grey levels
    blockiness: float  # 0 = no block artefacts; excess share of 8x8 block boundaries that step
    clipped_share: float  # share of pixels clipped to pure black or pure white
    luminance_std: float  # standard deviation of luminance, grey levels
    dominant_share: float  # share of pixels in the most common coarsely quantised colour
    blank: bool  # a blank / uniform frame (incl. the all-black frame of a NaN-producing model)


@dataclass(frozen=True)
class QualityFloors:
    max_blur: float
    max_noise: float
    max_blockiness: float
    max_clipped_share: float
    # None: no floor on the Laplacian variance. It scales with how much detail the content has and
    # with resolution, so no single value separates sharp sparse layouts from blurred busy ones.
    min_sharpness: float | None = None


# Calibrated on the generated marketing set of tests/evaluation/test_quality.py: 7 layouts x 5 sizes
# (256, 512, 1024 px; 1:1, 4:5, 16:9) x 3 seeds, each clean (as is, PNG, JPEG q85 and q95, 0.8x
# Lanczos and 1.25x bicubic resizes) and with defects scaled to size (Gaussian blur radius 2/3/5 px
# at 512, noise sigma 8/15/25, JPEG q5/10/15), plus sparse graphics (one shape, an 8 px-grid UI,
# black copy on white, an 8 px checkerboard) and blank frames: 1735 images. Worst clean value vs
# worst defective value (`python -m tests.evaluation.test_quality` reprints them):
#
#   blur        0.46 (1.25x bicubic upscale, 256 px) vs 0.57 (blur radius 1 px at 256 px)
#               -> 0.52 (mean edge width 2.1 px); the tightest margin. Radius 2 px at 512 reads
#               0.70 and more.
#   noise       1.2 (8 px checkerboard, JPEG q85)    vs 7.4 (sigma 8) -> 4.0, leaving room for
#               photographic grain, which the generated set lacks.
#   blockiness  0.09 (resampled 8 px checkerboard)   vs 0.16 (JPEG q10) -> 0.12
#   clipped     0.995 (black copy on pure white)     vs 1.0 (blank white or black frame)
#               -> 1.0, i.e. off: pure white pages and black type are legitimate design, so the
#               share of clipped pixels cannot tell blown exposure from a layout. Tighten it only
#               for sets of photographs.
#   sharpness   clean min 23 (one shape, upscaled)   vs blurred max 185 (blurred text, 256 px)
#               -> no floor.
# Every clean image passes every rule and every defect is flagged by its own rule (heavy JPEG of
# one layout at q5 also reads as blurred); blank frames are flagged `blank` (and `blur`).
DEFAULT_QUALITY_FLOORS = QualityFloors(
    max_blur=0.52,
    max_noise=4.0,
    max_blockiness=0.12,
    max_clipped_share=1.0,
    min_sharpness=None,
)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"expected a uint8 RGB image of shape (H, W, 3), got dtype {image.dtype} and shape "
            f"{image.shape}; convert with np.asarray(pil_image.convert('RGB'))"
        )
    if min(image.shape[:2]) < MIN_SIDE:
        raise ValueError(f"image is {image.shape[1]}x{image.shape[0]} px; need at least {MIN_SIDE}")
    return image


def _as_plane(gray: np.ndarray) -> np.ndarray:
    plane = np.asarray(gray)
    if plane.ndim != 2 or not np.issubdtype(plane.dtype, np.number):
        raise ValueError(
            f"expected a 2-D greyscale plane (e.g. luminance(image)), got dtype {plane.dtype} and "
            f"shape {plane.shape}"
        )
    if min(plane.shape) < MIN_SIDE:
        raise ValueError(f"plane is {plane.shape[1]}x{plane.shape[0]} px; need at least {MIN_SIDE}")
    return plane.astype(np.float64, copy=False)


def luminance(image: np.ndarray) -> np.ndarray:
    """Luma Y' in grey levels 0..255: BT.601 weights on the sRGB-encoded values, the Y' that JPEG
    itself codes, so its block artefacts show undiluted by chroma."""
    return _check_image(image) @ LUMA_601


def analysis_view(gray: np.ndarray, max_side: int = ANALYSIS_MAX_SIDE) -> np.ndarray:
    """`gray` box-averaged by the smallest integer factor that brings its long side to max_side."""
    plane = _as_plane(gray)
    factor = math.ceil(max(plane.shape) / max_side)
    if factor <= 1:
        return plane
    h, w = (plane.shape[0] // factor) * factor, (plane.shape[1] // factor) * factor
    return plane[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: the classic focus measure, content-dependent."""
    g = _as_plane(gray)
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def edge_width(gray: np.ndarray, min_contrast: float | None = None) -> float:
    """Mean width in pixels of the image's edges; `inf` when it has none.

    At each local maximum of the one-pixel gradient magnitude, the width is the contrast across the
    surrounding 5x5 window divided by that steepest step: an edge that crosses its full contrast in
    one pixel is 1 px wide, a Gaussian blur of std s widens it to about 2.5 s (up to s = 1 px;
    wider blurs saturate near 4 px against the 5 px window).

    Unlike the Crété-Roffet blur effect (the share of neighbour differences a re-blur removes),
    this reads the width across each edge whatever its direction and however few edges there are:
    one curved shape on a flat banner scores like a page of text. On the generated set the blur
    effect scored a 1 px blur at 256 px below a 1.25x bicubic upscale (0.29 vs 0.39); this does not.

    `min_contrast`, when given, replaces the edge threshold (e.g. one set on the whole image when
    `gray` is one tile of it, evaluation/regions.py).
    """
    g = _as_plane(gray)
    dx = np.diff(g, axis=1)[:-1, :]
    dy = np.diff(g, axis=0)[:, :-1]
    slope = np.hypot(dx, dy)
    local_range = ndimage.maximum_filter(g, _EDGE_WINDOW) - ndimage.minimum_filter(g, _EDGE_WINDOW)
    contrast = local_range[:-1, :-1]
    threshold = (
        max(_EDGE_MIN_CONTRAST, _EDGE_RELATIVE_CONTRAST * float(contrast.max()))
        if min_contrast is None
        else min_contrast
    )
    peak = (
        (slope > 0)
        & (contrast >= threshold)
        & (slope >= ndimage.maximum_filter(slope, _EDGE_WINDOW))
    )
    if not peak.any():
        return math.inf
    return float(np.mean(contrast[peak] / slope[peak]))


def blur_score(gray: np.ndarray) -> float:
    """Blur on 0 (edges one pixel wide) .. 1 (no edges left): 1 - 1 / `edge_width`."""
    return float(np.clip(1.0 - 1.0 / edge_width(gray), 0.0, 1.0))


def _immerkaer_responses(plane: np.ndarray) -> np.ndarray:
    # The mask outer([1, -2, 1], [1, -2, 1]) annihilates anything linear along either axis, so
    # flat areas, gradients and straight edges give 0; what remains is noise plus corners/curves.
    d2 = plane[:-2] - 2 * plane[1:-1] + plane[2:]
    response = np.abs(d2[:, :-2] - 2 * d2[:, 1:-1] + d2[:, 2:])
    # Clipping hides noise (a white background plus noise is half 255), so windows that touch a
    # clipped pixel are skipped, except wholly uniform ones: a pure white page with black text is
    # evidence of no noise, and without it only the text's anti-aliased rims would be left.
    black, white = plane <= 0, plane >= 255
    near_clipped = ndimage.maximum_filter(black | white, size=3)[1:-1, 1:-1]
    if not near_clipped.any():
        return response.ravel()
    uniform = ndimage.minimum_filter(black, size=3) | ndimage.minimum_filter(white, size=3)
    return response[~near_clipped | uniform[1:-1, 1:-1]]


def noise_sigma(values: np.ndarray) -> float:
    """Standard deviation of additive white noise, in grey levels (Immerkær 1996, robustified).

    `values` is a greyscale plane (H, W) or an image (H, W, C), whose channels are read separately
    and pooled, so independent per-channel noise of std s reads s (its luminance would read 0.75 s).
    The median absolute response replaces Immerkær's mean: the pixels that text, corners and curved
    edges light up are a minority, so they move the median little while they dominate a mean.
    """
    v = np.asarray(values)
    if v.ndim == 2:
        v = v[..., None]
    if v.ndim != 3 or not np.issubdtype(v.dtype, np.number) or min(v.shape[:2]) < MIN_SIDE:
        raise ValueError(
            f"expected a plane (H, W) or image (H, W, C) of at least {MIN_SIDE} px a side, got "
            f"dtype {v.dtype} and shape {np.shape(values)}"
        )
    h = v.shape[0]
    if v.shape[0] * v.shape[1] > _NOISE_MAX_PIXELS:
        n_bands = max(1, _NOISE_MAX_PIXELS // (_NOISE_BAND * v.shape[1]))
        starts = np.linspace(0, h - _NOISE_BAND, n_bands).astype(int)
        bands = [v[s : s + _NOISE_BAND] for s in starts]
    else:
        bands = [v]
    responses = [
        _immerkaer_responses(band[..., c].astype(np.float64))
        for band in bands
        for c in range(v.shape[2])
    ]
    pooled = np.concatenate(responses)
    if pooled.size == 0:
        return 0.0
    return float(np.median(pooled) / _IMMERKAER_MEDIAN)


def _block_step_counts(
    plane: np.ndarray, offset: int, step_min: float = _BLOCK_STEP_MIN
) -> tuple[int, int]:
    """(stepping, judged) vertical block boundaries for a column grid starting at `offset`."""
    rows = plane.shape[0] // _BLOCK * _BLOCK
    n = (plane.shape[1] - 1 - offset) // _BLOCK
    if rows == 0 or n < 2:
        return 0, 0
    d = np.diff(plane[:rows, offset : offset + _BLOCK * n + 1], axis=1)
    # (8-row strip, block, pair): pair 7 crosses into the next block, pairs 0..6 stay inside.
    shape = (rows // _BLOCK, _BLOCK, n, _BLOCK)
    pairs = np.abs(d).reshape(shape).mean(axis=1)
    step = pairs[:, :-1, 7]
    signed_step = d.reshape(shape).mean(axis=1)[:, :-1, 7]
    inside = pairs[:, :, :7].mean(axis=2)
    textured = inside > _BLOCK_TEXTURE_MIN
    small = step <= _BLOCK_STEP_MAX

    # Textured blocks: a step stands out from the pairs right beside it (not the block mean, so
    # an edge blurred across a boundary, widest in the middle, is not read as a step).
    beside = np.maximum(pairs[:, :-1, 6], pairs[:, 1:, 0])
    both_textured = textured[:, :-1] & textured[:, 1:] & small
    textured_steps = both_textured & (step > _BLOCK_STEP_RATIO * beside + step_min)

    # Flat blocks: a design edge on the 8 px grid steps by the same amount strip after strip,
    # while the quantised DC levels of smooth content change from one strip to the next. (The
    # staircase of a purely 1-D gradient is consistent too and goes unseen here.)
    both_flat = ~textured[:, :-1] & ~textured[:, 1:] & small & (step > step_min)
    up = np.full_like(signed_step, np.inf)
    up[1:] = signed_step[:-1]
    down = np.full_like(signed_step, np.inf)
    down[:-1] = signed_step[1:]
    consistent = (np.abs(signed_step - up) < _BLOCK_STEP_MIN) | (
        np.abs(signed_step - down) < _BLOCK_STEP_MIN
    )
    flat_steps = both_flat & ~consistent

    stepping = int(np.count_nonzero(textured_steps)) + int(np.count_nonzero(flat_steps))
    return stepping, int(np.count_nonzero(both_textured)) + int(np.count_nonzero(both_flat))


def _block_step_share(
    plane: np.ndarray,
    offset: int,
    step_min: float = _BLOCK_STEP_MIN,
    prior: int = _BLOCK_PRIOR_SEGMENTS,
) -> float:
    stepping = judged = 0
    for oriented in (plane, plane.T):
        s, j = _block_step_counts(oriented, offset, step_min)
        stepping, judged = stepping + s, judged + j
    return stepping / (judged + prior)


def blockiness(
    gray: np.ndarray, step_min: float = _BLOCK_STEP_MIN, prior: int = _BLOCK_PRIOR_SEGMENTS
) -> float:
    """JPEG-style blocking: the excess share of 8x8 block boundaries that step.

    Each boundary segment (8 px long) between two blocks that are both textured or both flat is
    judged; one textured and one flat block is ambiguous and skipped. Read on the decoder's grid
    (boundaries at multiples of 8 from the top-left corner) and, as a control, on the grid shifted
    by 4 px, where content steps just as often but coding steps never fall; the score is the
    difference, so it is 0 for content without block structure, stays small for flat graphics
    whose edges lie on multiples of 8, and grows with the compression. `step_min` (grey levels)
    is how much more than its surroundings a boundary must step and `prior` how many boundaries
    the share starts from; region checks (evaluation/regions.py) set both for one tile.
    """
    g = _as_plane(gray)
    shares = [_block_step_share(g, offset, step_min, prior) for offset in (0, _BLOCK // 2)]
    return max(0.0, float(shares[0] - shares[1]))


def clipped_share(image: np.ndarray) -> float:
    """Share of pixels at pure black or pure white (within 2 levels on every channel)."""
    img = _check_image(image)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    high = 255 - _CLIP_SLACK
    white = (r >= high) & (g >= high) & (b >= high)
    black = (r <= _CLIP_SLACK) & (g <= _CLIP_SLACK) & (b <= _CLIP_SLACK)
    return float(np.count_nonzero(white | black) / white.size)


def dominant_share(image: np.ndarray) -> float:
    """Share of pixels in the single most common colour, quantised to 16 levels a channel."""
    img = _check_image(image)
    stride = max(1, math.ceil(math.sqrt(img.shape[0] * img.shape[1] / _DOMINANT_MAX_PIXELS)))
    pixels = img[::stride, ::stride].reshape(-1, 3).astype(np.int32)
    bins = 256 // _COLOUR_BIN + 1
    best = 0
    for shifts in np.ndindex(2, 2, 2):
        q = (pixels + np.array(shifts) * (_COLOUR_BIN // 2)) // _COLOUR_BIN
        index = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
        best = max(best, int(np.bincount(index).max()))
    return best / len(pixels)


def quality_metrics(image: np.ndarray) -> QualityMetrics:
    """All quality metrics of one sRGB uint8 image (H, W, 3)."""
    img = _check_image(image)
    gray = luminance(img)
    view = analysis_view(gray)
    lum_std = float(gray.std())
    dominant = dominant_share(img)
    return QualityMetrics(
        sharpness=laplacian_variance(view),
        blur=blur_score(view),
        noise=noise_sigma(img),
        # At full resolution: the block grid only exists on the decoder's own pixels.
        blockiness=blockiness(gray),
        clipped_share=clipped_share(img),
        luminance_std=lum_std,
        dominant_share=dominant,
        blank=lum_std < BLANK_MAX_LUMINANCE_STD or dominant >= BLANK_MIN_DOMINANT_SHARE,
    )


def quality_violations(m: QualityMetrics, floors: QualityFloors) -> list[tuple[str, float, float]]:
    """(rule, measured value, limit) for every floor the metrics violate; empty when all pass.

    A blank frame reports its luminance std against `BLANK_MAX_LUMINANCE_STD` even when it was
    called blank for its dominant colour; it usually also fails `blur` (it has no edges at all).
    """
    violations: list[tuple[str, float, float]] = []
    if m.blank:
        violations.append(("blank", m.luminance_std, BLANK_MAX_LUMINANCE_STD))
    if m.blur > floors.max_blur:
        violations.append(("blur", m.blur, floors.max_blur))
    if m.noise > floors.max_noise:
        violations.append(("noise", m.noise, floors.max_noise))
    if m.blockiness > floors.max_blockiness:
        violations.append(("blockiness", m.blockiness, floors.max_blockiness))
    if m.clipped_share > floors.max_clipped_share:
        violations.append(("clipped_exposure", m.clipped_share, floors.max_clipped_share))
    if floors.min_sharpness is not None and m.sharpness < floors.min_sharpness:
        violations.append(("sharpness", m.sharpness, floors.min_sharpness))
    return violations
