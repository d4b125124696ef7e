"""Measure the invisible watermark's robustness: the matrix the README publishes.

    python bench/watermark.py [--images 50] [--sizes 256,512,1024] [--json out.json]

For each size, `--images` offline images (even: photo-like synthetic scenes, odd: demo-brand
visuals from `training.demo_brand`) are watermarked with their own asset id, attacked, and
read back. Attacks: JPEG quality 50/75/90; crop 5/10 % (that share cut off each of the four
sides, each cut moved by a random 0-7 px so the 8-px grid is lost); resize to 0.5/0.75/1.5/2x
(Pillow bicubic). Each attacked image is passed as decoded pixels, nothing else done to it.
Prints, per attack and size, the detection rate (the right payload found) and the mean number
of the 64 bits read wrong before correction; then the false-positive rate on the same images
unmarked (as drawn and after JPEG 75), the PSNR of the mark and the embed/read times.
Single-threaded figures: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from serving.delivery.watermark import embed_watermark, read_watermark, watermark_payload
from training.demo_brand import draw_visual

Attack = Callable[[Image.Image, np.random.Generator], Image.Image]


def photo_like(size: int, rng: np.random.Generator) -> Image.Image:
    """Gradients, texture at several scales, flat shapes and sensor-like noise."""
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([200 * x + 30, 120 + 80 * np.sin(6 * y), 220 - 150 * x * y], axis=-1)
    for sigma, amplitude in ((2, 6), (8, 15), (30, 30)):
        noise = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma)
        base += (amplitude * noise / noise.std())[:, :, None]
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        cx, cy = rng.integers(0, size, 2)
        r = int(rng.integers(size // 40, size // 4))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([cx - r, cy - r, cx + r, cy + r], fill=colour)
    noisy = np.asarray(image, dtype=float) + rng.normal(0, 4, (size, size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def test_image(size: int, index: int) -> Image.Image:
    """Image `index` of the bench at `size` px, the same on every run."""
    rng = np.random.default_rng([size, index])
    if index % 2 == 0:
        return photo_like(size, rng)
    # Brand visuals are drawn at up to 512 px (drawing costs seconds at 1024) and enlarged.
    drawn, _ = draw_visual(rng, resolution=min(size, 512), trigger="acme")
    return drawn.resize((size, size), Image.Resampling.LANCZOS)


def jpeg(quality: int) -> Attack:
    def attack(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    return attack


def crop(share: float) -> Attack:
    def attack(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = image.size
        left, top, right, bottom = (int(share * s) + int(rng.integers(0, 8)) for s in (w, h, w, h))
        return image.crop((left, top, w - right, h - bottom))

    return attack


def resize(scale: float) -> Attack:
    def attack(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        size = (round(image.width * scale), round(image.height * scale))
        return image.resize(size, Image.Resampling.BICUBIC)

    return attack


ATTACKS: dict[str, Attack] = {
    "JPEG 50": jpeg(50),
    "JPEG 75": jpeg(75),
    "JPEG 90": jpeg(90),
    "crop 5 %": crop(0.05),
    "crop 10 %": crop(0.10),
    "resize 0.5x": resize(0.5),
    "resize 0.75x": resize(0.75),
    "resize 1.5x": resize(1.5),
    "resize 2x": resize(2.0),
}


@dataclass
class Tally:
    found: int = 0
    wrong: int = 0  # found, but another payload: must stay 0
    bit_errors: list[int] = field(default_factory=list)


@dataclass
class SizeResult:
    attacks: dict[str, Tally] = field(default_factory=lambda: {a: Tally() for a in ATTACKS})
    psnr: list[float] = field(default_factory=list)
    embed_s: list[float] = field(default_factory=list)
    read_s: list[float] = field(default_factory=list)
    unmarked: int = 0
    false_positives: int = 0
    unmarked_max_signal: float = 0.0


def bit_errors(raw: bytes | None, payload: bytes) -> int:
    """How many of the 64 bits `raw` reads wrong (32, chance, when nothing was read)."""
    if raw is None:
        return 32
    read = np.unpackbits(np.frombuffer(raw, np.uint8))
    return int((read != np.unpackbits(np.frombuffer(payload, np.uint8))).sum())


def psnr(a: Image.Image, b: Image.Image) -> float:
    error = np.mean((np.asarray(a, dtype=float) - np.asarray(b, dtype=float)) ** 2)
    return float(10 * np.log10(255**2 / error))


def timed_read(image: Image.Image, result: SizeResult):  # noqa: ANN201
    start = time.perf_counter()
    reading = read_watermark(image)
    result.read_s.append(time.perf_counter() - start)
    return reading


def measure(size: int, images: int) -> SizeResult:
    result = SizeResult()
    for index in range(images):
        original = test_image(size, index)
        payload = watermark_payload(f"bench-{size}-{index}")
        start = time.perf_counter()
        marked = embed_watermark(original, payload)
        result.embed_s.append(time.perf_counter() - start)
        result.psnr.append(psnr(original, marked))
        rng = np.random.default_rng([size, index, 1])
        for name, attack in ATTACKS.items():
            reading = timed_read(attack(marked, rng), result)
            tally = result.attacks[name]
            tally.found += reading.found and reading.payload == payload
            tally.wrong += reading.found and reading.payload != payload
            tally.bit_errors.append(bit_errors(reading.raw_bits, payload))
        for unmarked in (original, jpeg(75)(original, rng)):
            reading = timed_read(unmarked, result)
            result.unmarked += 1
            result.false_positives += reading.found
            result.unmarked_max_signal = max(result.unmarked_max_signal, reading.signal)
    return result


def table(results: dict[int, SizeResult], images: int) -> Iterator[str]:
    sizes = list(results)
    yield "| attack | " + " | ".join(f"{s} px: detected, bit errors" for s in sizes) + " |"
    yield "|---|" + "---|" * len(sizes)
    for name in ATTACKS:
        cells = []
        for size in sizes:
            tally = results[size].attacks[name]
            cells.append(f"{tally.found / images:.0%}, {np.mean(tally.bit_errors):.2f}")
        yield f"| {name} | " + " | ".join(cells) + " |"
    rows: dict[str, Callable[[SizeResult], str]] = {
        "marked: another payload read": lambda r: str(sum(t.wrong for t in r.attacks.values())),
        "unmarked: false positives": lambda r: (
            f"{r.false_positives}/{r.unmarked} (max signal {r.unmarked_max_signal:.1f})"
        ),
        "PSNR, mean (min)": lambda r: f"{np.mean(r.psnr):.1f} dB ({min(r.psnr):.1f})",
        "embed time, mean": lambda r: f"{1000 * np.mean(r.embed_s):.0f} ms",
        "read time, mean (max)": lambda r: (
            f"{1000 * np.mean(r.read_s):.0f} ms ({1000 * max(r.read_s):.0f})"
        ),
    }
    for label, cell in rows.items():
        yield f"| {label} | " + " | ".join(cell(results[s]) for s in sizes) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50, help="images per size")
    parser.add_argument("--sizes", default="256,512,1024", help="comma-separated sides in px")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    started = time.monotonic()
    for size in sizes:
        results[size] = measure(size, args.images)
        print(f"# {size} px done after {time.monotonic() - started:.0f} s", flush=True)
    print(f"\n{args.images} images per size; detected = the right 64-bit payload read\n")
    for line in table(results, args.images):
        print(line)
    if args.json:
        figures = {
            size: {
                "detected": {a: t.found / args.images for a, t in r.attacks.items()},
                "bit_errors": {a: float(np.mean(t.bit_errors)) for a, t in r.attacks.items()},
                "false_positives": r.false_positives,
                "unmarked": r.unmarked,
                "psnr_db": float(np.mean(r.psnr)),
                "embed_s": float(np.mean(r.embed_s)),
                "read_s": float(np.mean(r.read_s)),
            }
            for size, r in results.items()
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
