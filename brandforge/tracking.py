"""MLflow set-up and lineage facts shared by every stage that logs a run."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

from brandforge.settings import Settings, get_settings

log = logging.getLogger(__name__)


def experiment_name(brand: str, settings: Settings | None = None) -> str:
    """One experiment per brand, so Compare in the MLflow UI lines up runs of one brand."""
    settings = settings or get_settings()
    return f"{settings.experiment_prefix}-{brand}"


def registered_model_name(brand: str, settings: Settings | None = None) -> str:
    """The brand's model in the registry: `brandforge-<brand>`, beside its experiment."""
    return experiment_name(brand, settings)


def setup_mlflow(brand: str, *, settings: Settings | None = None) -> str:
    """Point MLflow at the configured store and select (or create) the brand's experiment."""
    settings = settings or get_settings()
    return use_experiment(experiment_name(brand, settings), settings=settings)


def use_experiment(name: str, *, settings: Settings | None = None) -> str:
    """Point MLflow at the configured store and select (or create) the experiment `name`."""
    import mlflow

    settings = settings or get_settings()
    uri = settings.resolved_tracking_uri()
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(name) is None:
        artifact_location = None
        # A local store gets its artifacts in a known folder; a tracking server decides itself.
        if not uri.startswith(("http://", "https://", "databricks")):
            artifact_location = Path(settings.artifact_root).resolve().as_uri()
        try:
            mlflow.create_experiment(name, artifact_location=artifact_location)
        except mlflow.exceptions.MlflowException:
            # Created concurrently by another process: fine, use it.
            if mlflow.get_experiment_by_name(name) is None:
                raise
    experiment = mlflow.set_experiment(name)
    return str(experiment.experiment_id)


def git_commit(root: Path = Path(".")) -> str:
    """HEAD's commit, suffixed `-dirty` when tracked files changed; `unknown` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def params_hash(values: dict[str, Any]) -> str:
    """A stable short hash of a params mapping (key order does not matter)."""
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` → `{"a.b": 1}`, the shape MLflow params want."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def run_url(run: Any) -> str:
    """Where to look at a run: the server's page, or the `mlflow ui` command for a local store."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    path = f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{path}"
    return f"`mlflow ui --backend-store-uri {uri}` then http://127.0.0.1:5000/{path}"
