"""The registry on both backends: the embedded SQLite store and a real `mlflow server` on
PostgreSQL (the `tracking_uri` fixture runs each test on both).

Versions are registered by the real `register` stage from a project root that holds what the
training and evaluate stages leave behind: a logged `mlflow.diffusers` adapter (a small random
LoRA of the tiny SD pipeline), `metrics/train.json`, `metrics/eval.json` and `models/base`.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from brandforge.cli import app
from brandforge.params import ParamsError, parse_params
from registry import core
from registry.limits import SizeLimits, size_limits
from registry.stage import register

PASSED = {
    "passed": True,
    "decision": "accept",
    "reasons": ["all gates passed"],
}
REJECTED = {
    "passed": False,
    "decision": "reject",
    "reasons": ["forbidden-colour area: 1.00% → 9.00% of the pixels (may grow by at most 0.10%)"],
}


def _ab(delta: float) -> dict:
    return {
        "champion": 0.5,
        "challenger": 0.5 + delta,
        "delta": delta,
        "delta_ci95": [delta - 0.05, delta + 0.05],
        "win_rate": 0.5,
        "verdict": "-",
        "n": 16,
    }


@pytest.fixture(scope="session")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path) -> Path:
    """A random LoRA of the tiny SD UNet, saved as `load_lora_weights` expects."""
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(0)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir)
    pipe.unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_v"], init_lora_weights="gaussian")
    )
    with torch.no_grad():  # PEFT starts LoRA-B at zero (a no-op adapter); make it draw
        for param_name, param in pipe.unet.named_parameters():
            if "lora_B" in param_name:
                param.normal_(std=0.5)
    out = tmp_path_factory.mktemp("adapter")
    StableDiffusionPipeline.save_lora_weights(
        out, unet_lora_layers=get_peft_model_state_dict(pipe.unet)
    )
    return out


class Project:
    """A project root where `train` and `evaluate` have run; `train(...)` logs a new adapter."""

    def __init__(
        self, root: Path, brand: str, adapter: Path, base: Path, identity: str = "tiny-random-0"
    ) -> None:
        self.root, self.brand, self.adapter, self.identity = root, brand, adapter, identity
        self.name = f"brandforge-{brand}"
        shutil.copytree(base, root / "models" / "base")
        (root / "metrics").mkdir(parents=True)
        (root / "data/prepared").mkdir(parents=True)
        shutil.copy(
            Path(__file__).parents[1] / "evaluation/data/acme.yaml",
            root / "data/prepared/brand.yaml",
        )
        self.params = parse_params({"data": {"brand": brand}})

    def train(self, *, dataset_hash: str = "d" * 64, commit: str = "c0ffee" * 6 + "abcd") -> str:
        import mlflow.diffusers

        from brandforge.tracking import setup_mlflow

        setup_mlflow(self.brand)
        with mlflow.start_run() as run:
            mlflow.set_tags(
                {
                    "brandforge.git_commit": commit,
                    "brandforge.params_hash": "p" * 16,
                    "brandforge.base_source": "embedded",
                }
            )
            info = mlflow.diffusers.log_model(
                adapter_path=str(self.adapter),
                base_model=str((self.root / "models/base").resolve()),
                name="adapter",
                metadata={"base_identity": self.identity},
            )
        (self.root / "metrics/train.json").write_text(
            json.dumps(
                {
                    "brand": self.brand,
                    "model_uri": info.model_uri,
                    "mlflow_run_id": run.info.run_id,
                    "dataset_hash": dataset_hash,
                    "base_identity": self.identity,
                }
            )
        )
        self.evaluate(PASSED)
        return run.info.run_id

    def evaluate(self, gate: dict, delta: float = 0.1) -> None:
        train = json.loads((self.root / "metrics/train.json").read_text())
        ab = {k: _ab(delta) for k in ("compliance_score", "passed", "palette_adherence")}
        (self.root / "metrics/eval.json").write_text(
            json.dumps(
                {
                    "challenger": train["model_uri"],
                    "champion": "base",
                    "gate": gate,
                    "ab": ab,
                }
            )
        )

    def register(self) -> dict:
        return register(self.params, root=self.root)


@pytest.fixture
def project(tracking_uri, tmp_path, adapter_dir, tiny_sd_dir, monkeypatch) -> Project:
    from brandforge.settings import get_settings

    monkeypatch.setenv("BRANDFORGE_CACHE_DIR", str(tmp_path / "cache"))
    get_settings.cache_clear()
    brand = f"t{uuid.uuid4().hex[:8]}"  # each test its own model on the shared server
    yield Project(tmp_path / "project", brand, adapter_dir, tiny_sd_dir)
    get_settings.cache_clear()


def cli(*args: str):
    result = CliRunner().invoke(app, ["registry", *args])
    return result


# ---------------------------------------------------------------------------------------------


def test_a_passing_adapter_becomes_the_challenger_with_full_lineage(project):
    run_id = project.train(dataset_hash="a" * 64)
    result = project.register()
    assert result == {
        "registered_model": project.name,
        "version": "1",
        "gate": "accept",
        "alias": "challenger",
        "base_model_version": result["base_model_version"],
        "native_size": 32,
        "max_size": 128,
        "max_cost": 2000,
        "sampler": {"steps": 20, "guidance": 1.0},  # params.yaml's eval settings, the defaults
        "model_uri": f"models:/{project.name}/1",
    }
    c = core.client()
    v = core.get_version(c, project.name, "1")
    assert v.run_id == run_id
    assert core.alias_version(c, project.name, "challenger").version == "1"
    assert v.tags["brandforge.dataset_hash"] == "a" * 64
    assert v.tags["brandforge.git_commit"].startswith("c0ffee")
    assert v.tags["brandforge.base_identity"] == "tiny-random-0"
    assert v.tags["brandforge.params_hash"] == "p" * 16
    assert json.loads(v.tags["brandforge.brand_kit"])["forbidden_colors"] == ["#DC2828"]
    assert v.tags["brandforge.eval.gate"] == "accept"
    assert v.tags["brandforge.eval.compliance_score_delta"] == "+0.1000 [+0.0500, +0.1500]"
    assert v.status == "candidate"
    # serving's default size and limit: the tiny base's 32 px, and 4x that
    assert size_limits(v.tags) == SizeLimits(native=32, max=128)
    events = [e for _, e in v.history()]
    assert events[0].startswith("registered by register stage: gates passed")
    assert events[1] == "alias challenger set by register stage: passed the offline gates"
    # the base is stored once per identity
    assert result["base_model_version"].startswith("brandforge-bases/")
    project.train()
    second = project.register()
    assert second["version"] == "2"
    assert second["base_model_version"] == result["base_model_version"]


def test_the_size_limit_follows_the_training_resolution_and_the_register_param(project):
    import mlflow

    run_id = project.train()
    with mlflow.start_run(run_id=run_id):
        mlflow.log_param("base.resolution", 48)  # what train logs: the resolution it drew at
    register = {"max_size": 96, "max_cost": 300}
    project.params = parse_params({"data": {"brand": project.brand}, "register": register})
    assert project.register()["native_size"] == 48
    v = core.get_version(core.client(), project.name, "1")
    assert size_limits(v.tags) == SizeLimits(native=48, max=96, max_cost=300)
    project.params = parse_params({"data": {"brand": project.brand}, "register": {"max_size": 40}})
    with pytest.raises(core.RegistryError, match="max_size 40 is below the version's native"):
        project.register()


def test_a_version_records_the_sampler_its_evaluation_drew_with(project):
    from registry.sampler import Sampler, sampler_of

    project.train()
    evaluated = {"num_inference_steps": 12, "guidance_scale": 1.0}
    project.params = parse_params({"data": {"brand": project.brand}, "eval": evaluated})
    assert project.register()["sampler"] == {"steps": 12, "guidance": 1.0}
    v = core.get_version(core.client(), project.name, "1")
    assert sampler_of(v.tags) == Sampler(steps=12, guidance=1.0)
    # serving could not draw with it: params.yaml refuses it before anything runs
    with pytest.raises(ParamsError, match=r"eval\.guidance_scale"):
        parse_params({"eval": {"guidance_scale": 31}})


def test_registering_the_same_training_run_again_updates_its_version(project):
    project.train()
    project.register()
    project.evaluate(REJECTED, delta=-0.2)
    again = project.register()
    assert again["version"] == "1" and again["alias"] is None
    c = core.client()
    assert len(core.versions(c, project.name)) == 1
    v = core.get_version(c, project.name, "1")
    assert v.status == "rejected" and v.aliases == []
    assert core.alias_version(c, project.name, "challenger") is None


def test_a_rejected_adapter_is_registered_but_needs_force_and_a_reason(project, monkeypatch):
    project.train()
    project.evaluate(REJECTED, delta=-0.2)
    result = project.register()
    assert result["alias"] is None and result["gate"] == "reject"
    assert core.get_version(core.client(), project.name, "1").status == "rejected"

    refused = cli("promote", project.name, "--to", "canary", "--version", "1")
    assert refused.exit_code == 1
    assert "failed its gates" in refused.output and "forbidden-colour area" in refused.output
    no_reason = cli("promote", project.name, "--to", "canary", "--version", "1", "--force")
    assert no_reason.exit_code == 1 and "--reason" in no_reason.output

    monkeypatch.setenv("BRANDFORGE_USER", "rita")
    forced = cli(
        "promote",
        project.name,
        "--to",
        "canary",
        "--version",
        "1",
        "--force",
        "--reason",
        "legal approved the red badge",
    )
    assert forced.exit_code == 0, forced.output
    v = core.get_version(core.client(), project.name, "1")
    assert v.tags[core.FORCED_TAG] == "true"
    assert v.history()[-1][1] == (
        "alias canary set (forced past a rejected gate) by rita: legal approved the red badge"
    )


def test_canary_then_champion_then_rollback(project, monkeypatch):
    monkeypatch.setenv("BRANDFORGE_USER", "max")
    for _ in range(2):
        project.train()
        project.register()
    c = core.client()
    # v2 is the challenger; make v1 the champion first (explicit version)
    assert cli("promote", project.name, "--to", "champion", "--version", "1").exit_code == 0
    assert cli("promote", project.name, "--to", "canary", "-r", "rollout").exit_code == 0
    assert core.alias_version(c, project.name, "canary").version == "2"
    out = cli("promote", project.name, "--to", "champion", "-r", "canary healthy")
    assert out.exit_code == 0 and "champion -> v2" in out.output
    assert core.alias_version(c, project.name, "champion").version == "2"
    assert core.alias_version(c, project.name, "canary") is None  # the rollout is over
    again = cli("promote", project.name, "--to", "champion", "--version", "2")
    assert again.exit_code == 1 and "already holds champion" in again.output

    back = cli("rollback", project.name, "--reason", "complaints")
    assert back.exit_code == 0, back.output
    assert "champion v2 -> v1" in back.output
    assert core.alias_version(c, project.name, "champion").version == "1"
    v1, v2 = (core.get_version(c, project.name, n) for n in ("1", "2"))
    assert v1.history()[-1][1] == "alias champion restored (rollback from v2) by max: complaints"
    assert v2.history()[-1][1] == "alias champion rolled back to v1 by max: complaints"
    nothing = cli("rollback", project.name)
    assert nothing.exit_code == 1 and "no earlier champion" in nothing.output


def test_archive_removes_aliases_and_refuses_the_champion(project):
    for _ in range(2):
        project.train()
        project.register()
    c = core.client()
    assert cli("promote", project.name, "--to", "champion", "--version", "1").exit_code == 0
    refused = cli("archive", project.name, "1")
    assert refused.exit_code == 1 and "is the champion" in refused.output
    assert cli("archive", project.name, "2", "-r", "superseded").exit_code == 0
    v2 = core.get_version(c, project.name, "2")
    assert v2.status == "archived" and core.alias_version(c, project.name, "challenger") is None
    again = cli("promote", project.name, "--to", "canary", "--version", "2")
    assert again.exit_code == 1 and "archived" in again.output


def test_list_show_and_lineage(project, tmp_path):
    project.train(dataset_hash="e" * 64)
    project.register()
    listed = cli("list", project.name)
    assert listed.exit_code == 0, listed.output
    header, row = listed.output.splitlines()[:2]
    assert header.split()[:2] == ["model", "version"]
    assert row.split()[:2] == [project.name, "1"] and "challenger" in row and "accept" in row

    shown = cli("show", project.name, "1")
    assert shown.exit_code == 0
    assert "brandforge.dataset_hash: " + "e" * 64 in shown.output
    assert "registered by register stage" in shown.output

    lineage = cli("lineage", project.name, "1")
    assert lineage.exit_code == 0
    assert "git checkout c0ffee" in lineage.output
    assert "dataset:    " + "e" * 64 in lineage.output
    prepared = tmp_path / "clone" / "data/prepared"
    prepared.mkdir(parents=True)
    (prepared / "dataset.json").write_text(json.dumps({"hash": "e" * 64}))
    ok = cli("lineage", project.name, "1", "--verify", "--root", str(tmp_path / "clone"))
    assert ok.exit_code == 0 and "matches" in ok.output
    (prepared / "dataset.json").write_text(json.dumps({"hash": "f" * 64}))
    bad = cli("lineage", project.name, "1", "--verify", "--root", str(tmp_path / "clone"))
    assert bad.exit_code == 1 and "differs" in bad.output

    missing = cli("show", project.name, "9")
    assert missing.exit_code == 1 and "has no version 9" in missing.output
    unknown = cli("list", "brandforge-nope")
    assert unknown.exit_code == 1 and "no registered model" in unknown.output


def test_a_version_loads_with_nothing_but_the_tracking_uri(project):
    import numpy as np
    import torch

    from registry.bases import load_version_pipeline

    project.train()
    project.register()
    shutil.rmtree(project.root / "models/base")  # the training machine's base is gone
    pipe = load_version_pipeline(project.name, "1")
    assert pipe.get_list_adapters()["unet"]
    image = pipe(
        "acme banner",
        num_inference_steps=2,
        height=32,
        width=32,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert image.shape == (1, 32, 32, 3) and np.isfinite(image).all()


def test_an_alias_never_points_to_missing_artifacts(project, tracking_uri):
    if not tracking_uri.startswith("sqlite"):
        pytest.skip("deleting artifacts behind a server's back is tested on the local store")
    project.train()
    project.register()
    c = core.client()
    v = core.get_version(c, project.name, "1")
    local = mlflow.artifacts.download_artifacts(v.source)  # the local store's own folder
    shutil.rmtree(local)
    refused = cli("promote", project.name, "--to", "canary", "--version", "1")
    assert refused.exit_code == 1 and "artifacts are missing" in refused.output
    assert core.alias_version(c, project.name, "canary") is None


def test_the_registry_works_on_a_postgres_store_named_by_the_tracking_uri_alone(
    pg_database, tmp_path, adapter_dir, tiny_sd_dir, monkeypatch
):
    """No server: MLFLOW_TRACKING_URI=postgresql://… (no driver named) straight to the database."""
    from brandforge.settings import get_settings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", pg_database.uri)
    monkeypatch.setenv("BRANDFORGE_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    get_settings.cache_clear()
    try:
        p = Project(tmp_path / "project", "direct", adapter_dir, tiny_sd_dir)
        p.train()
        assert p.register()["alias"] == "challenger"
        listed = cli("list")
        assert listed.exit_code == 0 and "brandforge-direct" in listed.output
    finally:
        get_settings.cache_clear()
        mlflow.set_tracking_uri(None)


def test_an_unreachable_tracking_server_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    result = cli("list")
    assert result.exit_code == 1
    assert "tracking store http://127.0.0.1:1" in result.output
    assert "Traceback" not in result.output
    mlflow.set_tracking_uri(None)


def test_the_brand_logo_and_font_travel_with_the_version(project):
    """The logo and font the kit names are logged with the run, so the serving tier can
    compose campaign assets with them."""
    import yaml
    from PIL import Image

    from serving.catalog import registry_context

    kit_file = project.root / "data/prepared/brand.yaml"
    kit = yaml.safe_load(kit_file.read_text())
    kit["logo"] = {"file": "logo.png", "placement": ["bottom-right"]}
    kit["font_file"] = "fonts/brand.ttf"
    kit_file.write_text(yaml.safe_dump(kit))
    brand_dir = project.root / "data/brands" / project.brand
    (brand_dir / "fonts").mkdir(parents=True)
    Image.new("RGBA", (40, 20), (20, 40, 120, 255)).save(brand_dir / "logo.png")
    (brand_dir / "fonts/brand.ttf").write_bytes(b"font bytes")  # carried, not parsed here
    project.train()
    version = project.register()["version"]

    ctx = registry_context(f"{project.name}/{version}")
    assert ctx.kit is not None and ctx.kit.logo.file == "logo.png"
    assert ctx.logo is not None and ctx.logo.size == (40, 20)
    assert ctx.font is not None and Path(ctx.font).name == "brand.ttf"
    assert ctx.dataset_hash == "d" * 64
