"""The short summary that ends a training run: what was produced, where, what to try next."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def format_summary(metrics: dict[str, Any], *, run_url: str | None = None) -> str:
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
    print(format_summary(json.loads(path.read_text())))
