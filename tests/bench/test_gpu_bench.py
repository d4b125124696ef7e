"""`bench/gpu.py` runs end to end: the tiny architecture on the CPU, compile skipped.

Only that every figure is there, finite and positive; how fast is the script's business.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIGURES = (
    "train_steps_per_s",
    "train_images_per_s",
    "train_tflop_per_step",
    "train_mfu",
    "latency_p50_4_steps_s",
    "latency_p50_20_steps_s",
    "throughput_batch8_images_per_s",
    "channels_last_latency_p50_20_steps_s",
    "channels_last_speedup",
    "swap_steady_latency_s",
    "hotswap_switch_s",
    "hotswap_first_switch_image_s",
    "hotswap_image_after_switch_s",
    "set_adapters_switch_s",
    "set_adapters_first_switch_image_s",
    "set_adapters_image_after_switch_s",
)
COMPILE_FIGURES = ("compile_warmup_s", "compile_latency_p50_4_steps_s", "compile_speedup")


def test_tiny_cpu_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    cmd = [sys.executable, "bench/gpu.py", "--tiny", "--device", "cpu", "--skip-compile"]
    proc = subprocess.run(
        [*cmd, "--json", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    figures = json.loads(out.read_text())
    for key in FIGURES:
        value = figures[key]
        assert isinstance(value, int | float) and math.isfinite(value) and value > 0, (key, value)
    # Compile was skipped: its figures are absent and the table says so.
    assert not set(COMPILE_FIGURES) & figures.keys()
    meta = figures["meta"]
    assert meta["skip_compile"] is True and meta["tiny"] is True and meta["size"] == 64
    assert meta["peak_tflops"] == 989.0
    assert meta["torch"] and meta["diffusers"] and meta["device_name"]

    table = proc.stdout
    assert "model FLOP utilisation" in table and "torch.compile: warm-up (s)" in table
    assert "skipped" in table and meta["diffusers"] in table and meta["date"] in table
