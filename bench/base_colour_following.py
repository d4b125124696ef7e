"""Measure how well the base model follows colour words.

    python bench/base_colour_following.py [models/base] [--steps 20] [--guidance 5]

Prints the colour-following share (pixels in the two colours named by "a X circle on a Y
background", per pair and on average) and, per named colour, the mean colour rendered for
"a plain X background" against the colour's prototype.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from brandforge.pipeline import load_base
from training.base_model import colour_fidelity, colour_following


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_dir", nargs="?", default="models/base", type=Path)
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps")
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    torch.set_num_threads(2)
    pipe, ref = load_base(args.base_dir)
    start = time.monotonic()
    following = colour_following(
        pipe, resolution=ref.resolution, steps=args.steps, guidance=args.guidance
    )
    fidelity = colour_fidelity(
        pipe, resolution=ref.resolution, steps=args.steps, guidance=args.guidance
    )
    print(f"base {ref.location(args.base_dir)} ({ref.identity[:12]})")
    print(f"colour following (two named colours): {following['share']:.3f}")
    for pair, share in following["pairs"].items():
        print(f"  {pair:<16} {share:.3f}")
    print("per-colour fidelity ('a plain X background'): mean RGB vs target, distance, share")
    for colour, f in fidelity.items():
        mean = ", ".join(f"{v:5.1f}" for v in f["mean_rgb"])
        target = ", ".join(f"{v:3d}" for v in f["target_rgb"])
        print(
            f"  {colour:<8} ({mean}) vs ({target})  d={f['rgb_distance']:5.1f}"
            f"  share={f['share']:.2f}"
        )
    print(f"({time.monotonic() - start:.1f} s)")
    if args.json:
        args.json.write_text(
            json.dumps({"colour_following": following, "colour_fidelity": fidelity}, indent=2)
            + "\n"
        )


if __name__ == "__main__":
    main()
