"""Encoding delivered assets: stills (PNG, JPEG, WebP, HEIC, SVG) and motion (GIF, MP4), each
carrying the asset's provenance manifest (an XMP packet, `serving.delivery.manifest.manifest_xmp`)
where that format keeps metadata, and reading it back.

Where the XMP goes, per format (and where `extract_xmp` finds it):

| format | XMP slot                                                     | who else reads it      |
|--------|--------------------------------------------------------------|------------------------|
| png    | iTXt chunk `XML:com.adobe.xmp` (before the image data)       | exiftool, Pillow       |
| jpeg   | APP1 segment `http://ns.adobe.com/xap/1.0/`                  | exiftool, Pillow, most |
| webp   | `XMP ` chunk of the extended (VP8X) container                | exiftool, Pillow       |
| heic   | `mime` item application/rdf+xml                              | exiftool, pillow-heif  |
| svg    | `<metadata>` element holding the packet's `x:xmpmeta`        | any XML reader         |
| gif    | application extension `XMP DataXMP` + the 258-byte "magic    | exiftool, Adobe        |
|        | trailer" of the XMP specification, part 3, before the frames |                        |
| mp4    | the `comment` tag (`udta/meta/ilst/©cmt`), the whole packet  | ffprobe, exiftool      |

Pillow does not read GIF XMP, so `extract_xmp` walks the GIF blocks itself. FFmpeg cannot
write an XMP box into MP4, hence the `comment` tag.

Motion formats drop alpha (frames are flattened onto white). Stills keep it except JPEG (no
alpha channel: flattened onto white) and SVG (transparent pixels are left unpainted).

The SVG is a real vectorisation into flat-colour polygons (`serving.delivery.vector`).
"""

from __future__ import annotations

import io
import logging
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from serving.delivery.vector import NS_SVG, svg_document

log = logging.getLogger(__name__)

STILL_FORMATS = ("png", "jpeg", "webp", "heic", "svg")
MOTION_FORMATS = ("gif", "mp4")
MEDIA_TYPES: dict[str, str] = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "heic": "image/heic",
    "svg": "image/svg+xml",
    "gif": "image/gif",
    "mp4": "video/mp4",
}
EXTENSIONS: dict[str, str] = {
    "png": ".png",
    "jpeg": ".jpg",
    "webp": ".webp",
    "heic": ".heic",
    "svg": ".svg",
    "gif": ".gif",
    "mp4": ".mp4",
}

NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_GIF_XMP_APP = b"XMP DataXMP"  # application identifier (8) + authentication code (3)
# Lets a GIF reader that knows nothing of XMP skip the raw packet as if it were sub-blocks.
_GIF_XMP_TRAILER = b"\x01" + bytes(range(255, -1, -1)) + b"\x00"
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
# libx264's constant-quality setting: 18 is visually lossless, which also keeps the pixel
# watermark of the frames readable.
MP4_CRF = 18
# GIF delays are whole centiseconds, and browsers replace delays under 2 cs with 10 cs.
GIF_MIN_DELAY_MS = 20


def _check_format(fmt: str, allowed: Sequence[str], kind: str) -> None:
    if fmt not in allowed:
        raise ValueError(f"unknown {kind} format {fmt!r}: use one of {', '.join(allowed)}")


