"""Base models in MLflow, so a registered adapter loads anywhere the tracking server is reachable.

An adapter is only half a model. When its base is the embedded model or a local folder, that
folder exists on the training machine only, so `register` also stores the base in MLflow: once
per content identity, as a version of the registered model `<prefix>-bases` tagged
`brandforge.base_identity`. A Hugging Face base is referenced by id and revision instead (the
`mlflow.diffusers` flavor records both). `load_version_pipeline` resolves either.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from brandforge.pipeline import BaseReference
from brandforge.settings import get_settings
from registry.core import STATUS_TAG, RegistryError

log = logging.getLogger(__name__)

IDENTITY_TAG = "brandforge.base_identity"


def bases_model_name() -> str:
    return f"{get_settings().experiment_prefix}-bases"


def find_base_version(c: Any, identity: str) -> Any | None:
    """The MLflow model version holding the base with this identity, if stored."""
    name = bases_model_name()
    if not c.search_registered_models(f"name='{name}'"):
        return None
    for mv in c.search_model_versions(f"name='{name}'"):
        if (mv.tags or {}).get(IDENTITY_TAG) == identity:
            return mv
    return None


def store_base(c: Any, base_dir: Path, ref: BaseReference) -> str | None:
    """Store a local base folder in MLflow unless already there; `<name>/<version>` or None.

    None for a Hugging Face base: it is referenced by id and revision, not copied.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from brandforge.tracking import use_experiment

    if ref.source == "hf":
        return None
    name = bases_model_name()
    found = find_base_version(c, ref.identity)
    if found is not None:
        return f"{name}/{found.version}"
    folder = Path(ref.location(base_dir))
    if not (folder / "model_index.json").is_file():
        raise RegistryError(f"{folder}: the base model folder is missing; run `dvc repro base`")
    use_experiment(name)
    log.info("storing base %s (%s) in MLflow as %s", ref.identity[:12], ref.source, name)
    with mlflow.start_run(run_name=f"base-{ref.identity[:12]}") as run:
        mlflow.set_tags({IDENTITY_TAG: ref.identity, "brandforge.base_source": ref.source})
        mlflow.log_artifacts(str(folder), artifact_path="base")
        source = mlflow.get_artifact_uri("base")
    try:
        c.create_registered_model(name, description="Base models of BrandForge adapters")
    except MlflowException as err:
        if getattr(err, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
    mv = c.create_model_version(
        name,
        source=source,
        run_id=run.info.run_id,
        tags={IDENTITY_TAG: ref.identity, STATUS_TAG: "base model"},
    )
    # Two registrations racing may both have stored it; the first version is the one used.
    first = find_base_version(c, ref.identity)
    return f"{name}/{first.version if first is not None else mv.version}"


def stored_base_dir(tags: dict[str, str]) -> Path | None:
    """The local folder of a version's base stored in MLflow (downloaded once per identity into
    `BRANDFORGE_CACHE_DIR/bases/`), or None when the base is not stored there (Hugging Face)."""
    import mlflow

    stored = tags.get("brandforge.base_model_version")
    if not stored:
        return None
    base_name, base_version = stored.rsplit("/", 1)
    cache = get_settings().cache_dir / "bases" / tags.get(IDENTITY_TAG, base_version)
    for folder in (cache, cache / "base"):  # where the artifact store put model_index.json
        if (folder / "model_index.json").is_file():
            return folder
    cache.mkdir(parents=True, exist_ok=True)
    mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{base_name}/{base_version}", dst_path=str(cache)
    )
    return cache if (cache / "model_index.json").is_file() else cache / "base"


def load_version_pipeline(name: str, version: str, *, device: str = "cpu") -> Any:
    """The diffusers pipeline of a registered version: its base (from MLflow when stored there,
    or the Hugging Face id at its revision) with the adapter applied."""
    import mlflow.diffusers

    from registry.core import client, get_version

    info = get_version(client(), name, version)
    adapter = mlflow.diffusers.load_model(f"models:/{name}/{version}")
    local = stored_base_dir(info.tags)
    base = str(local) if local is not None else None
    return adapter.load_pipeline(base_model=base, device=device, torch_dtype=None)
