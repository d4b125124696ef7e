"""How fast `brandforge evaluate images` scores a folder, by image size.

Draws on-brand demo visuals at each size (PNG and JPEG q85 files on disk), runs the same
`evaluate_folder` the CLI runs, and prints images per second and the time per image of each
part of the compliance report (quality floors, palette, off-palette colour, text search).

    python bench/evaluate_images.py [--sizes 256 512 1024] [--n 12]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--n", type=int, default=12, help="images per size (half PNG, half JPEG)")
    args = ap.parse_args()

    from brandforge.brandkit import load_brand_kit
    from evaluation.images import evaluate_folder, read_image
    from evaluation.palette import largest_off_palette_color, palette_report, subsample
    from evaluation.quality import quality_metrics
    from evaluation.text_regions import find_text_regions
    from training.demo_brand import demo_brand_kit, draw_visual

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "brand.yaml").write_text(yaml.safe_dump(demo_brand_kit("acme")))
        kit = load_brand_kit(root / "brand.yaml")
        palette = [c.rgb for c in kit.palette]
        print(
            f"{'size':>6} {'images/s':>9} {'ms/img':>8}   quality  palette  off-pal  text (ms/img)"
        )
        for size in args.sizes:
            folder = root / str(size)
            folder.mkdir()
            rng = np.random.default_rng(size)
            for i in range(args.n):
                image, _ = draw_visual(rng, resolution=size, trigger="acme")
                if i % 2:
                    image.save(folder / f"{i}.jpg", quality=85)
                else:
                    image.save(folder / f"{i}.png")
            start = time.perf_counter()
            report = evaluate_folder(folder, kit, brand_dir=root)
            seconds = time.perf_counter() - start
            assert report["summary"]["images"] == args.n

            parts = {"quality": 0.0, "palette": 0.0, "off": 0.0, "text": 0.0}
            for path in sorted(folder.iterdir()):
                img = read_image(path)
                for name, fn in (
                    ("quality", lambda a: quality_metrics(a)),
                    ("palette", lambda a: palette_report(subsample(a, 262_144), palette, 12.0)),
                    ("off", lambda a: largest_off_palette_color(a, palette, 12.0)),
                    ("text", lambda a: find_text_regions(a)),
                ):
                    t = time.perf_counter()
                    fn(img)
                    parts[name] += time.perf_counter() - t
            ms = {k: 1000 * v / args.n for k, v in parts.items()}
            print(
                f"{size:>6} {args.n / seconds:>9.2f} {1000 * seconds / args.n:>8.0f}   "
                + "  ".join(f"{ms[k]:>7.0f}" for k in ("quality", "palette", "off"))
                + f"  {ms['text']:>5.0f}"
            )


if __name__ == "__main__":
    main()