def _normalise(image: Image.Image) -> Image.Image:
    """RGBA when the image has any transparency, else RGB (what every encoder here takes)."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    return image.convert("RGBA" if has_alpha else "RGB")


def _flatten(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """The image as RGB, transparent parts composited onto `background`."""
    image = _normalise(image)
    if image.mode == "RGB":
        return image
    canvas = Image.new("RGB", image.size, background)
    canvas.paste(image, mask=image.getchannel("A"))
    return canvas


def _xmp_element(xmp: bytes) -> str:
    """The `x:xmpmeta` element of an XMP packet (without the xpacket wrapper), checked to be
    well-formed XML so that the SVG stays so."""
    text = _xmp_text(xmp)
    start, end = text.find("<x:xmpmeta"), text.rfind("</x:xmpmeta>")
    if start < 0 or end < 0:
        raise ValueError("XMP packet has no <x:xmpmeta> element: build it with manifest_xmp()")
    element = text[start : end + len("</x:xmpmeta>")]
    try:
        ET.fromstring(element)
    except ET.ParseError as exc:
        raise ValueError(f"XMP packet is not well-formed XML ({exc})") from exc
    return element


def _xmp_text(xmp: bytes) -> str:
    try:
        return xmp.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"XMP packet is not UTF-8 ({exc}): build it with manifest_xmp()") from exc


# --------------------------------------------------------------------------------------------
# Stills
# --------------------------------------------------------------------------------------------


def encode_still(
    image: Image.Image, fmt: str, *, xmp: bytes | None = None, quality: int = 92
) -> bytes:
    """`image` encoded as `fmt` (one of STILL_FORMATS), with `xmp` embedded as its metadata.

    `quality` (1-100) applies to the lossy formats (jpeg, webp, heic); for svg the colour count
    is `serving.delivery.vector.vectorise`'s default.
    """
    _check_format(fmt, STILL_FORMATS, "still")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be within 1..100, got {quality}")
    if fmt == "svg":
        metadata = None if xmp is None else _xmp_element(xmp)
        return svg_document(image, max_colours=16, metadata=metadata).encode("utf-8")
    buffer = io.BytesIO()
    if fmt == "png":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        if xmp is not None:
            info.add_itxt("XML:com.adobe.xmp", _xmp_text(xmp), zip=False)
        _normalise(image).save(buffer, "PNG", pnginfo=info, optimize=False)
    elif fmt == "jpeg":
        extra = {"xmp": xmp} if xmp is not None else {}
        _flatten(image).save(buffer, "JPEG", quality=quality, optimize=True, **extra)
    elif fmt == "webp":
        extra = {"xmp": xmp} if xmp is not None else {}
        _normalise(image).save(buffer, "WEBP", quality=quality, method=4, **extra)
    else:  # heic
        import pillow_heif

        extra = {"xmp": xmp} if xmp is not None else {}
        pillow_heif.from_pillow(_normalise(image)).save(buffer, quality=quality, **extra)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Motion
# --------------------------------------------------------------------------------------------


def encode_motion(
    frames: Sequence[Image.Image],
    fmt: str,
    *,
    fps: float,
    xmp: bytes | None = None,
    loop: bool = True,
) -> bytes:
    """`frames` (all one size) encoded as `fmt` (one of MOTION_FORMATS) at `fps` frames per
    second, with `xmp` embedded as its metadata.

    gif: an adaptive 256-colour palette per frame (dithered), delay round(100 / fps) cs (at
    least 2), looping forever when `loop` (else played once). Pillow merges consecutive
    identical frames into one with their delays summed. mp4: H.264 (libx264, CRF 18),
    yuv420p in BT.601 limited range, `moov` first for progressive playback; `loop` is the
    player's business there. An odd width or height is padded by one pixel (edge repeated).
    """
    _check_format(fmt, MOTION_FORMATS, "motion")
    if not frames:
        raise ValueError("no frames to encode: pass at least one image")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    sizes = {frame.size for frame in frames}
    if len(sizes) > 1:
        raise ValueError(
            f"frames differ in size ({', '.join(f'{w}x{h}' for w, h in sorted(sizes))}): "
            "resize them to one size first"
        )
    rgb = [_flatten(frame) for frame in frames]
    if fmt == "gif":
        return _encode_gif(rgb, fps=fps, xmp=xmp, loop=loop)
    return _encode_mp4(rgb, fps=fps, xmp=xmp)


def _encode_gif(frames: list[Image.Image], *, fps: float, xmp: bytes | None, loop: bool) -> bytes:
    delay_ms = max(GIF_MIN_DELAY_MS, round(100 / fps) * 10)
    if delay_ms != round(1000 / fps):
        log.info("GIF delay %d ms for %.3g fps (GIF stores whole centiseconds)", delay_ms, fps)
    paletted = [
        frame.quantize(
            colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG
        )
        for frame in frames
    ]
    buffer = io.BytesIO()
    options: dict[str, object] = {"duration": delay_ms, "optimize": False, "disposal": 1}
    if loop:
        options["loop"] = 0  # NETSCAPE2.0 extension, 0 = forever; without it: played once
    paletted[0].save(buffer, "GIF", save_all=True, append_images=paletted[1:], **options)
    data = buffer.getvalue()
    return data if xmp is None else _gif_insert_xmp(data, xmp)


def _gif_screen_end(data: bytes) -> int:
    """Offset just past a GIF's header, logical screen descriptor and global colour table."""
    if len(data) < 13 or data[:6] not in (b"GIF87a", b"GIF89a"):
        raise ValueError("not a GIF: the file does not start with GIF87a/GIF89a")
    packed = data[10]
    table = 3 * 2 ** ((packed & 0x07) + 1) if packed & 0x80 else 0
    return 13 + table


