"""Logo presence in an image: where a brand's logo appears, at what size, and in which placement.

Pure functions on numpy arrays; no I/O. Images are `uint8` arrays of shape (H, W, 3) in sRGB; the
logo may carry an alpha channel (H, W, 4). Boxes are (x0, y0, x1, y1) in the input image's
pixels, x1 and y1 exclusive (as in PIL's crop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image
from scipy import ndimage, signal

from brandforge.colour import LUMA_709
from evaluation.matching import Box, as_rgb, box_overlap, masked_ncc

# The brand kit's placement values (brandforge.brandkit.Placement); a test keeps the two equal.
Placement = Literal["top-left", "top-right", "bottom-left", "bottom-right", "center"]


@dataclass(frozen=True)
class LogoMatch:
    found: bool
    score: float  # masked NCC, discounted for a missing outline or off colours; -1 if no fit
    box: Box | None  # input image pixels, None when not found
    scale: float | None  # logo width / image width at the best match, None when not found


# Search. Calibrated on a circle-and-letter mark, a wordmark and a one-colour star pasted on
# busy photo-like backgrounds (some JPEG-compressed) and on the same backgrounds without them.
_COARSE_LOGO_PX = 20  # the logo's shorter side in the coarse search, about
_COARSE_WIDTHS = (256, 384, 512, 768, 1024)  # image widths of the coarse search
_SHARE_STEP = 1.12  # neighbouring coarse logo widths differ by at most this factor
_COARSE_PEAKS = 48  # peaks per size whose outline is checked in the coarse search ...
_CANDIDATES = 8  # ... of which this many are refined in colour at a finer resolution,
_CANDIDATE_GAP = 0.3  # ... unless they score this much below the best
_FINE_LOGO_PX = 160  # the refinement sees the logo at most this wide ...
_FINAL_WIDTH = 1024  # ... and the final position is found with the image at most this wide
_FINE_SHARES = (0.88, 0.94, 1.0, 1.06, 1.12)  # first sizes tried around a coarse peak's
_WHOLE_MARGIN = 0.1  # a larger match around the best wins if it scores at most this much less
# Score.
_FLAT_LOGO_STD = 6.0  # levels: a logo this uniform is matched by its silhouette and colour
_INK_TOLERANCE = 40.0  # RGB distance at which a pixel is e^-1 alike a logo colour
_INK_PRESENCE = 0.6  # mean likeness inside the shape below which a one-colour match weakens
_MIN_OUTLINE = 0.75  # correlation of logo-coloured pixels with the logo's shape for a full score
_OUTLINE_SOFTNESS = 1.0  # pixels of blur on that shape: JPEG smears colour across edges
_COLOUR_TOLERANCE = 60.0  # RGB distance of mean colours at which a match's score falls by e^-1


def _resized(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """RGB(A) uint8 array resized with Lanczos (Pillow premultiplies alpha for RGBA)."""
    if array.shape[1] == width and array.shape[0] == height:
        return array
    return np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.LANCZOS))


class _Scaled:
    """Downscaled copies of the image by width, area-averaged (fast, and no ringing)."""

    def __init__(self, rgb: np.ndarray) -> None:
        self.rgb = rgb
        self._copies: dict[int, np.ndarray] = {rgb.shape[1]: rgb}

    def at(self, width: int) -> np.ndarray:
        if width not in self._copies:
            height = max(1, round(self.rgb.shape[0] * width / self.rgb.shape[1]))
            image = Image.fromarray(self.rgb).resize((width, height), Image.Resampling.BOX)
            self._copies[width] = np.asarray(image)
        return self._copies[width]


def _channels(rgb: np.ndarray, colour: bool) -> np.ndarray:
    """(C, H, W) float planes: RGB, or luma."""
    return rgb.astype(np.float64).transpose(2, 0, 1) if colour else (rgb @ LUMA_709)[None]


def _palette(pixels: np.ndarray, k: int = 4) -> np.ndarray:
    """Up to k main colours of a logo's opaque pixels (k-means), each at least 3 % of them."""
    sample = pixels[:: max(1, len(pixels) // 4000)].astype(np.float64)
    order = np.argsort(sample @ LUMA_709)
    centres = sample[order[np.linspace(0, len(order) - 1, k).astype(int)]]
    for _ in range(10):
        nearest = np.argmin(((sample[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
        centres = np.array(
            [
                sample[nearest == j].mean(axis=0) if (nearest == j).any() else centres[j]
                for j in range(k)
            ]
        )
    shares = np.bincount(nearest, minlength=k) / len(sample)
    return centres[shares >= 0.03]


@dataclass
class _ImagePlanes:
    values: np.ndarray  # (C, H, W): what the masked template is matched against
    likeness: np.ndarray | None  # (1, H, W) 0..255: how much each pixel looks like the logo


class _Template:
    """The logo at any width, the image planes to match it against, and the match score."""

    def __init__(self, logo: np.ndarray) -> None:
        rgba = logo if logo.shape[2] == 4 else np.dstack([logo, np.full(logo.shape[:2], 255)])
        self.rgba = rgba.astype(np.uint8)
        alpha = self.rgba[..., 3] / 255.0
        if alpha.sum() < 4:
            raise ValueError("logo is fully transparent: nothing to look for")
        rgb = self.rgba[..., :3].astype(np.float64)
        ink = (rgb * alpha[..., None]).sum(axis=(0, 1)) / alpha.sum()
        spread = np.sqrt((alpha[..., None] * (rgb - ink) ** 2).sum(axis=(0, 1)) / alpha.sum())
        grey_spread = math.sqrt(float((LUMA_709**2) @ spread**2))
        # a one-colour logo has no pattern inside its mask, only its outline and its colour
        self.silhouette = float(spread.max()) < _FLAT_LOGO_STD
        # with transparent parts, the outline can be checked too: logo colours inside it, other
        # colours in the gaps and around it
        self.shaped = float((alpha < 0.1).mean()) >= 0.05
        if self.silhouette and not self.shaped:
            raise ValueError("logo is one flat colour with no transparency: nothing to match")
        self.palette = ink[None] if self.silhouette else _palette(rgb[alpha > 0.9])
        # the coarse search works on grey unless the logo's colours differ only in hue
        self.coarse_colour = not self.silhouette and grey_spread < _FLAT_LOGO_STD
        self.aspect = self.rgba.shape[0] / self.rgba.shape[1]

    def height_for(self, width: int) -> int:
        return max(1, round(width * self.aspect))

    def likeness(self, rgb: np.ndarray) -> np.ndarray:
        """(1, H, W) 0..255: how much each pixel looks like one of the logo's colours."""
        pixels = rgb.astype(np.float64)
        distance = np.min([np.linalg.norm(pixels - c, axis=-1) for c in self.palette], axis=0)
        return 255.0 * np.exp(-((distance / _INK_TOLERANCE) ** 2))[None]

    def image_planes(self, rgb: np.ndarray, colour: bool) -> _ImagePlanes:
        if self.silhouette:
            return _ImagePlanes(self.likeness(rgb), None)
        return _ImagePlanes(_channels(rgb, colour), self.likeness(rgb) if self.shaped else None)

    def shape(self, width: int) -> np.ndarray:
        """The logo's outline at this width (alpha, 0..1), softened by a pixel: JPEG smears
        colour across edges, and the likeness of the logo's colours with it."""
        alpha = _resized(self.rgba, width, self.height_for(width))[..., 3] / 255.0
        return ndimage.gaussian_filter(alpha, _OUTLINE_SOFTNESS, mode="constant")

    def score(self, planes: _ImagePlanes, width: int, colour: bool, *, strict: bool) -> np.ndarray:
        """Match score of the logo at this width at every position of the image planes.

        The masked NCC; when strict, discounted where the logo's outline is not there (its
        colours inside, others around it) and where the colours or their contrast differ from
        the logo's: a logo masked to its strokes is a simple pattern that correlates with much
        of a busy image, and a composited logo keeps its own colours.
        """
        rgba = _resized(self.rgba, width, self.height_for(width)).astype(np.float64)
        alpha = rgba[..., 3] / 255.0
        if self.silhouette:
            ncc, _, _ = masked_ncc(planes.values, alpha[None] * 255.0, np.ones_like(alpha))
            # and the logo's colour must really fill its shape
            inside = signal.fftconvolve(planes.values[0], alpha[::-1, ::-1], mode="valid")
            presence = inside / (255.0 * alpha.sum())
            return ncc * np.clip(presence / _INK_PRESENCE, 0.0, 1.0)
        template = rgba[..., :3].transpose(2, 0, 1) if colour else (rgba[..., :3] @ LUMA_709)[None]
        # edge pixels are part background, which no template knows: count (nearly) only the
        # pixels the logo covers fully; a steep power keeps some weight for thin strokes
        weights = alpha**8
        ncc, means, gain = masked_ncc(planes.values, template, weights)
        if planes.likeness is not None and strict:
            shape = self.shape(width)[None] * 255.0
            outline, _, _ = masked_ncc(planes.likeness, shape, np.ones_like(alpha))
            ncc = ncc * np.clip(outline / _MIN_OUTLINE, 0.0, 1.0)
        if strict:
            t_means = (template * weights).sum(axis=(1, 2)) / weights.sum()
            shift = np.sqrt(((means - t_means[:, None, None]) ** 2).sum(axis=0))
            stretch = np.log(np.maximum(gain, 1e-3)) / np.log(2.0)
            ncc = ncc * np.exp(-((shift / _COLOUR_TOLERANCE) ** 2) - stretch**2)
        return ncc


def _share_grid(width_shares: Sequence[float]) -> list[float]:
    """The given logo widths plus enough in between that neighbours differ by <= _SHARE_STEP."""
    given = sorted(set(float(s) for s in width_shares))
    grid = [given[0]]
    for share in given[1:]:
        steps = math.ceil(math.log(share / grid[-1]) / math.log(_SHARE_STEP))
        start = grid[-1]
        grid.extend(start * (share / start) ** (k / steps) for k in range(1, steps + 1))
    return grid


def _peaks(ncc: np.ndarray, size: int, count: int) -> list[tuple[float, int, int]]:
    """The `count` highest local maxima of a score map, above zero, as (score, x, y)."""
    local = (ndimage.maximum_filter(ncc, size=max(size, 3), mode="nearest") == ncc) & (ncc > 0)
    ys, xs = np.nonzero(local)
    values = ncc[ys, xs]
    top = (
        np.argpartition(values, -count)[-count:] if len(values) > count else np.arange(len(values))
    )
    top = top[np.argsort(values[top])[::-1]]
    return [(float(values[i]), int(xs[i]), int(ys[i])) for i in top]


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


_Match = tuple[float, int, int, int, int]  # score, x0, y0, width, height


def _refine(
    image: np.ndarray,
    template: _Template,
    centre: tuple[float, float],
    widths: Sequence[int],
    margin: int,
    colour: bool,
) -> _Match | None:
    """Best match for logo widths tried around a centre (within margin pixels of it)."""
    height, width = image.shape[:2]
    sizes = [(tw, template.height_for(tw)) for tw in sorted(set(widths))]
    # one crop, and one set of image planes, for every width
    big_w, big_h = max(w for w, _ in sizes), max(h for _, h in sizes)
    cx0 = max(0, int(centre[0] - big_w / 2) - margin)
    cy0 = max(0, int(centre[1] - big_h / 2) - margin)
    cx1 = min(width, int(centre[0] + big_w / 2) + margin + 1)
    cy1 = min(height, int(centre[1] + big_h / 2) + margin + 1)
    planes = template.image_planes(image[cy0:cy1, cx0:cx1], colour)
    best: _Match | None = None
    for tw, th in sizes:
        x0 = max(0, int(centre[0] - tw / 2) - margin)
        y0 = max(0, int(centre[1] - th / 2) - margin)
        x1 = min(width, int(centre[0] + tw / 2) + margin + 1)
        y1 = min(height, int(centre[1] + th / 2) + margin + 1)
        if x1 - x0 < tw or y1 - y0 < th:
            continue
        window = (slice(None), slice(y0 - cy0, y1 - cy0), slice(x0 - cx0, x1 - cx0))
        likeness = None if planes.likeness is None else planes.likeness[window]
        ncc = template.score(_ImagePlanes(planes.values[window], likeness), tw, colour, strict=True)
        y, x = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
        if best is None or ncc[y, x] > best[0]:
            best = (float(ncc[y, x]), x0 + int(x), y0 + int(y), tw, th)
    return best


def _fit(
    image: np.ndarray,
    template: _Template,
    centre: tuple[float, float],
    width: float,
    limits: tuple[float, float],
    margin: int,
    colour: bool,
    hopeless: float,
) -> _Match | None:
    """Best match near a coarse estimate (centre, width): sizes around it, more in
    the same direction (within `limits`) while the best is at an end of the range, then
    finer steps around the best. Gives up early when the first sizes score below hopeless."""
    tried: dict[int, _Match | None] = {}

    def attempt(widths: Sequence[float]) -> None:
        for v in widths:
            w = max(4, round(min(max(v, limits[0]), limits[1])))
            if w not in tried:
                tried[w] = _refine(image, template, centre, [w], margin, colour)

    attempt([width * f for f in _FINE_SHARES])
    first = [m[0] for m in tried.values() if m is not None]
    if not first or max(first) < hopeless:
        return max((m for m in tried.values() if m is not None), key=lambda m: m[0], default=None)
    for _ in range(4):
        scored = {w: m for w, m in tried.items() if m is not None}
        if not scored:
            return None
        best = max(scored, key=lambda w: scored[w][0])
        if best == max(tried) and best * 1.06 <= limits[1]:
            attempt([best * 1.06])
        elif best == min(tried) and best / 1.06 >= limits[0]:
            attempt([best / 1.06])
        else:
            break
    found = max((m for m in tried.values() if m is not None), key=lambda m: m[0])

    # thin strokes need the size to the pixel, and their score is not smooth in it: 2 % steps
    # across the coarser step either side, once more if the best moved to an end, then 1 %
    def closer(found: _Match, percents: Sequence[int]) -> tuple[_Match, bool]:
        _, x, y, w, h = found
        sizes = [min(max(w * (1 + k / 100), limits[0]), limits[1]) for k in percents]
        widths = sorted({max(4, round(v)) for v in sizes})
        better = _refine(image, template, (x + w / 2, y + h / 2), widths, 2, colour)
        if better is None or better[0] <= found[0]:
            return found, False
        return better, better[3] in (widths[0], widths[-1])

    found, at_end = closer(found, (-6, -4, -2, 0, 2, 4, 6))
    if at_end:
        found, _ = closer(found, (-6, -4, -2, 0, 2, 4, 6))
    found, _ = closer(found, (-1, 0, 1))
    return found


def _prefer_whole(
    results: list[tuple[_Match, float]],
) -> tuple[_Match, float]:
    """The best match, unless a clearly larger one around it scores nearly as well: a part of
    a logo (the end of a wordmark, the middle of a star) can pass for a smaller whole."""

    def box(result: tuple[_Match, float]) -> Box:
        (_, x, y, w, h), px = result
        return (round(x * px), round(y * px), round((x + w) * px), round((y + h) * px))

    best = max(results, key=lambda r: r[0][0])
    larger = [
        r
        for r in results
        if r[0][3] * r[1] > 1.1 * best[0][3] * best[1]
        and r[0][0] >= best[0][0] - _WHOLE_MARGIN
        and box_overlap(box(r), box(best)) > 0.9
    ]
    return max(larger, key=lambda r: r[0][3] * r[1]) if larger else best


# score, box in input pixels, logo width share, width of the coarse image it was found in
_Proposal = tuple[float, tuple[float, float, float, float], float, int]


def _proposals(scaled: _Scaled, template: _Template, shares: Sequence[float]) -> list[_Proposal]:
    """Coarse search: every size, a few peaks each, in grey unless only hue tells the logo
    apart, at a resolution where the logo's shorter side is about _COARSE_LOGO_PX (shrunk
    further, a small or wide logo is a few pixels of two colours, which match anything).
    Returns the best few, boxes in input pixels, with their share and coarse image width."""
    width = scaled.rgb.shape[1]
    coarse_colour = template.coarse_colour
    planes_at: dict[int, _ImagePlanes] = {}
    proposals: list[_Proposal] = []
    for share in shares:
        wanted = _COARSE_LOGO_PX / (share * min(1.0, template.aspect))
        coarse_w = min(width, next((w for w in _COARSE_WIDTHS if w >= wanted), _COARSE_WIDTHS[-1]))
        coarse = scaled.at(coarse_w)
        tw = round(share * coarse_w)
        th = template.height_for(tw)
        if tw < 4 or th < 4 or tw > coarse_w or th > coarse.shape[0]:
            continue
        if coarse_w not in planes_at:
            planes_at[coarse_w] = template.image_planes(coarse, coarse_colour)
        planes = planes_at[coarse_w]
        ncc = template.score(planes, tw, coarse_colour, strict=False)
        peaks = _peaks(ncc, min(tw, th) // 2, _COARSE_PEAKS)
        if planes.likeness is not None:
            # edges, and parts of the logo, match a masked pattern too: check the outline
            alpha = template.shape(tw).ravel()
            alpha = alpha - alpha.mean()
            checked = []
            for score, x, y in peaks:
                window = planes.likeness[0, y : y + th, x : x + tw].ravel()
                window = window - window.mean()
                norm = math.sqrt(float(window @ window) * float(alpha @ alpha))
                outline = float(window @ alpha) / norm if norm > 1e-9 else 0.0
                checked.append((score * min(1.0, max(0.0, outline) / _MIN_OUTLINE), x, y))
            peaks = checked
        scale = width / coarse_w
        for score, x, y in sorted(peaks, reverse=True)[:3]:
            box = (x * scale, y * scale, (x + tw) * scale, (y + th) * scale)
            proposals.append((score, box, share, coarse_w))
    if not proposals:
        return []
    proposals.sort(key=lambda p: p[0], reverse=True)
    kept: list[_Proposal] = []
    for p in proposals:
        if p[0] < proposals[0][0] - _CANDIDATE_GAP:
            break
        # a part of a logo can look like the whole at a smaller size: keep other sizes
        if all(_iou(p[1], k[1]) < 0.3 or max(p[2], k[2]) > 1.3 * min(p[2], k[2]) for k in kept):
            kept.append(p)
        if len(kept) == _CANDIDATES:
            break
    return kept


def find_logo(
    image: np.ndarray,
    logo: np.ndarray,
    *,
    width_shares: Sequence[float] = (0.05, 0.08, 0.12, 0.18, 0.25, 0.3),
    threshold: float = 0.7,
) -> LogoMatch:
    """Where the brand logo appears in an image, by masked normalised cross-correlation.

    width_shares: logo widths to look for, as shares of the image width; sizes in between are
    tried too, up to 12 % apart. An RGBA logo's alpha is the match mask, so its transparent
    background is ignored. A coarse search over all sizes proposes candidates, which are
    refined in colour at a finer resolution, where the score also requires the logo's outline
    and its own colours and contrast; found is score >= threshold.
    """
    rgb = as_rgb(image)
    logo = np.asarray(logo)
    as_rgb(logo, "logo")
    if not width_shares or not all(0 < s <= 1 for s in width_shares):
        raise ValueError(
            f"width_shares must be in (0, 1] (shares of the image width): {width_shares}"
        )
    template = _Template(logo)
    width = rgb.shape[1]
    shares = _share_grid(width_shares)
    colour = not template.silhouette
    scaled = _Scaled(rgb)

    kept = _proposals(scaled, template, shares)
    if not kept:
        return LogoMatch(found=False, score=-1.0, box=None, scale=None)

    # fine: colour, sizes around each candidate's, at a resolution that keeps the logo small
    results: list[tuple[_Match, float]] = []  # match, px per px
    for _, (x0, y0, x1, y1), share, coarse_w in kept:
        fine_w = min(width, _FINAL_WIDTH, max(coarse_w, round(_FINE_LOGO_PX / share)))
        fine = scaled.at(fine_w)
        r = fine_w / width
        centre = ((x0 + x1) / 2 * r, (y0 + y1) / 2 * r)
        margin = round(2 * fine_w / coarse_w) + 2  # a coarse pixel or two either way
        limits = (shares[0] / _SHARE_STEP * fine_w, min(shares[-1] * _SHARE_STEP, 1) * fine_w)
        found = _fit(
            fine, template, centre, share * fine_w, limits, margin, colour, threshold - 0.3
        )
        if found is not None:
            results.append((found, width / fine_w))
    if not results:
        return LogoMatch(found=False, score=kept[0][0], box=None, scale=None)
    (score, bx, by, bw, bh), px = _prefer_whole(results)

    # final position at the highest resolution used, when the refinement ran coarser
    final_w = min(width, _FINAL_WIDTH)
    if px > width / final_w + 1e-9:
        final = scaled.at(final_w)
        r = px * final_w / width
        centre = ((bx + bw / 2) * r, (by + bh / 2) * r)
        widths = [round(bw * r * f) for f in (0.98, 0.99, 1.0, 1.01, 1.02)]
        found = _refine(final, template, centre, widths, margin=round(r) + 1, colour=colour)
        if found is not None:
            score, bx, by, bw, bh = found
            px = width / final_w
    box = (
        round(bx * px),
        round(by * px),
        round((bx + bw) * px),
        round((by + bh) * px),
    )
    if score < threshold:
        return LogoMatch(found=False, score=score, box=None, scale=None)
    return LogoMatch(found=True, score=score, box=box, scale=bw * px / width)


_CORNERS: dict[tuple[bool, bool], Placement] = {
    (True, True): "top-left",
    (True, False): "top-right",
    (False, True): "bottom-left",
    (False, False): "bottom-right",
}


def logo_placement(box: Box, image_shape: Sequence[int]) -> Placement:
    """The brand-kit placement a logo box is in: the centre ninth, else the nearest corner."""
    height, width = image_shape[0], image_shape[1]
    cx = (box[0] + box[2]) / 2 / width
    cy = (box[1] + box[3]) / 2 / height
    if 1 / 3 <= cx <= 2 / 3 and 1 / 3 <= cy <= 2 / 3:
        return "center"
    return _CORNERS[(cy < 0.5, cx < 0.5)]
