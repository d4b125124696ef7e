"""The `register` stage: the adapter just trained and evaluated becomes a registered version.

Every adapter is registered, passed or not, so the registry is the complete record. Its tags
carry its lineage and its evaluation (see `registry.core`); when the gates passed, the
`challenger` alias moves to it; when they did not, it is tagged `rejected` and no alias moves.
Registering the same training run again (e.g. after a re-evaluation) updates its version
instead of adding one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from brandforge.params import Params
from brandforge.pipeline import BASE_DIR, PREPARED_DIR, read_base_reference
from registry.core import (
    STATUS_TAG,
    RegistryError,
    alias_version,
    artifacts_present,
    client,
    move_alias,
    record,
)
from registry.limits import MAX_COST_TAG, MAX_SIZE_TAG, NATIVE_SIZE_TAG, cost_tags, size_tags
from registry.sampler import GUIDANCE_TAG, STEPS_TAG, sampler_tags

log = logging.getLogger(__name__)

TRAIN_METRICS = Path("metrics/train.json")
EVAL_METRICS = Path("metrics/eval.json")
REGISTER_METRICS = Path("metrics/register.json")
BRAND_KIT_TAG = "brandforge.brand_kit"
# The A/B numbers worth seeing on the version itself.
EVAL_SUMMARY = ("compliance_score", "passed", "palette_adherence", "forbidden_share")


def _read(path: Path, stage: str) -> dict[str, Any]:
    if not path.is_file():
        raise RegistryError(f"{path}: missing; run `dvc repro {stage}` first")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def version_tags(
    trained: dict[str, Any], evaluation: dict[str, Any], run_tags: dict[str, str]
) -> dict[str, str]:
    """Lineage and evaluation tags for the version (all strings, as MLflow stores them)."""
    gate = evaluation["gate"]
    tags = {
        "brandforge.brand": str(trained.get("brand")),
        "brandforge.dataset_hash": str(trained.get("dataset_hash")),
        "brandforge.base_identity": str(trained.get("base_identity")),
        "brandforge.git_commit": run_tags.get("brandforge.git_commit", "unknown"),
        "brandforge.params_hash": run_tags.get("brandforge.params_hash", "unknown"),
        "brandforge.base_source": run_tags.get("brandforge.base_source", "unknown"),
        "brandforge.eval.gate": gate["decision"],
        "brandforge.eval.reasons": "; ".join(gate["reasons"])[:5000],
        "brandforge.eval.champion": str(evaluation.get("champion")),
        STATUS_TAG: "candidate" if gate["passed"] else "rejected",
    }
    for name in EVAL_SUMMARY:
        c = evaluation["ab"].get(name)
        if c is not None:
            lo, hi = c["delta_ci95"]
            tags[f"brandforge.eval.{name}_delta"] = f"{c['delta']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
    return tags


def native_size(run_params: dict[str, str], base_resolution: int) -> int:
    """The resolution the adapter was trained at: the run's `base.resolution` param (what the
    train stage drew its latents at), else the base model's own."""
    try:
        return int(run_params["base.resolution"])
    except (KeyError, ValueError):
        return base_resolution


def _log_brand_files(c: Any, run_id: str, kit_file: Path, brand_dir: Path) -> None:
    """Log the logo and font the kit names (files of the brand folder) with the training run,
    under `brand/`: the serving tier composes campaign assets with them."""
    kit = yaml.safe_load(kit_file.read_text()) or {}
    wanted = [(kit.get("logo") or {}).get("file"), kit.get("font_file")]
    present = {f.path for f in c.list_artifacts(run_id, "brand")}
    for rel in filter(None, wanted):
        source = brand_dir / rel
        target = f"brand/{rel}"
        if target in present:
            continue
        if not source.is_file():
            log.warning(
                "%s: named by the brand kit but missing; assets are composed without it", source
            )
            continue
        parent = str(Path("brand") / Path(rel).parent).rstrip("/.")
        c.log_artifact(run_id, str(source), artifact_path=parent)