def _gif_insert_xmp(data: bytes, xmp: bytes) -> bytes:
    if b"\x00" in xmp:
        raise ValueError("XMP packet contains NUL bytes, which GIF cannot carry: use manifest_xmp")
    at = _gif_screen_end(data)
    block = b"\x21\xff" + bytes([len(_GIF_XMP_APP)]) + _GIF_XMP_APP + xmp + _GIF_XMP_TRAILER
    # XMP needs GIF89a (extensions); Pillow writes 89a whenever it writes a delay.
    return b"GIF89a" + data[6:at] + block + data[at:]


def _gif_skip_sub_blocks(data: bytes, pos: int) -> int:
    while True:
        if pos >= len(data):
            raise ValueError("truncated GIF: a data sub-block runs past the end of the file")
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos


def _gif_xmp(data: bytes) -> bytes | None:
    """The XMP packet of a GIF's `XMP DataXMP` application extension, or None."""
    pos = _gif_screen_end(data)
    while pos < len(data):
        introducer = data[pos]
        if introducer == 0x3B:  # trailer
            return None
        if introducer == 0x21:  # extension: label, then sub-blocks
            if pos + 2 >= len(data):
                break
            label, first = data[pos + 1], data[pos + 2]
            if label == 0xFF and data[pos + 3 : pos + 3 + first] == _GIF_XMP_APP:
                start = pos + 3 + first
                end = data.find(_GIF_XMP_TRAILER, start)
                if end < 0:
                    raise ValueError("GIF XMP extension lacks its magic trailer: file is damaged")
                return data[start:end]
            pos = _gif_skip_sub_blocks(data, pos + 2)
        elif introducer == 0x2C:  # image descriptor, local colour table, LZW code size, data
            if pos + 10 > len(data):
                break
            packed = data[pos + 9]
            pos += 10 + (3 * 2 ** ((packed & 0x07) + 1) if packed & 0x80 else 0) + 1
            pos = _gif_skip_sub_blocks(data, pos)
        else:
            raise ValueError(f"damaged GIF: unexpected byte 0x{introducer:02x} at offset {pos}")
    raise ValueError("truncated GIF: no trailer")


def _even_rgb(frame: Image.Image) -> np.ndarray:
    """The frame as an RGB array with even width and height (last row/column repeated)."""
    array = np.asarray(frame, dtype=np.uint8)
    pad_y, pad_x = array.shape[0] % 2, array.shape[1] % 2
    if pad_y or pad_x:
        array = np.pad(array, ((0, pad_y), (0, pad_x), (0, 0)), mode="edge")
    return np.ascontiguousarray(array)


def _encode_mp4(frames: list[Image.Image], *, fps: float, xmp: bytes | None) -> bytes:
    import av
    from av.video.reformatter import ColorRange, Colorspace

    rate = Fraction(fps).limit_denominator(1001)
    width, height = frames[0].size
    if width % 2 or height % 2:
        log.info("padding %dx%d frames by one pixel for yuv420p", width, height)
    # The mp4 muxer's +faststart rewrites the file to put `moov` first, which needs a real
    # file, not a stream.
    with tempfile.TemporaryDirectory(prefix="brandforge-mp4-") as tmp:
        path = Path(tmp) / "out.mp4"
        with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            if xmp is not None:
                out.metadata["comment"] = _xmp_text(xmp)
            stream = out.add_stream("libx264", rate=rate)
            stream.width, stream.height = width + width % 2, height + height % 2
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(MP4_CRF)}
            context = stream.codec_context
            context.colorspace = Colorspace.ITU601
            context.color_range = ColorRange.MPEG
            context.color_primaries = 6  # SMPTE 170M, so players do not guess BT.709 for HD
            context.color_trc = 6
            for index, frame in enumerate(frames):
                video = av.VideoFrame.from_ndarray(_even_rgb(frame), format="rgb24").reformat(
                    format="yuv420p",
                    src_colorspace=Colorspace.ITU601,
                    dst_colorspace=Colorspace.ITU601,
                )
                video.pts = index
                out.mux(stream.encode(video))
            out.mux(stream.encode(None))
        return path.read_bytes()


