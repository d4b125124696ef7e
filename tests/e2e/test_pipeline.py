"""The real pipeline, end to end: `dvc repro` in a fresh git repo on a micro configuration.

Everything is real: DVC, the embedded base build (a few steps), the LoRA trainer, MLflow on the
default `sqlite:///mlflow.db`, `mlflow.diffusers` logging and loading.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

MICRO_PARAMS = {
    "data": {"demo": {"n_images": 16}},
    "base": {
        "pretrain": {
            "corpus_size": 32,
            "vae_steps": 2,
            "unet_steps": 2,
            "batch_size": 8,
            "time_budget_s": 60,
            "check_steps": 2,
        }
    },
    "train": {
        "max_steps": 4,
        "batch_size": 4,
        "checkpoint_every": 2,
        "validation_every": 2,
        "evidence": {"prompts": ["{brand} banner"], "seeds": [0, 1], "num_inference_steps": 3},
    },
    "eval": {"num_inference_steps": 3, "bootstrap_resamples": 500},
}

pytestmark = pytest.mark.e2e


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-5000:]}"
        )
    return proc


def reproduce(repo: Path, env_extra: dict[str, str] | None = None) -> dict[str, str]:
    """Make `repo` a fresh git + DVC repo holding the project's code and a micro params.yaml,
    run `dvc repro` in it, and return the environment it ran with."""
    repo.mkdir(parents=True, exist_ok=True)
    for name in ("brandforge", "training", "evaluation", "registry"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    defaults = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in MICRO_PARAMS.items():
        for key, value in values.items():
            if isinstance(value, dict):
                defaults[section][key].update(value)
            else:
                defaults[section][key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(defaults, sort_keys=False))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BRANDFORGE_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        HF_HUB_OFFLINE="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
        **(env_extra or {}),
    )
    _run(["git", "init", "-q"], repo, env)
    _run([str(BIN / "dvc"), "init", "-q"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "micro project"], repo, env)
    _run([str(BIN / "dvc"), "repro"], repo, env)
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh git + DVC repo holding the project's code and a micro params.yaml, reproduced."""
    repo = tmp_path_factory.mktemp("repo")
    return repo, reproduce(repo)


def _train_metrics(repo: Path) -> dict:
    return json.loads((repo / "metrics/train.json").read_text())


def test_repro_tracks_the_run_in_mlflow(project, monkeypatch):
    import mlflow

    repo, _ = project
    metrics = _train_metrics(repo)
    assert metrics["steps"] == 4
    monkeypatch.chdir(repo)  # the default store is sqlite:///mlflow.db in the project root
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    run = mlflow.get_run(metrics["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.max_steps"] == "4"
    assert (
        run.data.tags["brandforge.dataset_hash"]
        == json.loads((repo / "data/prepared/dataset.json").read_text())["hash"]
    )
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    assert run.data.tags["brandforge.git_commit"].startswith(commit)
    assert run.data.tags["brandforge.base_source"] == "embedded"
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [
        1,
        2,
        3,
        4,
    ]
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
    assert any("validation" in p for p in images)
    experiment = mlflow.get_experiment(run.info.experiment_id)
    assert experiment.name == "brandforge-acme"
    assert (repo / "mlartifacts").is_dir()


def test_logged_model_loads_with_the_diffusers_flavor_and_generates(project, monkeypatch):
    import mlflow
    import mlflow.diffusers
    import numpy as np

    repo, _ = project
    monkeypatch.chdir(repo)
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    model = mlflow.diffusers.load_model(_train_metrics(repo)["model_uri"])
    assert model.adapter_type == "lora"
    assert Path(model.base_model) == (repo / "models/base").resolve()
    pipe = model.load_pipeline(device="cpu")
    assert pipe.get_list_adapters()["unet"]  # the adapter is applied
    images = pipe(
        "acme banner",
        num_inference_steps=2,
        height=32,
        width=32,
        output_type="np",
        generator=__import__("torch").Generator().manual_seed(0),
    ).images
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()

    pyfunc = mlflow.pyfunc.load_model(_train_metrics(repo)["model_uri"])
    import pandas as pd

    out = pyfunc.predict(
        pd.DataFrame({"prompt": ["acme banner"]}),
        params={"num_inference_steps": 2, "height": 32, "width": 32},
    )
    assert out[0][:8] == b"\x89PNG\r\n\x1a\n"


def test_adapter_loads_into_the_base_pipeline_and_changes_its_output(project):
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    repo, _ = project
    pipe = StableDiffusionPipeline.from_pretrained(repo / "models/base", local_files_only=True)

    def render() -> np.ndarray:
        # latents, not pixels: a micro-trained model may saturate every pixel either way
        return (
            pipe(
                "acme banner",
                num_inference_steps=3,
                height=32,
                width=32,
                guidance_scale=1.0,
                output_type="latent",
                generator=torch.Generator().manual_seed(0),
            )
            .images[0]
            .numpy()
        )

    before = render()
    pipe.load_lora_weights(repo / "models/lora")
    assert pipe.get_list_adapters()["unet"]
    after = render()
    assert np.abs(after - before).max() > 1e-6


def test_evaluate_runs_after_training_and_records_the_ab_in_mlflow(project, monkeypatch):
    import mlflow

    repo, _ = project
    ev = json.loads((repo / "metrics/eval.json").read_text())
    champion = json.loads((repo / "models/champion.json").read_text())
    assert champion["source"] == "base" and ev["champion"] == "base"
    assert (ev["n_prompts"], ev["n_seeds"]) == (6, 8)  # the demo brand's prompt_set.yaml
    for c in ev["ab"].values():
        assert c["n"] == 48
        assert c["delta_ci95"][0] <= c["delta"] <= c["delta_ci95"][1]
    assert ev["gate"]["decision"] in ("accept", "reject") and ev["gate"]["reasons"]
    train = _train_metrics(repo)
    assert ev["challenger"] == train["model_uri"]

    monkeypatch.chdir(repo)
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    run = mlflow.get_run(train["mlflow_run_id"])
    assert run.data.tags["brandforge.eval.gate"] == ev["gate"]["decision"]
    assert run.data.metrics["eval_palette_adherence_delta"] == pytest.approx(
        ev["ab"]["palette_adherence"]["delta"]
    )
    client = mlflow.MlflowClient()
    names = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "eval")}
    assert {"champion_vs_challenger.png", "compliance_challenger.json", "summary.json"} <= names
    assert len(list((repo / "reports/eval/images/challenger").glob("*.png"))) == 48
    rows = (repo / "plots/eval_scores.csv").read_text().splitlines()
    assert rows[0] == "image,prompt,seed,champion,challenger" and len(rows) == 49


