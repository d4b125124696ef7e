"""What the text and logo detectors share: the image check, box geometry and masked normalised
cross-correlation.

Pure functions on numpy arrays; no I/O. Images are `uint8` arrays of shape (H, W, 3) in sRGB.
Boxes are (x0, y0, x1, y1) in the input image's pixels, x1 and y1 exclusive (as in PIL's crop).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

Box = tuple[int, int, int, int]


def as_rgb(image: np.ndarray, what: str = "image") -> np.ndarray:
    """The RGB planes of a uint8 (H, W, 3|4) array; ValueError naming `what` otherwise."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        raise ValueError(
            f"{what} must be a uint8 array of shape (H, W, 3) or (H, W, 4), "
            f"got {array.dtype} {array.shape}"
        )
    return array[..., :3]


def box_overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / max(smaller, 1)


def masked_ncc(
    image: np.ndarray, template: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised cross-correlation of a weighted template at every position inside an image.

    image (C, H, W), template (C, h, w), weights (h, w) >= 0: only weighted pixels count, so a
    logo's transparent surroundings do not. Each channel is centred on its own mean and the
    channels are normalised jointly. Returns, per position (H - h + 1, W - w + 1): the NCC
    (0 where the image is flat), the image's weighted mean per channel (C, ...) and the gain
    that best maps the template's variation onto the image's.
    """
    offset = image.mean(axis=(1, 2), keepdims=True)  # keeps the FFT sums precise
    image = image - offset
    total = weights.sum()
    t_centred = template - (template * weights).sum(axis=(1, 2), keepdims=True) / total
    t_var = max(float((weights * t_centred**2).sum()), 1e-9)
    flip = (slice(None), slice(None, None, -1), slice(None, None, -1))
    cov = signal.fftconvolve(image, (weights * t_centred)[flip], mode="valid", axes=(1, 2))
    cov = cov.sum(axis=0)
    w_flip = weights[::-1, ::-1][None]
    sums = signal.fftconvolve(image, w_flip, mode="valid", axes=(1, 2))
    squares = signal.fftconvolve((image**2).sum(axis=0, keepdims=True), w_flip, mode="valid")
    i_var = squares[0] - (sums**2).sum(axis=0) / total
    ncc = cov / np.sqrt(np.maximum(i_var, 1e-9) * t_var)
    ncc[i_var < total * image.shape[0]] = 0.0  # under one level of spread: nothing to match
    return np.clip(ncc, -1.0, 1.0), sums / total + offset, cov / t_var
