"""The `evaluate` stage on a tiny real pipeline: A/B against the base, then against a champion.

One project, in order: train an adapter on the demo brand and evaluate it against the base model
(no champion yet); register it in MLflow and give it the `champion` alias; recolour the brand's
images off-palette (teal → the forbidden red, white → purple), train a second adapter on them and
evaluate it against the champion loaded from the registry. The tiny model draws poorly in
absolute terms; what is tested is that the A/B measures the difference and the gate acts on it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from brandforge.brandkit import load_brand_kit
from brandforge.params import parse_params
from evaluation import stage
from tests.tiny_models import TINY_LORA_TRAIN

PARAMS = {
    "data": {"demo": {"n_images": 24}},
    "train": {**TINY_LORA_TRAIN, "max_steps": 400},
    "eval": {"num_inference_steps": 10, "guidance_scale": 1.0, "bootstrap_resamples": 1000},
}
RED, PURPLE = (0xDC, 0x28, 0x28), (120, 60, 160)


def _recolour_off_palette(images_dir: Path) -> None:
    for path in images_dir.rglob("*.png"):
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
        teal = np.abs(rgb - (0x1A, 0x9E, 0x9E)).sum(-1) < 60
        white = np.abs(rgb - (0xF5, 0xF5, 0xF5)).sum(-1) < 60
        rgb[teal], rgb[white] = RED, PURPLE
        Image.fromarray(rgb.astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def ab(tmp_path_factory: pytest.TempPathFactory):
    from brandforge.settings import get_settings
    from tests.tiny_models import build_tiny_sd
    from training import demo_brand, prepare, train_lora

    root = tmp_path_factory.mktemp("ab")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("BRANDFORGE_ARTIFACT_ROOT", str(root / "mlartifacts"))
        mp.setenv("BRANDFORGE_CACHE_DIR", str(root / "cache"))
        get_settings.cache_clear()
        mlflow.set_tracking_uri(uri)
        params = parse_params(PARAMS)
        demo_brand.run(params, root=root)
        prepare.run(params, root=root)
        build_tiny_sd(root / "models" / "base", colour_vae=True)

        good = train_lora.run(params, root=root)
        assert stage.write_champion(params, root=root)["source"] == "base"
        first = stage.run(params, root=root)
        first_report = json.loads(
            (root / stage.REPORT_DIR / "compliance_champion.json").read_text()
        )
        first_plot = list(csv.DictReader((root / stage.SCORES_PLOT).open()))

        version = mlflow.register_model(good.metrics["model_uri"], "brandforge-acme")
        mlflow.MlflowClient().set_registered_model_alias(
            "brandforge-acme", "champion", version.version
        )
        _recolour_off_palette(root / "data/brands/acme/images")
        prepare.run(params, root=root)
        champion = stage.write_champion(params, root=root)
        bad = train_lora.run(params, root=root)
        second = stage.run(params, root=root)
        yield {
            "root": root,
            "good_run": good.run_id,
            "bad_run": bad.run_id,
            "first": first,
            "first_report": first_report,
            "first_plot": first_plot,
            "champion": champion,
            "second": second,
        }
    get_settings.cache_clear()


def test_the_first_evaluation_compares_with_the_base_model(ab):
    first = ab["first"]
    assert first["champion"] == "base"
    assert (first["n_prompts"], first["n_seeds"]) == (6, 8)
    for name in ("compliance_score", "palette_adherence", "forbidden_share", "passed"):
        c = first["ab"][name]
        assert c["n"] == 48
        assert c["delta"] == pytest.approx(c["challenger"] - c["champion"], abs=2e-4)
        low, high = c["delta_ci95"]
        assert low <= c["delta"] <= high
        assert 0 <= c["win_rate"] <= 1
    entries = ab["first_report"]["images"]
    assert len(entries) == 48
    assert {(e["prompt"], e["seed"]) for e in entries} == {
        (p.replace("{brand}", "acme"), s)
        for p in yaml.safe_load((ab["root"] / "data/brands/acme/prompt_set.yaml").read_text())[
            "prompts"
        ]
        for s in range(100, 108)
    }
    assert all(0 <= e["score"] <= 1 for e in entries)
    # the held-out prompts (unlike every caption) are scored apart from the A/B
    for side in ("champion", "challenger"):
        held = first["held_out"][side]
        assert held["images"] == 2 * 8 and len(held["prompts"]) == 2
        assert 0 <= held["pass_rate"] <= 1 and 0 <= held["compliance_score"] <= 1
    # per prompt: the share passing the kit adds up to the A/B's overall share
    for side in ("champion", "challenger"):
        per_prompt = first["per_prompt"][side]
        assert [r["images"] for r in per_prompt["prompts"].values()] == [8] * 6
        rates = [r["pass_rate"] for r in per_prompt["prompts"].values()]
        assert sum(rates) / 6 == pytest.approx(first["ab"]["passed"][side], abs=1e-3)
        assert per_prompt["worst_pass_rate"] == min(rates)
    assert len(ab["first_plot"]) == 48 and set(ab["first_plot"][0]) == {
        "image",
        "prompt",
        "seed",
        "champion",
        "challenger",
    }


def test_an_adapter_trained_on_off_palette_images_is_rejected(ab):
    assert ab["champion"]["source"] == "registry" and ab["champion"]["version"] == "1"
    second = ab["second"]
    assert second["champion"] == "brandforge-acme v1"
    assert second["gate"]["passed"] is False and second["gate"]["decision"] == "reject"
    failed = {c["name"] for c in second["gate"]["checks"] if not c["passed"]}
    assert "forbidden_area" in failed, second["gate"]["reasons"]
    forbidden = second["ab"]["forbidden_share"]
    assert forbidden["challenger"] > forbidden["champion"]
    assert forbidden["delta_ci95"][0] > 0, "the increase is significant, not noise"
    assert second["ab"]["compliance_score"]["delta"] < 0
    assert any("forbidden" in r for r in second["gate"]["reasons"])

    metrics = json.loads((ab["root"] / stage.METRICS_FILE).read_text())
    assert metrics["gate"] == {k: second["gate"][k] for k in ("passed", "decision", "reasons")}
    assert metrics["ab"]["forbidden_share"] == forbidden
    assert metrics["held_out_pass_rate"] == {
        side: second["held_out"][side]["pass_rate"] for side in ("champion", "challenger")
    }
    assert metrics["worst_prompt_pass_rate"] == {
        side: second["per_prompt"][side]["worst_pass_rate"] for side in ("champion", "challenger")
    }
    summary = json.loads((ab["root"] / stage.REPORT_DIR / "summary.json").read_text())
    assert summary["per_prompt"] == json.loads(json.dumps(second["per_prompt"]))


def test_the_decision_and_the_reports_are_in_the_training_runs(ab):
    client = mlflow.MlflowClient()
    good, bad = client.get_run(ab["good_run"]), client.get_run(ab["bad_run"])
    assert good.data.tags["brandforge.eval.gate"] == "accept"
    assert good.data.tags["brandforge.eval.champion"] == "base"
    assert bad.data.tags["brandforge.eval.gate"] == "reject"
    assert "forbidden" in bad.data.tags["brandforge.eval.reasons"]
    assert bad.data.metrics["eval_gate_passed"] == 0
    assert bad.data.metrics["eval_forbidden_share_delta"] == pytest.approx(
        ab["second"]["ab"]["forbidden_share"]["delta"]
    )
    names = {Path(a.path).name for a in client.list_artifacts(bad.info.run_id, "eval")}
    assert {
        "champion_vs_challenger.png",
        "compliance_champion.json",
        "compliance_challenger.json",
        "drift_training_vs_champion.html",
        "drift_training_vs_challenger.html",
        "drift_champion_vs_challenger.html",
        "summary.json",
        "eval.json",
        "images",
    } <= names
    grid = Image.open(ab["root"] / stage.REPORT_DIR / "champion_vs_challenger.png")
    assert grid.width > grid.height  # one row per prompt: champion | challenger per seed


def test_fail_on_gate_sets_the_exit_status_and_still_records(ab, monkeypatch):
    from brandforge.cli import app

    root = ab["root"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.setenv("BRANDFORGE_ARTIFACT_ROOT", str(root / "mlartifacts"))
    (root / stage.METRICS_FILE).unlink()
    params = {**PARAMS, "eval": {**PARAMS["eval"], "fail_on_gate": True}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(
        app, ["evaluate", "run", "--params", str(root / "params.yaml"), "--root", str(root)]
    )
    assert result.exit_code == 1, result.output
    assert "REJECT" in result.output
    assert json.loads((root / stage.METRICS_FILE).read_text())["gate"]["passed"] is False


def test_per_prompt_kit_shows_the_worst_prompt_and_a_collapse_to_one_brand_colour():
    from evaluation.compliance import ComplianceReport

    def report(passed: bool, adherence: float, balance: float | None) -> ComplianceReport:
        metrics = {"palette_adherence": adherence, "palette_balance_distance": balance}
        return ComplianceReport(0.5, passed, [], metrics)

    reports = [
        report(True, 0.9, 0.1),
        report(False, 0.5, 0.3),
        report(True, 1.0, 0.9),  # a flat brand colour: passes, far from the kit's balance
        report(True, 1.0, 0.9),
    ]
    summary = stage.per_prompt_kit(reports, ["a", "a", "b", "b"])
    assert summary["worst_pass_rate"] == 0.5
    assert summary["prompts"] == {
        "a": {"images": 2, "pass_rate": 0.5, "palette_adherence": 0.7, "balance_distance": 0.2},
        "b": {"images": 2, "pass_rate": 1.0, "palette_adherence": 1.0, "balance_distance": 0.9},
    }
    no_shares = stage.per_prompt_kit([report(False, 0.2, None)], ["c"])
    assert no_shares["prompts"]["c"]["balance_distance"] is None


# ---------------------------------------------------------------------------------------------
# The prompt set


@pytest.fixture
def kit():
    return load_brand_kit(Path(__file__).parent / "data" / "acme.yaml")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no eval prompt set"),
        ("prompts: [a\n", "not valid YAML"),
        ("prompts: [a]\nseeds: [1, 2]\nsteps: 3\n", "steps"),
        ("prompts: [a]\nseeds: [1]\n", "seeds"),
        ("prompts: []\nseeds: [1, 2]\n", "prompts"),
        ("prompts: [a]\nseeds: [1, 1]\n", "distinct"),
    ],
    ids=["missing", "yaml", "unknown-key", "one-seed", "no-prompts", "duplicate-seeds"],
)
def test_a_bad_prompt_set_names_the_file_and_the_problem(tmp_path, kit, content, message):
    path = tmp_path / "prompt_set.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(stage.EvaluationError, match=message) as err:
        stage.load_prompt_set(path, kit)
    assert str(path) in str(err.value)


def test_held_out_prompts_must_not_be_training_captions(tmp_path, kit):
    path = tmp_path / "prompt_set.yaml"
    path.write_text('prompts: [a]\nseeds: [1, 2]\nheld_out: ["{brand} billboard"]\n')
    assert stage.load_held_out(path, kit, ["acme poster, teal"]) == ["acme billboard"]
    with pytest.raises(stage.EvaluationError, match="'acme billboard' is a training caption"):
        stage.load_held_out(path, kit, ["x", "ACME  billboard"])
    path.write_text("prompts: [a]\nseeds: [1, 2]\n")
    assert stage.load_held_out(path, kit, []) == []  # optional


def test_the_prompt_set_fills_in_the_trigger_phrase(tmp_path, kit):
    path = tmp_path / "prompt_set.yaml"
    path.write_text('prompts: ["{brand} banner", "plain"]\nseeds: [3, 4]\n')
    assert stage.load_prompt_set(path, kit) == (["acme banner", "plain"], [3, 4])