# --------------------------------------------------------------------------------------------
# Reading back
# --------------------------------------------------------------------------------------------


def sniff_format(data: bytes) -> str | None:
    """Which of our formats `data` is, from its first bytes (names and extensions lie), or
    None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[4:8] == b"ftyp":
        size = int.from_bytes(data[:4], "big")
        brands = [data[8:12]] + [data[i : i + 4] for i in range(16, min(size, 64), 4)]
        if data[8:12] in _HEIF_BRANDS or (
            b"mif1" in brands and not {b"isom", b"mp41", b"mp42", b"avc1"} & set(brands)
        ):
            return "heic"
        return "mp4"
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if (head.startswith(b"<?xml") or head.startswith(b"<svg") or head.startswith(b"<!--")) and (
        b"<svg" in head
    ):
        return "svg"
    return None


def _require_format(data: bytes) -> str:
    fmt = sniff_format(data)
    if fmt is None:
        raise ValueError(
            "unrecognised file: not PNG, JPEG, WebP, HEIC, SVG, GIF or MP4 "
            f"(first bytes {data[:12]!r})"
        )
    return fmt


def extract_xmp(data: bytes) -> bytes | None:
    """The XMP packet embedded in an encoded asset of any of our formats, or None.

    Raises ValueError when the bytes are not one of our formats or cannot be decoded.
    """
    fmt = _require_format(data)
    try:
        if fmt in ("png", "jpeg", "webp"):
            with Image.open(io.BytesIO(data)) as image:
                xmp = image.info.get("xmp")
            if isinstance(xmp, str):  # PNG iTXt comes back as text
                xmp = xmp.encode("utf-8")
            return xmp or None
        if fmt == "heic":
            import pillow_heif

            return pillow_heif.open_heif(io.BytesIO(data)).info.get("xmp") or None
        if fmt == "gif":
            return _gif_xmp(data)
        if fmt == "svg":
            return _svg_xmp(data)
        import av

        with av.open(io.BytesIO(data), mode="r") as container:
            comment = container.metadata.get("comment")
        return comment.encode("utf-8") if comment and "xmpmeta" in comment else None
    except ValueError:
        raise
    except Exception as exc:  # decoders raise their own types (OSError, av.error.*, ...)
        raise ValueError(f"cannot decode this {fmt} file: {exc}") from exc


def _svg_xmp(data: bytes) -> bytes | None:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ValueError(f"SVG is not well-formed XML: {exc}") from exc
    for metadata in root.iter(f"{{{NS_SVG}}}metadata"):
        for child in metadata:
            if child.tag in ("{adobe:ns:meta/}xmpmeta", f"{{{NS_RDF}}}RDF"):
                return ET.tostring(child, encoding="utf-8")
    return None


def decode_first_frame(data: bytes) -> tuple[str, Image.Image]:
    """(format, first frame as RGB/RGBA) of an encoded raster or motion asset.

    Raises ValueError for SVG (a vector: nothing decoded here renders it) and for data that
    is not one of our formats or does not decode.
    """
    fmt = _require_format(data)
    if fmt == "svg":
        raise ValueError("SVG is a vector format: render it to get pixels")
    try:
        if fmt == "heic":
            import pillow_heif

            image = pillow_heif.open_heif(io.BytesIO(data)).to_pillow()
        elif fmt == "mp4":
            import av

            with av.open(io.BytesIO(data), mode="r") as container:
                frame = next(container.decode(video=0), None)
                if frame is None:
                    raise ValueError("the MP4 file has no decodable video frame")
                image = frame.to_image()
        else:
            with Image.open(io.BytesIO(data)) as opened:
                opened.load()  # the first frame (GIF) and the whole image (others)
                image = opened.copy()
        return fmt, _normalise(image)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"cannot decode this {fmt} file: {exc}") from exc
