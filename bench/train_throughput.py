"""LoRA training steps per second: loss logging per step vs in windows, torch.compile off vs on.

Builds what `make demo` trains on in a temporary folder, the way the pipeline does: the demo
brand (`data.demo`), `prepare`, and the embedded base model's architecture (`base` with no
pretraining steps: the weights do not change the speed). Then runs `train` with the `train`
section of params.yaml, stopped after --steps optimizer steps (no checkpoint or validation grid
falls inside unless params.yaml asks for one that early), in one process, side by side:

    before     train.log_every=1  (a host sync and an MLflow write per step, as before)
    after      train.log_every=N  (params.yaml's, or --log-every)
    compiled   train.log_every=N, train.compile=true

The runs alternate (--repeats rounds of the three). Prints the steady-state steps/s (all steps
but the first, the best round), the ratios to `before`, and the first round's first-step seconds
(for `compiled`: the cold compilation) with the warm-up over `after`'s first step.
The MLflow store is SQLite, as in `make demo`; the compilation is cold (a fresh inductor cache,
unless TORCHINDUCTOR_CACHE_DIR is set).

    python bench/train_throughput.py [--steps 60] [--log-every 10] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def build_demo_root(root: Path, params: Any) -> None:
    """The demo brand, prepared, and the embedded base model's architecture (not pretrained)."""
    from brandforge.params import parse_params
    from training import base_model, demo_brand, prepare

    raw = params.model_dump(by_alias=True)
    raw["base"]["pretrain"].update(
        {"corpus_size": 16, "vae_steps": 0, "unet_steps": 0, "check_steps": 1}
    )
    quick = parse_params(raw)
    demo_brand.run(quick, root=root)
    prepare.run(quick, root=root)
    base_model.run(quick, root=root)


def measure(root: Path, params: Any, *, steps: int, **train: Any) -> dict[str, Any]:
    """One stopped training run: its first step's seconds and steady steps per second."""
    from brandforge.params import parse_params
    from training import train_lora

    raw = params.model_dump(by_alias=True)
    raw["train"].update(train)
    result = train_lora.run(parse_params(raw), root=root, stop_after=steps, fresh=True)
    first = result.first_step_seconds or 0.0
    return {"first": first, "steps_per_s": (result.step - 1) / (result.loop_seconds - first)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps per run (2..1000)")
    ap.add_argument("--log-every", type=int, default=None, help="default: params.yaml's")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of the three runs (1..5)")
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled run")
    args = ap.parse_args()
    if not 2 <= args.steps <= 1000 or not 1 <= args.repeats <= 5:
        ap.error("--steps must be 2..1000 and --repeats 1..5")

    import torch

    from brandforge.params import load_params
    from brandforge.settings import get_settings

    params = load_params(args.params)
    every = args.log_every or params.train.log_every
    configs: dict[str, dict[str, Any]] = {
        "before": {"log_every": 1, "compile": False},
        "after": {"log_every": every, "compile": False},
    }
    if not args.no_compile:
        configs["compiled"] = {"log_every": every, "compile": True}

    with tempfile.TemporaryDirectory(prefix="brandforge-bench-") as tmp:
        root = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        os.environ["BRANDFORGE_ARTIFACT_ROOT"] = str(root / "mlartifacts")
        os.environ["BRANDFORGE_CACHE_DIR"] = str(root / "cache")
        # A cold compile, as on a fresh machine (inductor's cache would hide the warm-up).
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(root / "inductor"))
        get_settings.cache_clear()
        started = time.perf_counter()
        build_demo_root(root, params)
        print(f"demo data and base built in {time.perf_counter() - started:.0f} s")

        results: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
        errors: dict[str, str] = {}
        for _ in range(args.repeats):
            for name, train in configs.items():
                if name in errors:
                    continue
                try:
                    results[name].append(measure(root, params, steps=args.steps, **train))
                except Exception as err:  # a compile failure is a finding, not a crash
                    errors[name] = f"{type(err).__name__}: {err}"
    report(args, params, every, results, errors, torch_version=torch.__version__)


def report(
    args: argparse.Namespace,
    params: Any,
    every: int,
    results: dict[str, list[dict[str, Any]]],
    errors: dict[str, str],
    *,
    torch_version: str,
) -> None:
    tp = params.train
    print(
        f"\nLoRA training, params.yaml train section (rank {tp.rank}, batch {tp.batch_size}, "
        f"resolution {params.base.resolution}), {args.steps} steps x {args.repeats}, "
        f"torch {torch_version}, {os.cpu_count()} CPUs, MLflow on SQLite"
    )
    best = {n: max(r["steps_per_s"] for r in runs) for n, runs in results.items() if runs}
    # The first round's first step: later rounds reuse what the first compiled run cached.
    first = {n: runs[0]["first"] for n, runs in results.items() if runs}
    header = ("run", "log_every", "compile", "steps/s", "x before", "1st step s")
    print("{:<10} {:>9} {:>8} {:>8} {:>9} {:>11}".format(*header))
    for name in results:
        if name in errors:
            print(f"{name:<10} failed: {errors[name]}")
            continue
        cfg_every = 1 if name == "before" else every
        ratio = best[name] / best["before"] if "before" in best else float("nan")
        print(
            f"{name:<10} {cfg_every:>9} {str(name == 'compiled'):>8} {best[name]:>8.2f} "
            f"{ratio:>9.3f} {first[name]:>11.2f}"
        )
    for name, runs in results.items():
        rounds = " ".join(f"{r['steps_per_s']:.2f}" for r in runs)
        print(f"  {name} steps/s by round: {rounds}")
    if "compiled" in best and "after" in best:
        warmup = first["compiled"] - first["after"]
        gain = 1 / best["after"] - 1 / best["compiled"]  # seconds saved per step
        print(
            f"\ncompile warm-up: {warmup:.1f} s; compiled/after steady ratio "
            f"{best['compiled'] / best['after']:.3f}"
        )
        if gain > 0:
            print(f"pays off after {warmup / gain:.0f} steps (train.max_steps = {tp.max_steps})")
        else:
            print("never pays off at these settings (no steady-state gain)")
    print(
        "(steps/s: all steps but the first, the best of the repeats; 1st step: the first round, "
        "a cold compilation)"
    )


if __name__ == "__main__":
    main()
