"""The watermark after crops and resizes: the tiled layer is found at any offset and scale.

Images are synthetic photo-like scenes (`natural_image`) and decoded pixels from real encoders;
the crops are unaligned (offsets that are no multiple of 8 or of the 64-px tile). Through the
real API on loopback: tests/serving/api/test_watermark.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from serving.delivery.watermark import (
    WATERMARK_MIN_SEARCHED_SIGNAL,
    embed_watermark,
    read_watermark,
    watermark_payload,
)
from serving.delivery.watermark_sync import TILE_PX, fold, period_candidates, whiten
from tests.serving.delivery.test_provenance import natural_image, reencode

ASSET_ID = "5b1d0c7e9a2f4e3b8c6d1a0f2e4b7c99"
SIDE = 384


@pytest.fixture(scope="module")
def marked() -> Image.Image:
    return embed_watermark(natural_image(SIDE, SIDE, seed=21), watermark_payload(ASSET_ID))


def _cut(image: Image.Image, left: int, top: int, right: int, bottom: int) -> Image.Image:
    return image.crop((left, top, image.width - right, image.height - bottom))


@pytest.mark.parametrize(
    "sides",
    [(41, 0, 0, 0), (0, 43, 0, 0), (0, 0, 39, 0), (0, 0, 0, 42), (37, 41, 43, 39)],
    ids=["left", "top", "right", "bottom", "all four"],
)
def test_a_ten_percent_unaligned_crop_keeps_the_mark(marked, sides):
    cropped = _cut(marked, *sides)
    reading = read_watermark(reencode(cropped, "PNG"))
    assert reading.found, reading.reason
    assert reading.payload == watermark_payload(ASSET_ID)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_a_resize_keeps_the_mark(marked, scale):
    size = (round(SIDE * scale), round(SIDE * scale))
    reading = read_watermark(marked.resize(size, Image.Resampling.BICUBIC))
    assert reading.found, reading.reason
    assert reading.payload == watermark_payload(ASSET_ID)
    assert reading.bit_agreement > 0.5  # of the folded bins that hold pixels


def test_a_crop_then_jpeg_75_keeps_the_mark(marked):
    reading = read_watermark(reencode(_cut(marked, 37, 5, 11, 29), "JPEG", quality=75))
    assert reading.found and reading.payload == watermark_payload(ASSET_ID)


def test_the_tile_period_is_found_from_the_pixels_alone(marked):
    # 0.75x: the tile of 64 px is 48 px now; the autocorrelation finds it within a pixel
    small = marked.resize((288, 288), Image.Resampling.BICUBIC)
    luma = np.asarray(small.convert("L"), dtype=float)
    best = period_candidates(whiten(luma))[0]
    assert best == pytest.approx((0.75 * TILE_PX, 0.75 * TILE_PX), abs=1.0)
    assert fold(whiten(luma), best).shape == (2 * 32, 2 * 32)


def test_unmarked_images_cropped_or_resized_read_as_unmarked():
    for seed in range(2):
        image = natural_image(256, 192, seed=30 + seed)
        for attacked in (image, _cut(image, 13, 7, 21, 3), image.resize((128, 96))):
            reading = read_watermark(reencode(attacked, "JPEG", quality=75))
            assert not reading.found and reading.payload is None
            assert reading.signal < WATERMARK_MIN_SEARCHED_SIGNAL
