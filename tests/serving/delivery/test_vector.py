"""The SVG vectoriser (serving.delivery.vector): colour quantisation by k-means
(`scipy.cluster.vq.kmeans2`, seeded) and tracing, rendered back with a real SVG renderer."""

from __future__ import annotations

import io
import warnings
import xml.etree.ElementTree as ET

import cairosvg
import numpy as np
from PIL import Image, ImageDraw

from serving.delivery.vector import quantise_colours, vectorise
from tests.serving.delivery.test_formats import mae, render_svg
from tests.serving.delivery.test_provenance import natural_image

# What the hand-written k-means (k-means++ start, seed 0, up to 20 iterations) that kmeans2
# replaced chose for natural_image(80, 64, seed=3) at 8 colours, most frequent first, and its
# mean colour error (Euclidean, 0..255 per channel) over the pixels.
OLD_PALETTE = [
    [149, 44, 185],
    [184, 171, 174],
    [53, 57, 207],
    [61, 158, 216],
    [196, 52, 131],
    [105, 56, 181],
    [94, 150, 117],
    [203, 117, 151],
]
OLD_ERROR = 23.83


def colour_error(image: Image.Image, labels: np.ndarray, palette: np.ndarray) -> float:
    pixels = np.asarray(image.convert("RGB"), dtype=float)
    return float(np.sqrt(((pixels - palette[labels].astype(float)) ** 2).sum(-1)).mean())


def test_kmeans_palette_is_close_to_the_hand_written_one_it_replaced():
    image = natural_image(80, 64, seed=3)
    labels, palette = quantise_colours(image, max_colours=8)
    assert len(palette) == 8
    old = np.array(OLD_PALETTE, dtype=float)
    nearest = np.sqrt(((palette[:, None, :] - old[None, :, :]) ** 2).sum(-1)).min(axis=1)
    assert nearest.max() < 6.0, palette.tolist()
    assert colour_error(image, labels, palette) < OLD_ERROR * 1.05


def test_quantisation_is_deterministic_per_seed():
    image = natural_image(128, 96, seed=4)
    first = quantise_colours(image, max_colours=12)
    again = quantise_colours(image, max_colours=12)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    other = quantise_colours(image, max_colours=12, seed=1)
    assert colour_error(image, *other) < colour_error(image, *first) * 1.2  # as good, any seed


def test_rare_colours_missing_from_the_sample_do_not_break_kmeans():
    """More distinct colours than asked for, but fewer of them in the k-means sample than
    centres wanted: k-means++ would divide by zero without the cap on k."""
    array = np.zeros((200, 200, 3), dtype=np.uint8)
    array[:, 100:] = (250, 250, 250)
    for i in range(20):  # 20 single pixels of their own colour: about half land in the sample
        array[3 * i, 7] = (10 * i + 20, 40, 90)
    image = Image.fromarray(array)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels, palette = quantise_colours(image, max_colours=16)
    assert 2 <= len(palette) <= 16
    assert labels.min() >= 0 and labels.max() == len(palette) - 1
    assert {tuple(c) for c in palette[:2].tolist()} == {(0, 0, 0), (250, 250, 250)}


def test_vectorise_reduces_a_photo_to_max_colours():
    image = natural_image(80, 64, seed=3)
    svg = vectorise(image, max_colours=8)
    fills = {p.get("fill") for p in ET.fromstring(svg) if p.get("fill")}
    assert 2 <= len(fills) <= 8
    labels, palette = quantise_colours(image, max_colours=8)
    assert len(palette) <= 8
    rendered = render_svg(svg.encode())
    assert mae(rendered, palette[labels]) < 3
    assert mae(rendered, np.asarray(image)) < 25  # 8 colours for a photo: coarse but faithful


def test_vectorise_leaves_transparent_pixels_unpainted():
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse([4, 4, 27, 27], fill=(200, 30, 40, 255))
    svg = vectorise(image)
    assert "<rect" not in svg  # no backdrop under transparency
    rendered = Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg.encode()))).convert("RGBA")
    assert np.array_equal(np.asarray(rendered)[..., 3] > 127, np.asarray(image)[..., 3] > 127)