def register(params: Params, *, root: Path = Path(".")) -> dict[str, Any]:
    """Register (or update) the version of the trained adapter; move `challenger` if it passed."""
    import mlflow

    from brandforge.tracking import registered_model_name, setup_mlflow
    from registry.bases import store_base

    root = Path(root)
    trained = _read(root / TRAIN_METRICS, "train")
    evaluation = _read(root / EVAL_METRICS, "evaluate")
    if evaluation.get("challenger") != trained.get("model_uri"):
        raise RegistryError(
            f"{root / EVAL_METRICS} evaluated {evaluation.get('challenger')}, not the adapter "
            f"just trained ({trained.get('model_uri')}); run `dvc repro evaluate`"
        )
    brand = params.data.brand
    name = registered_model_name(brand)
    setup_mlflow(brand)
    c = client()
    run = c.get_run(trained["mlflow_run_id"])
    if not artifacts_present(trained["model_uri"]):
        raise RegistryError(f"{trained['model_uri']}: the logged adapter's artifacts are missing")

    tags = version_tags(trained, evaluation, dict(run.data.tags))
    kit_file = root / PREPARED_DIR / "brand.yaml"
    if kit_file.is_file():
        # The serving tier scores every image against the kit the version was trained for.
        kit = json.dumps(yaml.safe_load(kit_file.read_text()), separators=(",", ":"))
        if len(kit) > 5000:
            raise RegistryError(f"{kit_file}: the brand kit is over 5000 characters as JSON")
        tags[BRAND_KIT_TAG] = kit
    else:
        log.warning("%s: no brand kit; the version cannot be scored when served", kit_file)
    if kit_file.is_file():
        _log_brand_files(c, run.info.run_id, kit_file, root / params.data.brands_dir / brand)
    base_ref = read_base_reference(root / BASE_DIR)
    native = native_size(dict(run.data.params), base_ref.resolution)
    try:
        tags.update(size_tags(native, max_size=params.registration.max_size))
        tags.update(cost_tags(params.registration.max_cost))
        # Serving draws with what the gate judged unless a request says otherwise.
        tags.update(sampler_tags(params.eval.num_inference_steps, params.eval.guidance_scale))
    except ValueError as err:
        raise RegistryError(f"params.yaml: {err}") from None
    base_version = store_base(c, root / BASE_DIR, base_ref)
    if base_version:
        tags["brandforge.base_model_version"] = base_version

    existing = [
        mv
        for mv in c.search_model_versions(f"name='{name}'")
        if mv.run_id == run.info.run_id and mv.source == trained["model_uri"]
    ]
    if existing:
        version = str(existing[0].version)
        log.info("%s v%s already holds this training run; updating its tags", name, version)
        event = "re-registered (evaluation updated)"
    else:
        mv = mlflow.register_model(trained["model_uri"], name, tags=tags)
        version = str(mv.version)
        event = "registered"
    for key, value in tags.items():
        c.set_model_version_tag(name, version, key, value)
    gate = evaluation["gate"]
    why = f"gates {'passed' if gate['passed'] else 'failed'}: {'; '.join(gate['reasons'])}"
    record(c, name, version, event, why=why, who="register stage")
    alias = None
    if gate["passed"]:
        move_alias(
            c, name, "challenger", version, why="passed the offline gates", who="register stage"
        )
        alias = "challenger"
    else:
        log.warning("%s v%s is rejected by its gates: no alias moves", name, version)
        holder = alias_version(c, name, "challenger")
        if holder is not None and holder.version == version:  # re-evaluated and now failing
            c.delete_registered_model_alias(name, "challenger")
            record(c, name, version, "alias challenger removed", why=why, who="register stage")
    result = {
        "registered_model": name,
        "version": version,
        "gate": gate["decision"],
        "alias": alias,
        "base_model_version": base_version,
        "native_size": int(tags[NATIVE_SIZE_TAG]),
        "max_size": int(tags[MAX_SIZE_TAG]),
        "max_cost": int(tags[MAX_COST_TAG]),
        "sampler": {"steps": int(tags[STEPS_TAG]), "guidance": float(tags[GUIDANCE_TAG])},
        "model_uri": f"models:/{name}/{version}",
    }
    out = root / REGISTER_METRICS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result
