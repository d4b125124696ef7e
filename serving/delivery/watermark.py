"""The invisible watermark of delivered assets: `embed_watermark` and `read_watermark`.

It is the second of the two AI-content marks (the first is the XMP manifest,
`serving.delivery.manifest`): metadata is easy to strip, pixels survive re-encoding, crops
and resizes. Its 64-bit payload is 48 bits of sha256(asset id) and a CRC-16 of them, so a
reader can tell "marked with asset X" from "no mark" without access to the asset store.

Two layers carry the same payload in the luminance Y = 0.299 R + 0.587 G + 0.114 B
(`brandforge.colour.LUMA_601`), both blind (no original needed), numpy/scipy only:

- The grid mark (`serving.delivery.watermark_grid`): QIM in eight DCT coefficients of each
  8x8 JPEG block, laid out for the image's size. Exact after JPEG 75 from 64x64 px up, and
  the only layer of files delivered before the tiles came; lost by any crop or resize.
- The tiles (`serving.delivery.watermark_sync`): one 64x64 px tile of 1024 +-1 chips of 2x2
  px, 16 per payload bit, repeated over the image, each chip's sign keyed and flipped by its
  bit (spread spectrum). The embedder cancels, per tile and bit, what the image itself
  already correlates with the chips (improved spread spectrum), so content does not drown
  the mark. The reader finds the tiles' period (the scale) from the autocorrelation, or by a
  bounded scan of periods, and their offset by correlating every bit at every offset of the
  folded tile, so crops at any offset and resizes of 0.5x-2x are read back.

The change goes to R, G and B alike, which changes Y only (Cb/Cr stay). A block whose marked
Y would leave [0, 255] is shifted in brightness by as little as needed, and where one channel
of a saturated colour clips, the shortfall goes to the other channels.

Reading tries, in order: the grid mark where the image starts; the tiles there; the tiles at
every offset of the likely periods. A payload counts as found only when its CRC-16 checks
and the correlations stand far above chance: `WATERMARK_MIN_SIGNAL` standard deviations
where nothing is searched, `WATERMARK_MIN_SEARCHED_SIGNAL` where the best of thousands of
positions is taken (unmarked images score up to about 8 there). The tiles' reader may flip
up to two of the least certain bits to make the CRC check (`WATERMARK_CORRECTABLE`).

Measured (`python bench/watermark.py`, README "Formats and provenance"): PSNR about 40 dB;
the right payload after JPEG 50-90, crops of 5-10 % off every side and resizes of 0.5-2x at
256, 512 and 1024 px, with the rates in the README's table. Limits: rotation is not searched;
images under `WATERMARK_MIN_SIDE` (64) px a side are left unmarked with a warning; the tiles
need a few repetitions, so a crop or resize of a small, heavily textured image (128 px of
noise) loses them; strong recompression (JPEG below ~50) erodes both layers.
"""

from __future__ import annotations

import binascii
import hashlib
import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from serving.delivery.watermark_sync import Alignment

# numpy, scipy and Pillow are imported where the pixels are handled: reading a manifest, or
# importing this module for its constants, should not pay for them.

log = logging.getLogger(__name__)

WATERMARK_BITS = 64  # 48 bits of sha256(asset id) + CRC-16/CCITT of those 6 bytes
WATERMARK_AMPLITUDE = 1.4  # luminance change of a chip, 0..255 scale (before host rejection)
WATERMARK_HOST_REJECTION = 1.0  # share of the image's own correlation with the chips removed
# Below 64 x 64 pixels a bit of the grid mark gets under 8 votes, too few to survive WebP 90
# (32-56 px broke), and the tiles are not whole.
WATERMARK_MIN_SIDE = 64
# How far above chance the votes must be, besides the CRC, in standard deviations: where the
# image starts (unmarked images score about 0 +- 1), and at the best of the searched tile
# positions (unmarked images scored up to 7.2 in the bench, marked ones tens to hundreds).
WATERMARK_MIN_SIGNAL = 6.0
WATERMARK_MIN_SEARCHED_SIGNAL = 10.0
# The tiles' reader may flip up to two of this many least certain bits to make the CRC check.
WATERMARK_CORRECTABLE = 6
_BLOCK = 8


