"""Region checks: the quality and palette statistics of each tile of an image, and the worst tile.

The whole-image rules (evaluation/quality.py, evaluation/palette.py) average over every pixel, so
a defect confined to a region (a tile of noise, a patch in the wrong colour, a smeared area, a
block of compression damage) averages away. Here the image is cut into a grid of tiles and each
statistic is read per tile; the compliance report judges the worst tile against its own limit.

Pure functions on numpy arrays; no I/O. Images are `uint8` (H, W, 3) sRGB arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evaluation.quality import _IMMERKAER_MEDIAN, blockiness, edge_width

# Tiles a side: a sixth of the short side, so a defect covering 10 % of the image (a third of
# the side) always contains one whole tile (0.9 of one at worst alignment), while a tile still
# holds enough pixels for a median noise estimate and a few 8x8 blocks. Finer tiles are filled by
# single design elements (a line of copy, a dot pattern) and read them as defects.
TILES_PER_SIDE = 6
# Never smaller than 16 px (two JPEG blocks, the quality module's own minimum)...
MIN_TILE = 16
# ...and below 128 px a side no check is made: the demo model's 32 px samples (their tiles
# would be quarters of the image, which the whole-image rules already judge) and the 64 px
# assets composed from them, whose 16 px tiles hold 256 pixels: there a dozen stray pixels of a
# small model's colour noise are 5 % of a tile (a composed 64 px campaign asset read 11 %
# forbidden in one tile, 0.4 % of the image), and a tile has one 8x8 boundary a side.
MIN_SIDE = 128
# Blur and blockiness are judged on tiles of at least 32 px (images of 192 px and more): on a
# 16 px tile a 5 px gradient band between two brand colours reads as a blurred edge (relative
# width 4.5 on clean 64 px demo visuals) and a tile has two 8x8 blocks a side.
MIN_JUDGED_TILE = 32
# Tile blockiness: grey levels a block boundary must step beyond its neighbours, and the prior
# count of boundaries (see `tile_blockiness`).
_BLOCK_STEP_MIN = 4.0
_BLOCK_PRIOR = 16
# The long side of a wide image gets proportionally more tiles, at most this many.
MAX_TILES_PER_AXIS = 10
# Noise, blur and blockiness read at most this many pixels a side of each tile (its centre), so
# a 4000 px photograph costs what a 1024 px one does.
_MAX_READ = 160
# Blur: only edges with at least half the image's strongest local contrast count. A designed
# soft gradient (a 20 px blend band between two brand colours) has a low contrast across the
# 5 px window and is left out; a sharp edge smeared by a blur keeps half its contrast or more.
_BLUR_EDGE_CONTRAST = 0.5
# The median edge width is taken over tiles with edges; with fewer than this many there is
# nothing to compare a tile with.
_BLUR_MIN_TILES = 3


@dataclass(frozen=True)
class Grid:
    """Tile boundaries in pixels: rows ys[i]..ys[i+1], columns xs[j]..xs[j+1]."""

    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.ys) - 1, len(self.xs) - 1

    def box(self, i: int, j: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of tile (i, j), x1 and y1 exclusive."""
        return self.xs[j], self.ys[i], self.xs[j + 1], self.ys[i + 1]


def _edges(side: int, tile: float) -> tuple[int, ...]:
    n = max(1, min(MAX_TILES_PER_AXIS, round(side / tile)))
    # Inner boundaries on multiples of 8: a tile's blocks are the decoder's 8x8 blocks.
    inner = [8 * round(k * side / n / 8) for k in range(1, n)]
    return tuple(sorted({0, *[b for b in inner if 0 < b < side], side}))


def tile_grid(height: int, width: int) -> Grid | None:
    """The grid for an image of this size; None below `MIN_SIDE` (no region checks)."""
    short = min(height, width)
    if short < MIN_SIDE:
        return None
    tile = max(MIN_TILE, short / TILES_PER_SIDE)
    return Grid(_edges(height, tile), _edges(width, tile))


def tile_means(mask: np.ndarray, grid: Grid, step: int = 1) -> np.ndarray:
    """Per tile, the mean of `mask` (h, w), a map of the image subsampled every `step` pixels
    (the palette rules' sample): the share of each tile's pixels where it is true."""
    ys = [math.ceil(y / step) for y in grid.ys[:-1]]
    xs = [math.ceil(x / step) for x in grid.xs[:-1]]
    m = np.asarray(mask, dtype=np.float64)
    sums = np.add.reduceat(np.add.reduceat(m, ys, axis=0), xs, axis=1)
    ones = np.ones_like(m)
    counts = np.add.reduceat(np.add.reduceat(ones, ys, axis=0), xs, axis=1)
    return sums / counts