def test_the_registry_holds_the_adapter_and_its_lineage_reproduces_the_dataset(project, tmp_path):
    repo, env = project
    registered = json.loads((repo / "metrics/register.json").read_text())
    ev = json.loads((repo / "metrics/eval.json").read_text())
    assert registered["registered_model"] == "brandforge-acme" and registered["version"] == "1"
    assert registered["alias"] == ("challenger" if ev["gate"]["passed"] else None)
    brandforge = str(BIN / "brandforge")
    listed = _run([brandforge, "registry", "list"], repo, env).stdout
    assert "brandforge-acme" in listed and "brandforge-bases" in listed

    # A clean clone with nothing but git, the DVC remote and the tracking store.
    remote = tmp_path / "dvc-remote"
    _run([str(BIN / "dvc"), "remote", "add", "-d", "local", str(remote)], repo, env)
    _run([str(BIN / "dvc"), "push", "-q"], repo, env)
    out = _run([brandforge, "registry", "lineage", "brandforge-acme", "1"], repo, env).stdout
    commands = out.split("Reproduce its dataset (in a clone of the project):\n")[1].splitlines()
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    _run([str(BIN / "dvc"), "remote", "add", "-d", "local", str(remote)], clone, env)
    clone_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}"}
    for line in commands:
        args = line.split("#")[0].split()
        if args[0] in ("dvc", "brandforge"):
            args[0] = str(BIN / args[0])
        _run(args, clone, clone_env)  # the last one is `lineage --verify`: exit 0 = same hash
    assert (
        json.loads((clone / "data/prepared/dataset.json").read_text())["hash"]
        == json.loads((repo / "data/prepared/dataset.json").read_text())["hash"]
    )


def test_second_repro_is_a_no_op_and_metrics_are_visible(project):
    repo, env = project
    lock = (repo / "dvc.lock").read_text()
    out = _run([str(BIN / "dvc"), "repro"], repo, env).stdout
    # Only `champion` runs (it asks the registry, which changes outside DVC); the same answer
    # leaves `evaluate` and everything else as it was.
    assert [line for line in out.splitlines() if line.startswith("Running stage")] == [
        "Running stage 'champion':"
    ], out
    assert "Stage 'evaluate' didn't change" in out, out
    assert (repo / "dvc.lock").read_text() == lock
    shown = _run([str(BIN / "dvc"), "metrics", "show", "--json"], repo, env).stdout
    assert "palette_adherence" in shown and "final_loss" in shown
    _run([str(BIN / "dvc"), "plots", "show", "-o", str(repo / "plots_html")], repo, env)
    assert (repo / "plots_html" / "index.html").is_file()


def test_dvc_experiment_with_a_changed_rank(project):
    repo, env = project
    before = _train_metrics(repo)["mlflow_run_id"]
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "first repro"], repo, env)
    out = _run([str(BIN / "dvc"), "exp", "run", "-S", "train.rank=4"], repo, env)
    assert "train" in out.stdout + out.stderr
    after = _train_metrics(repo)
    assert after["mlflow_run_id"] != before
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    assert mlflow.get_run(after["mlflow_run_id"]).data.params["train.rank"] == "4"
    # the new adapter was evaluated too: DVC shows the change against the committed experiment
    diff = _run([str(BIN / "dvc"), "metrics", "diff", "--json"], repo, env).stdout
    changed = json.loads(diff)["metrics/eval.json"]
    assert changed["challenger"]["new"] == after["model_uri"]
    _run([str(BIN / "dvc"), "plots", "diff", "-o", str(repo / "plots_diff")], repo, env)
    assert "compliance score per eval image" in (repo / "plots_diff" / "index.html").read_text()