@dataclass(frozen=True)
class WatermarkReading:
    """What `read_watermark` found in an image."""

    found: bool
    payload: bytes | None  # the 8 payload bytes when found
    bit_agreement: float  # share of the votes (coefficients or chips) agreeing with the bits
    signal: float  # votes above chance, in standard deviations (see WATERMARK_MIN_SIGNAL)
    reason: str  # why nothing was found, or what was checked when found
    # the 64 bits as read before any correction, found or not (None when too small): how
    # close a damaged mark came, for benchmarks
    raw_bits: bytes | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the payload as hex, the numbers rounded."""
        return {
            "found": self.found,
            "payload": None if self.payload is None else self.payload.hex(),
            "bit_agreement": round(self.bit_agreement, 4),
            "signal": round(self.signal, 2),
            "reason": self.reason,
        }


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF) of `data`."""
    return binascii.crc_hqx(data, 0xFFFF)


def watermark_payload(asset_id: str) -> bytes:
    """The 8 bytes the watermark of asset `asset_id` carries: 48 bits of sha256(asset id)
    followed by their CRC-16 (big-endian), which lets a reader tell a mark from noise."""
    digest = hashlib.sha256(asset_id.encode("utf-8")).digest()[:6]
    return digest + crc16(digest).to_bytes(2, "big")


def _payload_checks(payload: bytes) -> bool:
    return len(payload) == WATERMARK_BITS // 8 and crc16(payload[:6]) == int.from_bytes(
        payload[6:], "big"
    )


def _rgb_and_alpha(image: Image.Image) -> tuple[np.ndarray, Image.Image | None]:
    """The image as float RGB (H, W, 3), and its alpha band when it has one."""
    import numpy as np

    alpha = None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        alpha = image.getchannel("A")
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    return rgb, alpha


def _luma(rgb: np.ndarray) -> np.ndarray:
    from brandforge.colour import LUMA_601

    return rgb @ LUMA_601


def _too_small(image: Image.Image) -> bool:
    return min(image.size) < WATERMARK_MIN_SIDE


def embed_watermark(image: Image.Image, payload: bytes, *, strength: float = 1.0) -> Image.Image:
    """A copy of `image` (RGB, or RGBA keeping its alpha) with `payload` watermarked invisibly.

    `payload` is what `watermark_payload(asset_id)` gives. `strength` in (0, 1] scales the
    mark's amplitude: below 1 it is fainter and less robust; readers need no knowledge of it.
    Images under `WATERMARK_MIN_SIDE` pixels on a side are returned unchanged (converted),
    with a warning.
    """
    import numpy as np

    if not _payload_checks(payload):
        raise ValueError(
            f"watermark payload {payload.hex()} is not {WATERMARK_BITS // 8} bytes ending in the "
            "CRC-16 of the first 6: build it with watermark_payload(asset_id)"
        )
    if not 0 < strength <= 1:
        raise ValueError(f"watermark strength must be in (0, 1], got {strength}")
    rgb, alpha = _rgb_and_alpha(image)
    if _too_small(image):
        log.warning(
            "image of %dx%d is too small to watermark (minimum %d pixels a side); left unmarked",
            image.width,
            image.height,
            WATERMARK_MIN_SIDE,
        )
        return _with_alpha(rgb, alpha)
    from serving.delivery.watermark_grid import grid_mark

    luma = _luma(rgb)
    message = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))  # MSB first
    change = _mark(luma, message, WATERMARK_AMPLITUDE * strength)
    # The grid mark goes last: its lattice must not be moved by the tiles.
    change += grid_mark(luma + change, message, strength)
    change += _headroom_shift(luma, change)
    return _with_alpha(_add_luma(rgb, change), alpha)