def _centre(a: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The tile `box` of `a`, cut to its central `_MAX_READ` px a side."""
    x0, y0, x1, y1 = box
    dy, dx = max(0, (y1 - y0 - _MAX_READ) // 2), max(0, (x1 - x0 - _MAX_READ) // 2)
    return a[y0 + dy : y1 - dy, x0 + dx : x1 - dx][:_MAX_READ, :_MAX_READ]


def colour_noise(tile: np.ndarray) -> float:
    """Noise sigma (grey levels) of an RGB tile, read across its dominant colour axis.

    Immerkær's mask (as `quality.noise_sigma`) per channel gives a 3-vector per pixel. A design
    of two colours (dots, hatching, anti-aliased shapes and copy: blends of a pair) answers only
    along that pair's axis, the principal axis of the vectors, which a tile of such a pattern
    fills and the whole-image median never sees; per-channel noise answers in every direction.
    So the median is taken over the two minor axes, where white noise of std s still reads s
    (each is a unit projection) and a two-colour pattern reads about 0. Noise that is equal on
    all three channels (monochrome grain) reads weaker, by how far it is from the pattern's axis.
    """
    v = tile.astype(np.float64)
    d2 = v[:-2] - 2 * v[1:-1] + v[2:]
    r = (d2[:, :-2] - 2 * d2[:, 1:-1] + d2[:, 2:]).reshape(-1, 3)
    _, axes = np.linalg.eigh(r.T @ r)  # eigenvalues ascending: the first two are the minor axes
    return float(np.median(np.abs(r @ axes[:, :2])) / _IMMERKAER_MEDIAN)


def tile_noise(image: np.ndarray, grid: Grid) -> np.ndarray:
    """Per tile, `colour_noise` of its pixels (the central `_MAX_READ` px a side)."""
    out = np.empty(grid.shape)
    for i, j in np.ndindex(*grid.shape):
        out[i, j] = colour_noise(_centre(image, grid.box(i, j)))
    return out


def tile_blockiness(gray: np.ndarray, grid: Grid) -> np.ndarray:
    """Per tile, `blockiness` of its luminance (NaN on tiles under `MIN_JUDGED_TILE` px).

    A tile has a few dozen 8x8 boundaries, not thousands, so two settings change: the prior is
    16 boundaries, not 32 (else it swamps a tile's count), and a boundary steps only when 4 grey
    levels beyond its neighbours, not 1: at 1 level one smooth gradient tile at JPEG q85 reads
    0.67 (8 of 8 judged boundaries step, by 1-2 invisible levels), at 4 levels clean demo
    visuals read at most 0.11, and a JPEG q5 block of shaded content 0.2-0.28."""
    out = np.full(grid.shape, np.nan)
    for i, j in np.ndindex(*grid.shape):
        x0, y0, x1, y1 = grid.box(i, j)
        if min(x1 - x0, y1 - y0) < MIN_JUDGED_TILE:
            continue
        # Cut on the 8 px grid (tiles start on it): the central part keeps the decoder's blocks.
        dy, dx = max(0, (y1 - y0 - _MAX_READ) // 16 * 8), max(0, (x1 - x0 - _MAX_READ) // 16 * 8)
        tile = gray[y0 + dy : y1, x0 + dx : x1][:_MAX_READ, :_MAX_READ]
        out[i, j] = blockiness(tile, step_min=_BLOCK_STEP_MIN, prior=_BLOCK_PRIOR)
    return out


def tile_edge_width(view: np.ndarray, grid: Grid, factor: int = 1) -> np.ndarray:
    """Per tile, the mean width (px) of its strong edges (`edge_width` on the tile of `view`, a
    luminance plane reduced by `factor` from the image); NaN where the tile has none.

    Only edges of at least half the image's strongest local contrast count (`_BLUR_EDGE_CONTRAST`),
    so soft gradients and faint texture do not read as blur. NaN on tiles under
    `MIN_JUDGED_TILE` px."""
    from scipy import ndimage

    contrast = ndimage.maximum_filter(view, 5) - ndimage.minimum_filter(view, 5)
    floor = _BLUR_EDGE_CONTRAST * float(contrast.max())
    out = np.full(grid.shape, np.nan)
    for i, j in np.ndindex(*grid.shape):
        x0, y0, x1, y1 = (v // factor for v in grid.box(i, j))
        tile = _centre(view, (x0, y0, x1, y1))
        if (
            min(tile.shape) * factor < MIN_JUDGED_TILE
            or _centre(contrast, (x0, y0, x1, y1)).max() < floor
        ):
            continue
        width = edge_width(tile, min_contrast=floor)
        out[i, j] = width if math.isfinite(width) else np.nan
    return out


def relative_blur(widths: np.ndarray) -> np.ndarray:
    """Each tile's edge width over the median tile's (NaN where not judged): a tile whose edges
    are twice as wide as the image's typical edges is smeared, however soft the whole image is
    (a uniformly soft image is the whole-image blur rule's to judge)."""
    judged = widths[np.isfinite(widths)]
    if judged.size < _BLUR_MIN_TILES:
        return np.full(widths.shape, np.nan)
    return widths / float(np.median(judged))


def worst(values: np.ndarray, grid: Grid) -> tuple[float, tuple[int, int, int, int]] | None:
    """The largest value and its tile's box; None when no tile has a value."""
    if not np.isfinite(values).any():
        return None
    i, j = np.unravel_index(int(np.nanargmax(values)), values.shape)
    return float(values[i, j]), grid.box(int(i), int(j))


def tile_off_palette(
    lab: np.ndarray, off: np.ndarray, grid: Grid, tolerance: float, step: int = 1
) -> np.ndarray:
    """Per tile, the share of its pixels in its largest single non-brand colour.

    `lab` (h, w, 3) and `off` (h, w; off-palette and not a blend of two brand colours, see
    `palette.off_palette_mask`) are the palette rules' sample, every `step` pixels. Blends are
    left out as the whole-image rule leaves them out: a soft band between two brand colours can
    fill half a tile. One colour, not all off-palette pixels, because a photo or an illustration
    legitimately fills a tile with many colours, while a patch in a wrong colour is one.

    The largest colour is found as `largest_off_palette_color` finds it (densest coarse Lab bin,
    then everything within `tolerance` of its mean), only for tiles whose off-palette share can
    still beat the best found so far, so clean tiles cost one `reduceat`.
    """
    from evaluation.palette import _densest_bin, ciede2000

    upper = tile_means(off, grid, step)
    out = np.zeros(grid.shape)
    best = 0.0
    ys = [math.ceil(y / step) for y in grid.ys]
    xs = [math.ceil(x / step) for x in grid.xs]
    for flat in np.argsort(upper, axis=None)[::-1]:
        i, j = np.unravel_index(int(flat), grid.shape)
        if upper[i, j] <= best:
            break
        tile_off = off[ys[i] : ys[i + 1], xs[j] : xs[j + 1]]
        pixels = lab[ys[i] : ys[i + 1], xs[j] : xs[j + 1]][tile_off]
        seed = pixels[_densest_bin(np.floor(pixels / 6.0).astype(np.int64))].mean(axis=0)
        share = float((ciede2000(pixels, seed[None, :]) <= tolerance).sum() / tile_off.size)
        out[i, j] = share
        best = max(best, share)
    return out


# The colour a failed tile is outlined in (A/B grid): magenta inside a white line, visible on
# any brand's palette.
OUTLINE_RGB = (255, 0, 212)


def outline_boxes(image: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """A copy of `image` with each (x0, y0, x1, y1) box outlined: a magenta line inside a white
    one, each about 1/128 of the short side (at least 1 px). Boxes are clipped to the image."""
    out = image.copy()
    h, w = out.shape[:2]
    line = max(1, min(h, w) // 128)
    for box in boxes:
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        x1, y1 = min(w, int(box[2])), min(h, int(box[3]))
        if x1 <= x0 or y1 <= y0:
            continue
        for pad, colour in ((0, (255, 255, 255)), (line, OUTLINE_RGB)):
            a0, b0, a1, b1 = x0 + pad, y0 + pad, x1 - pad, y1 - pad
            if a1 <= a0 or b1 <= b0:
                break
            out[b0 : b0 + line, a0:a1] = colour
            out[b1 - line : b1, a0:a1] = colour
            out[b0:b1, a0 : a0 + line] = colour
            out[b0:b1, a1 - line : a1] = colour
    return out
