"""The grid mark: the payload in the DCT of the 8x8 JPEG blocks, read where the image starts.

The first of the watermark's two layers (`serving.delivery.watermark`), and the only one of
marks delivered before the tiled layer (`serving.delivery.watermark_sync`) came: it reads
exactly after JPEG 75 down to 64x64 images, but only where the 8x8 grid and the image size
are those of the delivered file (no crop, no resize).

Dither modulation QIM, blind detection:

- In each whole 8x8 block of the luminance, eight low-to-mid frequency DCT-II coefficients
  (orthonormal) carry one payload bit each. Each such coefficient c is moved to the nearest
  point of the lattice `GRID_STEP * k + dither + bit * GRID_STEP / 2`, with a pseudo-random
  dither per coefficient from a fixed key (`GRID_KEY`). A keyed permutation, drawn for the
  image's block count, spreads each of the 64 bits over an equal share of all coefficients.
- Decoding: each coefficient votes cos(2 pi (c - dither) / step) (+1: bit 0, -1: bit 1), the
  votes of a bit are summed, and the sign decides it.
- Why it survives JPEG 75: the libjpeg quality-75 luminance quantisation steps of the chosen
  coefficients are 5-7, so the JPEG error of each is at most 3.5, under a quarter step (4.5).
  Its mean squared change is 8 * step**2 / 12 / 64 = 3.4 per pixel (43 dB alone).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

GRID_KEY = b"brandforge/watermark/v1"  # seeds dither and bit layout; changing it unmarks all
GRID_STEP = 18.0  # QIM lattice step, in orthonormal DCT units of Y (0..255 scale)
# (row, column) = (vertical, horizontal) frequency of the marked DCT coefficients; libjpeg's
# quality-75 luminance steps for them are 6 6 6 5 7 7 7 7, all under GRID_STEP / 2.
GRID_COEFFICIENTS = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1), (3, 0))
BITS = 64
BLOCK = 8


def _layout(blocks_y: int, blocks_x: int) -> tuple[np.ndarray, np.ndarray]:
    """For each marked coefficient (blocks_y, blocks_x, len(GRID_COEFFICIENTS)): the bit it
    carries and its dither in [0, 1) steps, rebuilt by the reader from the image size alone."""
    n = blocks_y * blocks_x * len(GRID_COEFFICIENTS)
    seed = int.from_bytes(hashlib.sha256(GRID_KEY).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    # Equal shares: slot i carries bit (perm[i] % 64), so every bit gets n // 64 or one more.
    bits = (rng.permutation(n) % BITS).reshape(blocks_y, blocks_x, -1)
    dither = rng.random(n).reshape(blocks_y, blocks_x, -1)
    return bits, dither


def _block_dct(luma: np.ndarray) -> np.ndarray:
    """(blocks_y, blocks_x, 8, 8) orthonormal DCT-II of the whole 8x8 blocks of `luma`."""
    from scipy.fft import dctn

    by, bx = luma.shape[0] // BLOCK, luma.shape[1] // BLOCK
    blocks = luma[: by * BLOCK, : bx * BLOCK].reshape(by, BLOCK, bx, BLOCK)
    return dctn(blocks.transpose(0, 2, 1, 3), axes=(2, 3), norm="ortho")


def grid_mark(luma: np.ndarray, message: np.ndarray, strength: float) -> np.ndarray:
    """The luminance change (same shape) that puts the bits of `message` on the QIM lattice;
    `strength` in (0, 1] is how far each coefficient moves towards its lattice point."""
    from scipy.fft import idctn

    coeffs = _block_dct(luma)
    bits_of_slot, dither = _layout(coeffs.shape[0], coeffs.shape[1])
    offset = (dither + 0.5 * message[bits_of_slot]) * GRID_STEP
    rows, cols = zip(*GRID_COEFFICIENTS, strict=True)
    selected = coeffs[:, :, rows, cols]
    target = np.round((selected - offset) / GRID_STEP) * GRID_STEP + offset
    delta = np.zeros_like(coeffs)
    delta[:, :, rows, cols] = strength * (target - selected)
    change = idctn(delta, axes=(2, 3), norm="ortho")  # (blocks_y, blocks_x, 8, 8)
    by, bx = coeffs.shape[:2]
    out = np.zeros_like(luma)
    out[: by * BLOCK, : bx * BLOCK] = change.transpose(0, 2, 1, 3).reshape(by * BLOCK, bx * BLOCK)
    return out


@dataclass(frozen=True)
class GridVotes:
    """The bits the grid mark reads and how strongly."""

    bits: np.ndarray  # (BITS,) 0/1
    agreement: float  # share of the coefficient votes agreeing with the decoded bits
    signal: float  # votes above chance, in standard deviations (~0 +- 1 when unmarked)


def read_grid(luma: np.ndarray) -> GridVotes:
    """Decode the grid mark from the luminance of an image as delivered."""
    coeffs = _block_dct(luma)
    bits_of_slot, dither = _layout(coeffs.shape[0], coeffs.shape[1])
    rows, cols = zip(*GRID_COEFFICIENTS, strict=True)
    phase = coeffs[:, :, rows, cols] / GRID_STEP - dither
    votes = np.cos(2 * np.pi * phase).ravel()  # +1: on the bit-0 lattice, -1: on the bit-1 one
    slots = bits_of_slot.ravel()
    sums = np.bincount(slots, weights=votes, minlength=BITS)
    counts = np.bincount(slots, minlength=BITS)
    bits = (sums < 0).astype(np.uint8)
    agreement = float(np.mean((votes < 0) == bits[slots].astype(bool)))
    # Without a mark a vote is cos(uniform phase): mean 0, variance 1/2, so |sum| of n votes is
    # half-normal with mean sqrt(n / pi) and variance (n / 2)(1 - 2 / pi).
    total = float(np.abs(sums).sum())
    chance_mean = float(np.sqrt(counts / np.pi).sum())
    chance_sd = float(np.sqrt((counts / 2 * (1 - 2 / np.pi)).sum()))
    return GridVotes(bits=bits, agreement=agreement, signal=(total - chance_mean) / chance_sd)
