"""The whole pipeline against the production tracking server, by setting the tracking URI alone.

`dvc repro` of the micro project (tests/e2e) with `MLFLOW_TRACKING_URI` naming a real
`brandforge mlflow-server` on PostgreSQL: the training run, its A/B evaluation and the registered
version (with the base model stored beside it) all land on the server, and the registry CLI reads
them back from there.
"""

from __future__ import annotations

import json

import mlflow
import pytest

from tests.e2e.test_pipeline import BIN, _run, reproduce

pytestmark = pytest.mark.e2e


def test_dvc_repro_tracks_and_registers_on_the_server(mlflow_server, tmp_path):
    repo = tmp_path / "repo"
    env = reproduce(repo, {"MLFLOW_TRACKING_URI": mlflow_server})
    assert not (repo / "mlflow.db").exists(), "nothing went to the embedded store"
    train = json.loads((repo / "metrics/train.json").read_text())
    registered = json.loads((repo / "metrics/register.json").read_text())

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(train["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["brandforge.eval.gate"] in ("accept", "reject")
    version = client.get_model_version("brandforge-acme", registered["version"])
    assert version.run_id == run.info.run_id
    assert version.tags["brandforge.base_model_version"].startswith("brandforge-bases/")

    out = _run(
        [str(BIN / "brandforge"), "registry", "lineage", "brandforge-acme", registered["version"]],
        repo,
        env,
    ).stdout
    assert train["dataset_hash"] in out and "stored in MLflow as brandforge-bases/" in out
