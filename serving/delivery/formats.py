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

The SVG is a real vectorisation: the image is quantised to at most `max_colours` colours, the
outline of each colour's regions is traced on the pixel grid into polygons (collinear runs
merged, holes by `fill-rule="evenodd"`), and the most frequent colour becomes the backdrop. It
renders exactly as the quantised raster at its own size and scales without blur, but the
outlines are pixel staircases: no curve fitting.
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

NS_SVG = "http://www.w3.org/2000/svg"
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
    is vectorise()'s default.
    """
    _check_format(fmt, STILL_FORMATS, "still")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be within 1..100, got {quality}")
    if fmt == "svg":
        return _svg_document(image, max_colours=16, xmp=xmp).encode("utf-8")
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
# SVG vectorisation
# --------------------------------------------------------------------------------------------


def quantise_colours(
    image: Image.Image, *, max_colours: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The image reduced to at most `max_colours` colours: (labels (H, W) int, -1 where the
    pixel is transparent; palette (K, 3) uint8, most frequent colour first).

    An image with no more colours than that keeps them exactly; otherwise k-means (k-means++
    start, fixed `seed`) on a sample of up to 20 000 pixels picks them.
    """
    if not 1 <= max_colours <= 256:
        raise ValueError(f"max_colours must be within 1..256, got {max_colours}")
    image = _normalise(image)
    array = np.asarray(image, dtype=np.uint8)
    rgb = array[:, :, :3].reshape(-1, 3)
    opaque = array[:, :, 3].reshape(-1) >= 128 if image.mode == "RGBA" else np.ones(len(rgb), bool)
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
        assigned = _nearest(pixels.astype(np.float32), centres)
        palette = np.clip(np.round(centres), 0, 255)
    counts = np.bincount(assigned, minlength=len(palette))
    order = [i for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    relabel = np.full(len(palette), -1, dtype=np.int64)
    relabel[order] = np.arange(len(order))
    labels[opaque] = relabel[assigned]
    return labels.reshape(array.shape[:2]), palette[order].astype(np.uint8)


def _nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    out = np.empty(len(points), dtype=np.int64)
    norms = (centres**2).sum(axis=1)
    for start in range(0, len(points), 1 << 16):
        chunk = points[start : start + (1 << 16)]
        out[start : start + len(chunk)] = np.argmin(norms - 2 * chunk @ centres.T, axis=1)
    return out


def _kmeans(points: np.ndarray, k: int, *, seed: int, iterations: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sample = points[rng.choice(len(points), min(len(points), 20_000), replace=False)]
    centres = [sample[rng.integers(len(sample))]]
    nearest_sq = ((sample - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):  # k-means++: far from the centres so far, proportionally to d^2
        total = nearest_sq.sum()
        if total == 0:
            break
        weights = nearest_sq.astype(np.float64)
        centres.append(sample[rng.choice(len(sample), p=weights / weights.sum())])
        nearest_sq = np.minimum(nearest_sq, ((sample - centres[-1]) ** 2).sum(axis=1))
    result = np.array(centres, dtype=np.float32)
    for _ in range(iterations):
        assigned = _nearest(sample, result)
        moved = result.copy()
        for index in range(len(result)):
            members = sample[assigned == index]
            if len(members):
                moved[index] = members.mean(axis=0)
        if np.allclose(moved, result, atol=0.1):
            break
        result = moved
    return result


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
    return _svg_document(image, max_colours=max_colours, xmp=None)


def _svg_document(image: Image.Image, *, max_colours: int, xmp: bytes | None) -> str:
    labels, palette = quantise_colours(image, max_colours=max_colours)
    height, width = labels.shape
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="{NS_SVG}" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
    ]
    if xmp is not None:
        lines.append(f"<metadata>{_xmp_element(xmp)}</metadata>")
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
            if child.tag in ("{adobe:ns:meta/}xmpmeta", f"{{{_NS_RDF}}}RDF"):
                return ET.tostring(child, encoding="utf-8")
    return None


_NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"


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
