"""The short summary that ends a training run: what was produced, where, what to try next."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def format_summary(
    metrics: dict[str, Any],
    *,
    run_url: str | None = None,
    evaluation: dict[str, Any] | None = None,
    registered: dict[str, Any] | None = None,
) -> str:
    pa = metrics.get("palette_adherence", {})
    lines = [
        "",
        f"BrandForge: LoRA adapter for brand '{metrics.get('brand')}' trained "
        f"({metrics.get('steps')} steps, {metrics.get('train_seconds')} s, "
        f"final loss {metrics.get('final_loss')})",
        "  adapter:   models/lora/pytorch_lora_weights.safetensors",
        f"  MLflow:    run {metrics.get('mlflow_run_id')}, model {metrics.get('model_uri')}",
    ]
    if run_url:
        lines.append(f"             {run_url}")
    if pa:
        lo, hi = pa.get("delta_ci95", [None, None])
        lines.append(
            f"  learned:   palette adherence {pa.get('base')} (base) -> {pa.get('adapter')} "
            f"(adapter), delta {pa.get('delta')} [95% CI {lo}..{hi}] on {pa.get('n_images')} images"
        )
    if evaluation and evaluation.get("challenger") == metrics.get("model_uri"):
        gate = evaluation["gate"]
        for name in ("compliance_score", "palette_adherence"):
            c = evaluation["ab"][name]
            lo, hi = c["delta_ci95"]
            lines.append(
                f"  A/B:       {name} {c['champion']} ({evaluation['champion']}) -> "
                f"{c['challenger']} (adapter), delta {c['delta']} [95% CI {lo}..{hi}]"
            )
        kit = evaluation["ab"].get("passed")
        if kit is not None:
            lines.append(
                f"  brand kit: {kit['champion']:.0%} ({evaluation['champion']}) -> "
                f"{kit['challenger']:.0%} (adapter) of {kit['n']} eval images pass it"
            )
        held = evaluation.get("held_out_pass_rate") or {}
        if held.get("challenger") is not None and held.get("champion") is not None:
            lines.append(
                f"             {held['champion']:.0%} -> {held['challenger']:.0%} on the "
                "held-out prompts (unlike any training caption)"
            )
        lines.append(f"  gate:      {gate['decision'].upper()}: {'; '.join(gate['reasons'])}")
        lines.append("             reports/eval/ (side-by-side grid, compliance, drift reports)")
    if registered and evaluation and evaluation.get("challenger") == metrics.get("model_uri"):
        alias = registered.get("alias") or "no alias: rejected by its gates"
        lines.append(
            f"  registry:  {registered['registered_model']} v{registered['version']} ({alias}); "
            f"brandforge registry lineage {registered['registered_model']} "
            f"{registered['version']}"
        )
    lines += [
        "  next:      mlflow ui --backend-store-uri sqlite:///mlflow.db  (runs, loss, image grids)",
        "             dvc metrics show; dvc plots show; dvc exp run -S train.rank=8",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "metrics/train.json")
    if not path.is_file():
        sys.exit(f"{path}: no training metrics yet; run `dvc repro`")
    eval_path = path.with_name("eval.json")
    evaluation = json.loads(eval_path.read_text()) if eval_path.is_file() else None
    reg_path = path.with_name("register.json")
    registered = json.loads(reg_path.read_text()) if reg_path.is_file() else None
    print(
        format_summary(json.loads(path.read_text()), evaluation=evaluation, registered=registered)
    )
