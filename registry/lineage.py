"""Lineage of a version: version → training run → dataset hash → git commit → base model.

It ends with the commands that bring back the exact dataset the version was trained on: the git
commit holds the code, `params.yaml` and the brand's `.dvc` pointers (or the stage that generates
it), `dvc pull` restores the brand data they name, `dvc repro prepare` derives `data/prepared`
(from DVC's cache when it was stored), and `data/prepared/dataset.json` must then show the
version's dataset hash, which `--verify` checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brandforge.pipeline import PREPARED_DIR
from registry.core import RegistryError, VersionInfo, get_version


@dataclass(frozen=True)
class Lineage:
    version: VersionInfo
    run_id: str | None
    experiment: str | None
    run_status: str | None
    dataset_hash: str
    git_commit: str
    base_identity: str
    base_source: str
    base_model_version: str | None

    @property
    def commit(self) -> str:
        return self.git_commit.removesuffix("-dirty")

    def reproduce_commands(self) -> list[str]:
        """Shell commands, run in a clone of the project, that restore the version's dataset."""
        return [
            f"git checkout {self.commit}",
            "dvc pull --allow-missing   # the data that commit tracks, from the DVC remote",
            "dvc repro prepare",
            f"brandforge registry lineage {self.version.name} {self.version.version} --verify",
        ]


def lineage(c: Any, name: str, version: str) -> Lineage:
    info = get_version(c, name, version)
    tags = info.tags
    if "brandforge.dataset_hash" not in tags:
        raise RegistryError(
            f"{name} v{version} has no BrandForge lineage tags (was it registered by "
            "`brandforge register`?)"
        )
    run_status = experiment = None
    if info.run_id:
        run = c.get_run(info.run_id)
        run_status = run.info.status
        experiment = c.get_experiment(run.info.experiment_id).name
    return Lineage(
        version=info,
        run_id=info.run_id,
        experiment=experiment,
        run_status=run_status,
        dataset_hash=tags["brandforge.dataset_hash"],
        git_commit=tags.get("brandforge.git_commit", "unknown"),
        base_identity=tags.get("brandforge.base_identity", "unknown"),
        base_source=tags.get("brandforge.base_source", "unknown"),
        base_model_version=tags.get("brandforge.base_model_version"),
    )


def format_lineage(ln: Lineage) -> str:
    v = ln.version
    base_where = (
        f"stored in MLflow as {ln.base_model_version}"
        if ln.base_model_version
        else "referenced by id and revision (Hugging Face)"
        if ln.base_source == "hf"
        else "not stored in MLflow"
    )
    lines = [
        f"{v.name} v{v.version}  ({', '.join(v.aliases) or 'no alias'}; {v.status}; gate {v.gate})",
        f"  model:      {v.source}",
        f"  run:        {ln.run_id} in {ln.experiment} ({ln.run_status})",
        f"  dataset:    {ln.dataset_hash}",
        f"  git commit: {ln.git_commit}"
        + (
            "  (trained with uncommitted changes to tracked files)"
            if ln.git_commit.endswith("-dirty")
            else ""
        ),
        f"  base:       {ln.base_identity} ({ln.base_source}), {base_where}",
        "",
        "Reproduce its dataset (in a clone of the project):",
        *[f"  {cmd}" for cmd in ln.reproduce_commands()],
    ]
    return "\n".join(lines)


def verify_dataset(ln: Lineage, root: Path) -> tuple[bool, str]:
    """Whether `data/prepared` under root is the version's dataset, and what was found."""
    path = root / PREPARED_DIR / "dataset.json"
    if not path.is_file():
        return False, f"{path}: no prepared dataset (run the commands above)"
    found = json.loads(path.read_text()).get("hash")
    if found == ln.dataset_hash:
        return True, f"{path}: dataset hash {found} matches {ln.version.name} v{ln.version.version}"
    return False, f"{path}: dataset hash {found} differs from the version's {ln.dataset_hash}"
