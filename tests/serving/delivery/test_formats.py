"""Delivered formats: each file opens in a real decoder (Pillow, pillow-heif, cairosvg, PyAV)
and gives back the provenance manifest that was embedded in it."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import av
import cairosvg
import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageDraw

from serving.delivery.formats import (
    EXTENSIONS,
    MEDIA_TYPES,
    MOTION_FORMATS,
    STILL_FORMATS,
    encode_motion,
    encode_still,
    sniff_format,
)
from serving.delivery.manifest import build_manifest, manifest_xmp, read_manifest
from serving.delivery.vector import quantise_colours
from tests.serving.delivery.test_provenance import natural_image

MANIFEST = build_manifest(
    asset_id="7d0c1f0e5b1a4d2c9f3e8a6b4c2d0e1f",
    brand="acme",
    model_name="brandforge-acme",
    model_version="12",
    variant="champion",
    dataset_hash=None,
    created_at=datetime(2025, 6, 2, 9, 15, tzinfo=UTC),
)
XMP = manifest_xmp(MANIFEST)


def shapes_image(width: int = 96, height: int = 72) -> Image.Image:
    """Flat colours with what tracing gets wrong most easily: a ring with a hole showing a
    third colour, pixels touching only at corners, one-pixel lines, an odd size."""
    image = Image.new("RGB", (width, height), (245, 240, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle([4, 4, 40, 30], fill=(200, 30, 40))
    draw.ellipse([44, 6, 90, 60], fill=(20, 60, 160))
    draw.ellipse([56, 18, 78, 48], fill=(245, 240, 230))  # the hole
    draw.rectangle([62, 28, 70, 36], fill=(250, 200, 20))  # an island in the hole
    draw.line([(0, height - 3), (width - 1, height - 3)], fill=(10, 10, 10))
    pixels = image.load()
    for y in range(36, 52):  # a checkerboard: regions meeting diagonally
        for x in range(4, 20):
            if (x + y) % 2 == 0:
                pixels[x, y] = (10, 10, 10)
    draw.polygon([(24, 40), (40, 66), (8, 66)], fill=(30, 150, 70))
    return image


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


def render_svg(svg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg))).convert("RGB"))


def test_tables_cover_every_format():
    assert set(MEDIA_TYPES) == set(EXTENSIONS) == set(STILL_FORMATS + MOTION_FORMATS)
    assert MEDIA_TYPES["svg"] == "image/svg+xml" and MEDIA_TYPES["mp4"] == "video/mp4"
    assert MEDIA_TYPES["heic"] == "image/heic" and EXTENSIONS["jpeg"] == ".jpg"


def test_unknown_formats_are_refused_naming_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown still format 'bmp': use one of png, jpeg"):
        encode_still(shapes_image(), "bmp")
    with pytest.raises(ValueError, match=r"unknown motion format 'avi': use one of gif, mp4"):
        encode_motion([shapes_image()], "avi", fps=10)
    with pytest.raises(ValueError, match="unknown still format 'gif'"):
        encode_still(shapes_image(), "gif")  # a motion format is not a still one


def _decode_still(data: bytes, fmt: str) -> Image.Image:
    if fmt == "heic":
        return pillow_heif.open_heif(io.BytesIO(data)).to_pillow()
    image = Image.open(io.BytesIO(data))
    assert image.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt]
    image.load()
    return image


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "heic"])
def test_raster_stills_decode_and_carry_the_manifest(fmt):
    original = natural_image(120, 90, noise=0)  # noise would be most of a lossy codec's error
    data = encode_still(original, fmt, xmp=XMP, quality=90)
    assert sniff_format(data) == fmt
    decoded = _decode_still(data, fmt)
    assert decoded.size == (120, 90)
    error = mae(np.asarray(decoded.convert("RGB")), np.asarray(original))
    assert error == 0 if fmt == "png" else error < 5  # 4:2:0 chroma at sharp colour edges
    assert read_manifest(data) == MANIFEST
    assert read_manifest(encode_still(original, fmt)) is None  # no xmp asked, none written


@pytest.mark.parametrize("fmt", ["png", "webp", "heic"])
def test_alpha_is_kept_where_the_format_has_it(fmt):
    image = shapes_image().convert("RGBA")
    alpha = np.full((72, 96), 255, np.uint8)
    alpha[:, :30] = 0
    image.putalpha(Image.fromarray(alpha))
    decoded = _decode_still(encode_still(image, fmt, quality=95), fmt)
    assert decoded.mode == "RGBA"
    assert mae(np.asarray(decoded.getchannel("A")), alpha) < 3


def test_jpeg_flattens_transparency_onto_white():
    image = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    decoded = _decode_still(encode_still(image, "jpeg", quality=95), "jpeg")
    assert decoded.mode == "RGB"
    assert np.asarray(decoded).min() >= 250


def test_svg_is_a_vector_drawing_that_renders_as_the_quantised_image():
    image = shapes_image()
    data = encode_still(image, "svg", xmp=XMP)
    assert sniff_format(data) == "svg"
    root = ET.fromstring(data)
    svg = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{svg}svg" and root.get("viewBox") == "0 0 96 72"
    assert root.find(f".//{svg}image") is None  # no embedded raster
    paths = root.findall(f"{svg}path")
    assert paths and all(p.get("fill-rule") == "evenodd" for p in paths)
    labels, palette = quantise_colours(image, max_colours=16)
    assert len(palette) == 6  # the image has 6 colours: kept exactly
    rendered = render_svg(data)
    assert rendered.shape == (72, 96, 3)
    assert mae(rendered, palette[labels]) < 3
    assert mae(rendered, np.asarray(image)) < 3
    assert read_manifest(data) == MANIFEST


def _frames(count: int, width: int, height: int) -> list[Image.Image]:
    """Frames a decoder can tell apart: a bar moving across a gradient."""
    frames = []
    for i in range(count):
        frame = natural_image(width, height, seed=0, noise=0)
        x = i * (width - 10) // max(count - 1, 1)
        ImageDraw.Draw(frame).rectangle([x, 0, x + 9, height - 1], fill=(250, 250, 250))
        frames.append(frame)
    return frames


def test_gif_decodes_with_its_frames_timing_loop_and_manifest():
    frames = _frames(5, 90, 60)
    data = encode_motion(frames, "gif", fps=10, xmp=XMP)
    assert sniff_format(data) == "gif"
    gif = Image.open(io.BytesIO(data))
    assert gif.format == "GIF" and gif.n_frames == 5 and gif.size == (90, 60)
    assert gif.info["loop"] == 0  # forever
    for index in range(len(frames)):
        gif.seek(index)
        assert gif.info["duration"] == 100
        errors = [mae(np.asarray(gif.convert("RGB")), np.asarray(frame)) for frame in frames]
        assert int(np.argmin(errors)) == index and errors[index] < 4  # 256 colours a frame
    assert read_manifest(data) == MANIFEST

    once = Image.open(io.BytesIO(encode_motion(frames, "gif", fps=10, loop=False)))
    assert "loop" not in once.info  # no NETSCAPE extension: played once


def test_mp4_is_h264_with_the_right_frames_size_rate_and_manifest():
    frames = _frames(6, 91, 61)  # odd: padded to 92x62 for yuv420p
    data = encode_motion(frames, "mp4", fps=12, xmp=XMP)
    assert sniff_format(data) == "mp4"
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (92, 62)
        assert float(stream.average_rate) == pytest.approx(12, rel=0.01)
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == 6
    for index, got in enumerate(decoded):  # each frame in its place, close to its source
        errors = [mae(got[:61, :91], np.asarray(frame)) for frame in frames]
        assert int(np.argmin(errors)) == index and errors[index] < 6
    assert data.index(b"moov") < data.index(b"mdat")  # playable while downloading
    assert read_manifest(data) == MANIFEST
    assert read_manifest(encode_motion(frames[:2], "mp4", fps=12)) is None


def test_motion_input_is_checked():
    with pytest.raises(ValueError, match="no frames"):
        encode_motion([], "gif", fps=10)
    with pytest.raises(ValueError, match="fps must be positive"):
        encode_motion([shapes_image()], "mp4", fps=0)
    with pytest.raises(ValueError, match=r"frames differ in size \(90x60, 96x72\)"):
        encode_motion([shapes_image(), shapes_image(90, 60)], "gif", fps=10)


def test_sniffing_goes_by_content():
    assert sniff_format(b"plain text") is None
    assert sniff_format(b'\xef\xbb\xbf<?xml version="1.0"?>\n<svg xmlns="x"/>') == "svg"
    with pytest.raises(ValueError, match="unrecognised file"):
        read_manifest(b"BM\x00\x00 a bitmap")
