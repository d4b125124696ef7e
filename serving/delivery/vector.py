"""The SVG vectoriser: a raster image as flat-colour polygons (`vectorise`, `svg_document`).

The image is quantised to at most `max_colours` colours (`quantise_colours`: an image with no
more colours keeps them exactly, others go through k-means), the outline of each colour's
regions is traced on the pixel grid into polygons (collinear runs merged, holes by
`fill-rule="evenodd"`), and the most frequent colour becomes the backdrop. It renders exactly as
the quantised raster at its own size and scales without blur, but the outlines are pixel
staircases: no curve fitting. Transparent pixels (alpha under 128) are left unpainted.

`serving.delivery.formats` calls `svg_document` to encode the `svg` format with its metadata.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

NS_SVG = "http://www.w3.org/2000/svg"
# k-means runs on a random sample of the pixels: 20 000 pins 16 colours down well (the centres
# move by under one level of 255 against the full image) at a fraction of the cost.
KMEANS_SAMPLE = 20_000
KMEANS_ITERATIONS = 20


def quantise_colours(
    image: Image.Image, *, max_colours: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The image reduced to at most `max_colours` colours: (labels (H, W) int, -1 where the
    pixel is transparent; palette (K, 3) uint8, most frequent colour first).

    An image with no more colours than that keeps them exactly; otherwise k-means (k-means++
    start, fixed `seed`, so the same image always gives the same palette) on a sample of up to
    `KMEANS_SAMPLE` pixels picks them.
    """
    from scipy.cluster.vq import vq

    if not 1 <= max_colours <= 256:
        raise ValueError(f"max_colours must be within 1..256, got {max_colours}")
    # RGBA for every mode: Pillow turns a palette's or a colour key's transparency into alpha.
    array = np.asarray(image.convert("RGBA"), dtype=np.uint8)
    rgb = array[:, :, :3].reshape(-1, 3)
    opaque = array[:, :, 3].reshape(-1) >= 128
    labels = np.full(len(rgb), -1, dtype=np.int64)
    pixels = rgb[opaque]
    if len(pixels) == 0:
        return labels.reshape(array.shape[:2]), np.zeros((0, 3), np.uint8)
    wide = pixels.astype(np.int64)
    packed = (wide[:, 0] << 16) | (wide[:, 1] << 8) | wide[:, 2]
    distinct, inverse = np.unique(packed, return_inverse=True)
    if len(distinct) <= max_colours:
        palette = np.stack([distinct >> 16, (distinct >> 8) & 255, distinct & 255], 1)
        assigned = inverse.reshape(-1)
    else:
        centres = _kmeans(pixels.astype(np.float32), max_colours, seed=seed)
        assigned, _ = vq(pixels.astype(np.float32), centres, check_finite=False)
        palette = np.clip(np.round(centres), 0, 255)
    counts = np.bincount(assigned, minlength=len(palette))
    order = [i for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    relabel = np.full(len(palette), -1, dtype=np.int64)
    relabel[order] = np.arange(len(order))
    labels[opaque] = relabel[assigned]
    return labels.reshape(array.shape[:2]), palette[order].astype(np.uint8)


def _kmeans(points: np.ndarray, k: int, *, seed: int) -> np.ndarray:
    """At most `k` colour centres (float32, (k, 3)) of `points` by k-means on a seeded sample."""
    from scipy.cluster.vq import kmeans2

    rng = np.random.default_rng(seed)
    sample = points[rng.choice(len(points), min(len(points), KMEANS_SAMPLE), replace=False)]
    # k-means++ divides by the summed distances to the centres so far: once every distinct
    # colour of the sample is a centre that sum is 0, so k may not exceed their number.
    k = min(k, len(np.unique(sample, axis=0)))
    with warnings.catch_warnings():
        # An emptied cluster keeps its centre and is dropped later (no pixel maps to it).
        warnings.filterwarnings("ignore", message="One of the clusters is empty")
        centres, _ = kmeans2(
            sample, k, iter=KMEANS_ITERATIONS, minit="++", rng=rng, check_finite=False
        )
    return centres.astype(np.float32)


def _trace(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """The outlines of the True pixels of `mask` as closed polygons on the pixel grid: corner
    vertices (x, y), clockwise on screen around filled areas, anticlockwise around holes;
    diagonal touches are kept apart (4-connected regions). With even-odd filling the
    polygons cover exactly the True pixels."""
    height, width = mask.shape
    padded = np.pad(mask, 1)
    inside = padded[1:-1, 1:-1]
    stride = width + 1
    starts, ends, directions = [], [], []
    # direction 0: right, 1: down, 2: left, 3: up (screen coordinates, y downwards)
    for heading, neighbour, start_offset, end_offset in (
        (0, padded[:-2, 1:-1], (0, 0), (1, 0)),  # top edge, outside above
        (1, padded[1:-1, 2:], (1, 0), (1, 1)),  # right edge, outside to the right
        (2, padded[2:, 1:-1], (1, 1), (0, 1)),  # bottom edge, outside below
        (3, padded[1:-1, :-2], (0, 1), (0, 0)),  # left edge, outside to the left
    ):
        ys, xs = np.nonzero(inside & ~neighbour)
        starts.append((ys + start_offset[1]) * stride + xs + start_offset[0])
        ends.append((ys + end_offset[1]) * stride + xs + end_offset[0])
        directions.append(np.full(len(ys), heading))
    start = np.concatenate(starts)
    end = np.concatenate(ends)
    direction = np.concatenate(directions)
    if len(start) == 0:
        return []
    order = np.argsort(start, kind="stable")
    sorted_starts = start[order]
    first = np.searchsorted(sorted_starts, end, side="left")
    last = np.searchsorted(sorted_starts, end, side="right")
    successor = order[first]
    # At a vertex two regions touch diagonally: two edges leave it. Turning right keeps each
    # region's outline to itself.
    saddle = np.nonzero(last - first == 2)[0]
    second = order[first[saddle] + 1]
    take_second = direction[second] == (direction[saddle] + 1) % 4
    successor[saddle[take_second]] = second[take_second]
    predecessor = np.empty_like(successor)
    predecessor[successor] = np.arange(len(successor))
    corner = direction != direction[predecessor]  # a polygon's corners: the direction changes
    polygons = []
    visited = np.zeros(len(start), dtype=bool)
    successor_list, corner_list, start_list = successor.tolist(), corner.tolist(), start.tolist()
    for origin in np.nonzero(corner)[0].tolist():
        if visited[origin]:
            continue
        points = []
        edge = origin
        while not visited[edge]:
            visited[edge] = True
            if corner_list[edge]:
                vertex = start_list[edge]
                points.append((vertex % stride, vertex // stride))
            edge = successor_list[edge]
        polygons.append(points)
    return polygons


def _path_data(polygons: list[list[tuple[int, int]]]) -> str:
    parts = []
    for points in polygons:
        x0, y0 = points[0]
        commands = [f"M{x0} {y0}"]
        previous = points[0]
        for x, y in points[1:]:
            commands.append(f"H{x}" if y == previous[1] else f"V{y}")
            previous = (x, y)
        commands.append("Z")
        parts.append("".join(commands))
    return "".join(parts)


def vectorise(image: Image.Image, *, max_colours: int = 16) -> str:
    """The image as an SVG document of at most `max_colours` flat-colour polygons (see the
    module docstring), `viewBox` = the image's size in pixels."""
    return svg_document(image, max_colours=max_colours)


def svg_document(image: Image.Image, *, max_colours: int, metadata: str | None = None) -> str:
    """`vectorise`, with `metadata` (a well-formed XML element, e.g. an XMP `x:xmpmeta`) placed
    in the document's `<metadata>` element."""
    labels, palette = quantise_colours(image, max_colours=max_colours)
    height, width = labels.shape
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="{NS_SVG}" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
    ]
    if metadata is not None:
        lines.append(f"<metadata>{metadata}</metadata>")
    first = 0
    if len(palette) and not (labels < 0).any():
        # The most frequent colour as backdrop: fewer outlines, and no hairline seams where
        # two traced regions meet on a renderer that anti-aliases each path on its own.
        lines.append(f'<rect width="{width}" height="{height}" fill="{_hex(palette[0])}"/>')
        first = 1
    for index in range(first, len(palette)):
        data = _path_data(_trace(labels == index))
        if data:
            lines.append(f'<path fill="{_hex(palette[index])}" fill-rule="evenodd" d="{data}"/>')
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def _hex(colour: np.ndarray) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in colour))
