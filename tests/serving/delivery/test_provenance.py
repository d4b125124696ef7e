"""AI-content marking: the XMP manifest, the invisible watermark and `brandforge provenance`.

The watermark is checked through real encoders (Pillow's libjpeg, libwebp, zlib) and decoded
from what they give back, on synthetic "natural-ish" images: gradients, flat shapes, noise.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from serving.cli.provenance import provenance_command
from serving.delivery.formats import encode_motion, encode_still
from serving.delivery.manifest import (
    DIGITAL_SOURCE_TYPE,
    build_manifest,
    manifest_xmp,
    parse_xmp,
    read_manifest,
    read_provenance,
)
from serving.delivery.watermark import (
    WATERMARK_BITS,
    WATERMARK_MIN_SEARCHED_SIGNAL,
    WATERMARK_MIN_SIDE,
    crc16,
    embed_watermark,
    read_watermark,
    watermark_payload,
)

ASSET_ID = "0f3c2a9e7b4d4c1a8e2f6b5d9c0a1e37"


def natural_image(width: int, height: int, seed: int = 0, noise: float = 6.0) -> Image.Image:
    """Gradients, a few flat ellipses and rectangles, and sensor-like noise (std `noise`)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([200 * x + 30, 120 + 80 * np.sin(6 * y), 220 - 150 * x * y], axis=-1)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        cx, cy = rng.integers(0, width), rng.integers(0, height)
        r = int(rng.integers(4, max(width, height) // 3 + 5))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([cx - r, cy - r, cx + r, cy + r], fill=colour)
    noisy = np.asarray(image, dtype=float) + rng.normal(0, noise, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def manifest(**overrides: object) -> dict:
    fields = {
        "asset_id": ASSET_ID,
        "brand": "acme",
        "model_name": "brandforge-acme",
        "model_version": "3",
        "variant": "canary",
        "dataset_hash": "md5:5d41402abc4b2a76b9719d911017c592",
        "created_at": datetime(2025, 5, 1, 12, 30, 5, tzinfo=UTC),
    }
    return build_manifest(**{**fields, **overrides})


def reencode(image: Image.Image, fmt: str, **options: object) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def psnr(a: Image.Image, b: Image.Image) -> float:
    error = np.mean((np.asarray(a, dtype=float) - np.asarray(b, dtype=float)) ** 2)
    return float(10 * np.log10(255**2 / error))


# ---- manifest ---------------------------------------------------------------------------------


def test_manifest_round_trips_through_xmp_with_iptc_and_xmp_basics():
    m = manifest(model_name='acme <"spring"> & co')  # escaping
    xmp = manifest_xmp(m)
    assert parse_xmp(xmp) == m
    assert m["digital_source_type"] == DIGITAL_SOURCE_TYPE
    text = xmp.decode()
    assert f"<Iptc4xmpExt:DigitalSourceType>{DIGITAL_SOURCE_TYPE}<" in text
    assert "<xmp:CreatorTool>BrandForge</xmp:CreatorTool>" in text
    assert "<xmp:CreateDate>2025-05-01T12:30:05+00:00</xmp:CreateDate>" in text
    assert text.startswith("<?xpacket begin=") and text.endswith('<?xpacket end="r"?>')


def test_manifest_without_dataset_hash_and_with_other_time_zone():
    m = manifest(
        dataset_hash=None,
        created_at=datetime(2025, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
    )
    assert m["created_at"] == "2025-05-01T12:30:00+00:00"  # stored in UTC
    assert parse_xmp(manifest_xmp(m)) == m


def test_naive_created_at_and_empty_fields_are_refused():
    with pytest.raises(ValueError, match="no time zone"):
        manifest(created_at=datetime(2025, 5, 1))
    with pytest.raises(ValueError, match="'brand' must be a non-empty string"):
        manifest(brand="")


def test_foreign_xmp_and_broken_xmp_give_no_manifest():
    foreign = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        b'xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="image/png"/></rdf:RDF>'
        b"</x:xmpmeta>"
    )
    assert parse_xmp(foreign) is None
    assert parse_xmp(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><unclosed></x:xmpmeta>") is None


def test_properties_rewritten_as_attributes_are_read():
    # What exiftool and Adobe tools may turn our elements into.
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        'xmlns:brandforge="https://brandforge.dev/ns/1.0/" '
        f'Iptc4xmpExt:DigitalSourceType="{DIGITAL_SOURCE_TYPE}" brandforge:assetId="abc"/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()
    found = parse_xmp(xmp)
    assert found["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert found["asset_id"] == "abc" and found["brand"] is None


# ---- watermark --------------------------------------------------------------------------------


def test_payload_is_64_bits_with_a_checking_crc_and_depends_on_the_asset():
    payload = watermark_payload(ASSET_ID)
    assert len(payload) * 8 == WATERMARK_BITS == 64
    assert crc16(payload[:6]) == int.from_bytes(payload[6:], "big")
    assert payload == watermark_payload(ASSET_ID)
    assert payload != watermark_payload(ASSET_ID + "x")
    assert crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value


# What the hand-written bitwise CRC-16/CCITT-FALSE loop (polynomial 0x1021, init 0xFFFF) that
# `binascii.crc_hqx` replaced gave for these inputs, and the payloads it made: every watermark
# already delivered carries such a payload, so the values must not change.
OLD_CRC16 = {
    b"": 0xFFFF,
    b"\x00" * 6: 0x0E10,
    b"\xff" * 6: 0x99CF,
    b"brandforge": 0x4AEB,
    bytes(range(256)): 0x3FBD,
}
OLD_PAYLOADS = {
    ASSET_ID: "735fc098d5af394c",
    "a": "ca978112ca1bab36",
    "asset-1": "1c49a083a74e03fc",
}


def test_crc16_gives_the_values_of_the_hand_written_implementation_it_replaced():
    for data, expected in OLD_CRC16.items():
        assert crc16(data) == expected, data
    for asset_id, payload in OLD_PAYLOADS.items():
        assert watermark_payload(asset_id).hex() == payload


def test_payload_without_its_crc_is_refused():
    with pytest.raises(ValueError, match="watermark_payload"):
        embed_watermark(natural_image(128, 128), b"\x00" * 8)


def test_watermark_is_invisible():
    original = natural_image(256, 256)
    marked = embed_watermark(original, watermark_payload(ASSET_ID))
    assert marked.size == original.size and marked.mode == "RGB"
    assert psnr(original, marked) >= 38.0
    # and it is a change of brightness, not of colour: mean hue shift well under one level
    diff = np.asarray(marked, dtype=float) - np.asarray(original, dtype=float)
    assert np.abs(diff.mean(axis=(0, 1))).max() < 1.0


@pytest.mark.parametrize("size", [(256, 256), (512, 320), (WATERMARK_MIN_SIDE, WATERMARK_MIN_SIDE)])
def test_watermark_survives_jpeg_quality_75(size):
    payload = watermark_payload(ASSET_ID)
    for seed in range(3):
        marked = embed_watermark(natural_image(*size, seed=seed), payload)
        reading = read_watermark(reencode(marked, "JPEG", quality=75))
        assert reading.found, reading.reason
        assert reading.payload == payload  # every one of the 64 bits


@pytest.mark.parametrize(
    ("fmt", "options"), [("PNG", {}), ("WEBP", {"quality": 90}), ("JPEG", {"quality": 90})]
)
def test_watermark_survives_png_and_webp(fmt, options):
    payload = watermark_payload(ASSET_ID)
    marked = embed_watermark(natural_image(256, 256, seed=4), payload)
    reading = read_watermark(reencode(marked, fmt, **options))
    assert reading.found and reading.payload == payload
    assert reading.bit_agreement > 0.9


def test_fainter_strength_costs_less_and_still_reads_without_being_told():
    original = natural_image(256, 256, seed=5)
    payload = watermark_payload(ASSET_ID)
    faint = embed_watermark(original, payload, strength=0.5)
    assert psnr(original, faint) > psnr(original, embed_watermark(original, payload)) + 3
    assert read_watermark(reencode(faint, "PNG")).payload == payload
    with pytest.raises(ValueError, match=r"strength must be in \(0, 1\]"):
        embed_watermark(original, payload, strength=1.5)


def test_watermark_survives_white_and_black_backgrounds():
    # Saturated areas clip a naive mark away; the embedder shifts brightness to make room.
    payload = watermark_payload(ASSET_ID)
    for background in ((255, 255, 255), (0, 0, 0)):
        image = Image.new("RGB", (256, 256), background)
        ImageDraw.Draw(image).rectangle([60, 60, 140, 120], fill=(255, 0, 0))
        marked = embed_watermark(image, payload)
        reading = read_watermark(reencode(marked, "JPEG", quality=75))
        assert reading.found and reading.payload == payload


def test_unmarked_images_read_as_unmarked():
    gradient = np.linspace(0, 255, 300)[None, :, None].repeat(200, 0).repeat(3, 2)
    noise = np.random.default_rng(9).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    images = [
        natural_image(256, 256, seed=11),
        reencode(natural_image(512, 320, seed=12), "JPEG", quality=75),
        Image.new("RGB", (128, 128), (255, 255, 255)),
        Image.new("RGB", (200, 100), (40, 90, 160)),
        Image.fromarray(gradient.astype(np.uint8)),
        Image.fromarray(noise),
    ]
    for image in images:
        reading = read_watermark(image)
        assert not reading.found
        assert reading.payload is None
        assert reading.signal < WATERMARK_MIN_SEARCHED_SIGNAL
        assert reading.reason.startswith("no watermark")


def test_another_assets_mark_is_told_apart():
    marked = embed_watermark(natural_image(256, 256), watermark_payload("other-asset"))
    reading = read_watermark(reencode(marked, "JPEG", quality=75))
    assert reading.found and reading.payload != watermark_payload(ASSET_ID)


def test_too_small_images_are_left_unmarked_with_a_warning(caplog):
    small = natural_image(WATERMARK_MIN_SIDE - 16, 200)
    with caplog.at_level(logging.WARNING, logger="serving.delivery.watermark"):
        out = embed_watermark(small, watermark_payload(ASSET_ID))
    assert np.array_equal(np.asarray(out), np.asarray(small))
    assert "too small to watermark" in caplog.text
    reading = read_watermark(out)
    assert not reading.found and "too small" in reading.reason


def test_alpha_is_kept():
    image = natural_image(128, 128).convert("RGBA")
    alpha = np.zeros((128, 128), np.uint8)
    alpha[16:112, 16:112] = 255
    image.putalpha(Image.fromarray(alpha))
    marked = embed_watermark(image, watermark_payload(ASSET_ID))
    assert marked.mode == "RGBA"
    assert np.array_equal(np.asarray(marked.getchannel("A")), alpha)
    assert read_watermark(marked).payload == watermark_payload(ASSET_ID)


# ---- reading delivered files ------------------------------------------------------------------


def test_stripped_metadata_still_reads_as_ai_generated_through_the_watermark():
    marked = embed_watermark(natural_image(256, 256), watermark_payload(ASSET_ID))
    report = read_provenance(encode_still(marked, "jpeg", quality=75))  # no xmp
    assert report["manifest"] is None
    assert report["watermark"]["found"] and report["ai_generated"]


@pytest.mark.parametrize("fmt", ["gif", "mp4"])
def test_motion_assets_carry_manifest_and_first_frame_watermark(fmt):
    m = manifest()
    payload = watermark_payload(ASSET_ID)
    frames = [embed_watermark(natural_image(160, 128, seed=s), payload) for s in range(4)]
    report = read_provenance(encode_motion(frames, fmt, fps=8, xmp=manifest_xmp(m)))
    assert report["format"] == fmt and report["manifest"] == m
    assert report["watermark"]["found"] and report["watermark"]["matches_manifest"]
    assert report["ai_generated"]


def test_svg_carries_the_manifest_only():
    m = manifest()
    report = read_provenance(encode_still(natural_image(64, 48), "svg", xmp=manifest_xmp(m)))
    assert report["manifest"] == m and report["ai_generated"]
    assert not report["watermark"]["found"] and "vector" in report["watermark"]["reason"]


def test_unrecognised_bytes_are_refused():
    with pytest.raises(ValueError, match="unrecognised file"):
        read_manifest(b"hello, not an image")
    with pytest.raises(ValueError, match="cannot decode"):
        read_provenance(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)


# ---- the CLI ----------------------------------------------------------------------------------


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(provenance_command)
    return app


def test_cli_shows_mark_and_manifest_of_a_marked_jpeg(tmp_path: Path):
    m = manifest()
    marked = embed_watermark(natural_image(256, 256), watermark_payload(ASSET_ID))
    path = tmp_path / "banner.jpg"
    path.write_bytes(encode_still(marked, "jpeg", xmp=manifest_xmp(m), quality=75))
    result = CliRunner().invoke(_cli(), [str(path)])
    assert result.exit_code == 0, result.output
    assert "AI-generated: yes (marked by: manifest and watermark)" in result.output
    for value in (ASSET_ID, "acme", "brandforge-acme", "canary", DIGITAL_SOURCE_TYPE):
        assert value in result.output
    assert "matches the manifest's asset id" in result.output

    as_json = CliRunner().invoke(_cli(), [str(path), "--json"])
    assert as_json.exit_code == 0
    report = json.loads(as_json.stdout)
    assert report["manifest"] == m and report["watermark"]["found"] and report["ai_generated"]
    assert report["watermark"]["payload"] == watermark_payload(ASSET_ID).hex()


def test_cli_says_plainly_when_no_mark_is_found(tmp_path: Path):
    path = tmp_path / "photo.png"
    path.write_bytes(encode_still(natural_image(128, 128), "png"))
    result = CliRunner().invoke(_cli(), [str(path)])
    assert result.exit_code == 0
    assert "No AI-generation mark found" in result.output
    assert (
        json.loads(CliRunner().invoke(_cli(), [str(path), "--json"]).stdout)["ai_generated"]
        is False
    )


def test_cli_fails_on_missing_or_undecodable_files(tmp_path: Path):
    missing = tmp_path / "nope.jpg"
    result = CliRunner().invoke(_cli(), [str(missing)])
    assert result.exit_code == 1
    assert f"no such file: {missing}" in result.output
    garbage = tmp_path / "notes.png"
    garbage.write_text("not an image at all")
    result = CliRunner().invoke(_cli(), [str(garbage)])
    assert result.exit_code == 1
    assert f"cannot decode {garbage}" in result.output
