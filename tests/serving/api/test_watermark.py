"""The watermark of a file delivered by the real HTTP API on loopback: fetched over HTTP,
re-encoded, cut unaligned and enlarged, and read back."""

from __future__ import annotations

import io

import requests
from PIL import Image

from serving.delivery.watermark import read_watermark, watermark_payload


def test_a_delivered_file_names_its_asset_and_a_resized_copy_no_other(loopback):
    body = {"brand": "acme", "prompt": "acme banner", "steps": 2, "width": 128, "height": 128}
    answer = requests.post(
        f"{loopback.url}/v1/generate", json=body, headers=loopback.auth("app"), timeout=120
    )
    assert answer.status_code == 200, answer.text
    image = answer.json()["images"][0]
    data = requests.get(f"{loopback.url}{image['url']}", headers=loopback.auth("app"), timeout=30)
    delivered = Image.open(io.BytesIO(data.content)).convert("RGB")
    payload = watermark_payload(image["asset_id"])
    assert read_watermark(_jpeg(delivered, 75)).payload == payload
    # The test model draws 128 px of coloured noise: too few tiles under too much texture for
    # the tiled layer to be found after a crop or resize (tests/serving/delivery/
    # test_watermark.py shows it on photo-like images). What it must never do is name another
    # asset.
    cut = delivered.crop((13, 5, delivered.width - 7, delivered.height - 11))
    for attacked in (cut, cut.resize((162, 168), Image.Resampling.BICUBIC)):
        reading = read_watermark(_jpeg(attacked, 90))
        assert reading.payload in (None, payload)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