def _mark(luma: np.ndarray, message: np.ndarray, amplitude: float) -> np.ndarray:
    """The luminance change that carries `message`: the tiled chips, each +-`amplitude`, with
    the sign of its bit, less what the image itself already correlates with them per tile."""
    import numpy as np

    from serving.delivery.watermark_sync import chip_grid, whiten

    bits, signs, tiles = chip_grid(*luma.shape)
    groups = (tiles * WATERMARK_BITS + bits).ravel()
    size = int(groups.max()) + 1
    host = np.bincount(groups, weights=(whiten(luma) * signs).ravel(), minlength=size)
    response = np.bincount(groups, weights=(whiten(signs) * signs).ravel(), minlength=size)
    # Improved spread spectrum: cancel the image's own correlation with each bit's chips in
    # each tile, so that small images and unlucky content do not drown the mark.
    correction = np.clip(
        -WATERMARK_HOST_REJECTION * host / np.maximum(response, 1e-6), -2 * amplitude, 2 * amplitude
    )
    sign = 1.0 - 2.0 * message[bits]
    gain = amplitude * sign + correction[groups].reshape(luma.shape)
    return gain * signs


def _headroom_shift(luma: np.ndarray, change: np.ndarray) -> np.ndarray:
    """Per 8x8 block, the brightness shift closest to 0 that keeps the marked luminance of
    every pixel within [0, 255], as a full-size array.

    Without it a white or black area clips half of the mark away. The reader removes the local
    mean first, so a shift costs the mark nothing. Where no shift fits (black and white pixels
    in one block) the midpoint is used and the rest clips.
    """
    import numpy as np

    h, w = luma.shape
    by, bx = -(-h // _BLOCK), -(-w // _BLOCK)
    pad = ((0, by * _BLOCK - h), (0, bx * _BLOCK - w))
    marked = np.pad(luma + change, pad, mode="edge").reshape(by, _BLOCK, bx, _BLOCK)
    k_min = (-marked).max(axis=(1, 3))  # shift >= this keeps every pixel >= 0
    k_max = (255.0 - marked).min(axis=(1, 3))  # shift <= this keeps every pixel <= 255
    shift = np.where(k_min <= k_max, np.clip(0.0, k_min, k_max), 0.5 * (k_min + k_max))
    return np.kron(shift, np.ones((_BLOCK, _BLOCK)))[:h, :w]


def _add_luma(rgb: np.ndarray, luma_change: np.ndarray) -> np.ndarray:
    """`rgb` with its luminance changed by `luma_change` and each channel kept in [0, 255].

    The change goes to R, G and B alike, which keeps Cb and Cr. Where a channel clips (a
    saturated red has no room in R upwards, none in G and B downwards) the shortfall goes to
    the channels that still have room, in proportion to their luminance weights: a slight
    colour change in saturated pixels instead of a lost watermark there.
    """
    import numpy as np

    from brandforge.colour import LUMA_601 as weights

    target = rgb + luma_change[:, :, None]
    out = np.clip(target, 0.0, 255.0)
    for _ in range(2):  # the second pass settles pixels where the first one clipped again
        shortfall = luma_change - (out - rgb) @ weights
        up = shortfall > 0
        room = np.where(up[:, :, None], out < 255.0, out > 0.0)
        share = (room * weights).sum(axis=2)
        step = np.where(share > 0, shortfall / np.maximum(share, 1e-9), 0.0)
        out = np.clip(out + room * step[:, :, None], 0.0, 255.0)
    return out


def _with_alpha(rgb: np.ndarray, alpha: Image.Image | None) -> Image.Image:
    import numpy as np
    from PIL import Image

    out = Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8), "RGB")
    if alpha is not None:
        out.putalpha(alpha)
    return out


