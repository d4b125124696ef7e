"""The watermark of a file delivered by the real HTTP API on loopback survives a crop and a
resize: the file is fetched, cut unaligned on every side, halved, re-encoded and read back."""

from __future__ import annotations

import io

import requests
from PIL import Image

from serving.delivery.watermark import read_watermark, watermark_payload


def test_a_delivered_file_cropped_and_halved_still_names_its_asset(loopback):
    body = {"brand": "acme", "prompt": "acme banner", "steps": 2, "width": 512, "height": 512}
    answer = requests.post(
        f"{loopback.url}/v1/generate", json=body, headers=loopback.auth("app"), timeout=120
    )
    assert answer.status_code == 200, answer.text
    image = answer.json()["images"][0]
    data = requests.get(f"{loopback.url}{image['url']}", headers=loopback.auth("app"), timeout=30)
    delivered = Image.open(io.BytesIO(data.content)).convert("RGB")
    cut = delivered.crop((51, 13, delivered.width - 29, delivered.height - 47))
    halved = cut.resize((cut.width // 2, cut.height // 2), Image.Resampling.BICUBIC)
    reading = read_watermark(_jpeg(halved, 90))
    assert reading.found, reading.reason
    assert reading.payload == watermark_payload(image["asset_id"])


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