def read_watermark(image: Image.Image) -> WatermarkReading:
    """Decode the watermark of `image` blindly (no original needed), wherever a crop or a
    resize has put its tiles; `found` only when the payload's CRC-16 checks and the bit
    correlations stand well above chance."""
    import numpy as np

    from serving.delivery.watermark_grid import read_grid
    from serving.delivery.watermark_sync import (
        TILE_PX,
        align,
        centre_window,
        fold,
        period_candidates,
        refine,
        scan,
        whiten,
    )

    if _too_small(image):
        return WatermarkReading(
            found=False,
            payload=None,
            bit_agreement=0.0,
            signal=0.0,
            reason=f"image too small: {image.width}x{image.height}, the watermark needs at "
            f"least {WATERMARK_MIN_SIDE}x{WATERMARK_MIN_SIDE} pixels",
        )
    rgb, _ = _rgb_and_alpha(image)
    luma = _luma(rgb)
    # An image as delivered (or re-encoded only) has its grid and tiles at the origin: reading
    # there needs no search, so a lower threshold holds chance out.
    grid = read_grid(luma)
    raw = np.packbits(grid.bits).tobytes()
    best = _decide(raw, raw, grid.signal, grid.agreement, WATERMARK_MIN_SIGNAL)
    if best.found:
        return best
    residual = whiten(centre_window(luma))
    nominal = (float(TILE_PX), float(TILE_PX))
    reading = _decide_tiles(align(fold(residual, nominal), at_origin=True), WATERMARK_MIN_SIGNAL)
    if reading.found:
        return reading
    # Cropped or resized: search the tiles' offset at each likely period, then near the best.
    searched = []
    for period in [nominal, *period_candidates(residual)]:
        alignment = align(fold(residual, period))
        reading = _decide_tiles(alignment, WATERMARK_MIN_SEARCHED_SIGNAL)
        if reading.found:
            return reading
        searched.append((alignment.signal, period))
    for alignment in (refine(residual, max(searched)[1]), scan(residual)):
        reading = _decide_tiles(alignment, WATERMARK_MIN_SEARCHED_SIGNAL)
        if reading.found:
            return reading
        best = max(best, reading, key=lambda r: r.signal)
    return best


def _decide_tiles(alignment: Alignment, threshold: float) -> WatermarkReading:
    """What the bit correlations of one alignment of the tiles say."""
    import numpy as np

    z = alignment.correlations
    raw = np.packbits((z < 0).astype(np.uint8)).tobytes()
    return _decide(_corrected(z), raw, alignment.signal, alignment.agreement, threshold)


def _corrected(correlations: np.ndarray) -> bytes:
    """The payload the bit correlations read, with up to two of the least certain bits
    flipped where that makes the CRC-16 check (and only then): a weak mark (a small image
    halved) often has a bit or two wrong, and always among the weakest."""
    import numpy as np

    bits = (correlations < 0).astype(np.uint8)
    weakest = [int(i) for i in np.argsort(np.abs(correlations))[:WATERMARK_CORRECTABLE]]
    flips = [(), *((i,) for i in weakest), *itertools.combinations(weakest, 2)]
    for flip in flips:
        trial = bits.copy()
        trial[list(flip)] ^= 1
        payload = np.packbits(trial).tobytes()
        if _payload_checks(payload):
            return payload
    return np.packbits(bits).tobytes()


def _decide(
    payload: bytes, raw: bytes, signal: float, agreement: float, threshold: float
) -> WatermarkReading:
    """A reading of `payload` when its CRC-16 checks and `signal` (standard deviations above
    chance) reaches `threshold`; otherwise no mark, and why not."""
    if not _payload_checks(payload):
        reason = "no watermark: the decoded bits fail the CRC-16 check"
    elif signal < threshold:
        reason = (
            f"no watermark: the CRC-16 checks but the votes are only {signal:.1f} "
            f"standard deviations above chance (at least {threshold:g} needed)"
        )
    else:
        return WatermarkReading(
            found=True,
            payload=payload,
            bit_agreement=agreement,
            signal=signal,
            reason="CRC-16 checks and the votes are far above chance",
            raw_bits=raw,
        )
    return WatermarkReading(
        found=False,
        payload=None,
        bit_agreement=agreement,
        signal=signal,
        reason=reason,
        raw_bits=raw,
    )
