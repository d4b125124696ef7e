"""The registry's rules over MLflow: versions, checked alias moves, history, lineage.

Aliases, not stages (DESIGN.md decision 4): `challenger` (passed the offline gates), `canary`
(in rollout), `champion` (in production). Everything a release manager or auditor needs is on
the model version's tags, so the MLflow UI shows it:

- lineage: `brandforge.brand`, `.dataset_hash`, `.git_commit`, `.base_identity`,
  `.base_source`, `.base_model_version` (where the base is stored in MLflow), `.params_hash`;
- the offline evaluation: `brandforge.eval.gate` (accept/reject), `.eval.reasons`,
  `.eval.champion` and the A/B deltas `brandforge.eval.<metric>_delta`;
- `brandforge.status`: `candidate`, `rejected` (failed its gates) or `archived`;
- the image sizes it serves: `brandforge.native_size`, `brandforge.max_size` (registry.limits);
- one `brandforge.history.<UTC time>` tag per event: what happened, who, why.

The registered model keeps `brandforge.champion_history` (the versions that held `champion`, in
order), which `rollback` walks back.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

ALIASES = ("challenger", "canary", "champion")
PROMOTABLE = ("canary", "champion")
STATUS_TAG = "brandforge.status"
HISTORY_PREFIX = "brandforge.history."
CHAMPION_HISTORY = "brandforge.champion_history"
FORCED_TAG = "brandforge.forced"
NO_REASON = "(no reason given)"


class RegistryError(RuntimeError):
    """A registry action that cannot or must not happen; the message says why and what to do."""


def actor() -> str:
    """Who is acting: `BRANDFORGE_USER`, else the login name."""
    who = os.environ.get("BRANDFORGE_USER")
    if who:
        return who
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def client() -> Any:
    import mlflow

    from brandforge.settings import get_settings

    mlflow.set_tracking_uri(get_settings().resolved_tracking_uri())
    return mlflow.MlflowClient()


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    run_id: str | None
    source: str
    created: datetime
    tags: dict[str, str]
    aliases: list[str]

    @property
    def status(self) -> str:
        return self.tags.get(STATUS_TAG, "candidate")

    @property
    def gate(self) -> str:
        return self.tags.get("brandforge.eval.gate", "-")

    def history(self) -> list[tuple[str, str]]:
        """(UTC time, event) in time order."""
        return sorted(
            (k.removeprefix(HISTORY_PREFIX), v)
            for k, v in self.tags.items()
            if k.startswith(HISTORY_PREFIX)
        )


def _info(mv: Any) -> VersionInfo:
    return VersionInfo(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id,
        source=mv.source,
        created=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
        tags=dict(mv.tags or {}),
        aliases=list(getattr(mv, "aliases", []) or []),
    )


def _not_found(err: Exception) -> bool:
    return getattr(err, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def get_version(c: Any, name: str, version: str | int) -> VersionInfo:
    from mlflow.exceptions import MlflowException

    try:
        return _info(c.get_model_version(name, str(version)))
    except MlflowException as err:
        if _not_found(err):
            raise RegistryError(
                f"{name} has no version {version} (`brandforge registry list {name}`)"
            ) from None
        raise


def alias_version(c: Any, name: str, alias: str) -> VersionInfo | None:
    """The version holding `alias`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return _info(c.get_model_version_by_alias(name, alias))
    except MlflowException as err:
        if _not_found(err) or getattr(err, "error_code", "") == "INVALID_PARAMETER_VALUE":
            return None
        raise


def model_names(c: Any) -> list[str]:
    return sorted(m.name for m in c.search_registered_models())


def versions(c: Any, name: str) -> list[VersionInfo]:
    """Every version of `name`, newest first, with its aliases."""
    from mlflow.exceptions import MlflowException

    try:
        model = c.get_registered_model(name)
    except MlflowException as err:
        if _not_found(err):
            raise RegistryError(
                f"no registered model {name!r}; known: {', '.join(model_names(c)) or 'none'}"
            ) from None
        raise
    by_version: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    found = [_info(mv) for mv in c.search_model_versions(f"name='{name}'")]
    found = [replace(v, aliases=sorted(by_version.get(v.version, []))) for v in found]
    return sorted(found, key=lambda v: int(v.version), reverse=True)


# ---------------------------------------------------------------------------------------------
# Writing: every event is a tag on the version


def _stamp() -> str:
    # Tag keys allow letters, digits, `_ - . / ` and spaces: no colons.
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def record(
    c: Any, name: str, version: str, event: str, *, why: str, who: str | None = None
) -> None:
    """Add one history event to the version's tags."""
    text = f"{event} by {who or actor()}: {why}"
    key = HISTORY_PREFIX + _stamp()
    c.set_model_version_tag(name, version, key, text[:5000])
    time.sleep(0.001)  # distinct keys for events recorded within one microsecond


def artifacts_present(source: str) -> bool:
    """Whether the version's model can be loaded: its MLmodel file is in the artifact store."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        names = {a.path.rsplit("/", 1)[-1] for a in mlflow.artifacts.list_artifacts(source)}
    except (MlflowException, OSError):
        return False
    return "MLmodel" in names or "model_index.json" in names


def move_alias(
    c: Any,
    name: str,
    alias: str,
    version: str,
    *,
    why: str,
    force: bool = False,
    who: str | None = None,
) -> VersionInfo:
    """Point `alias` at `version` after the checks; record the move. Returns the version.

    A rejected version may hold `canary` or `champion` only with `force` and a reason; an
    archived one never; a version whose artifacts are missing never (it could not be served).
    """
    if alias not in ALIASES:
        raise RegistryError(f"unknown alias {alias!r}; use one of {', '.join(ALIASES)}")
    target = get_version(c, name, version)
    if target.status == "archived":
        raise RegistryError(f"{name} v{version} is archived; it cannot become {alias}")
    if target.status == "rejected" and alias in PROMOTABLE:
        if not force:
            reasons = target.tags.get("brandforge.eval.reasons", "see its tags")
            raise RegistryError(
                f"{name} v{version} failed its gates ({reasons}); "
                f"use --force with --reason to make it {alias} anyway"
            )
        if not why.strip() or why == NO_REASON:
            raise RegistryError("--force needs a --reason: it is recorded on the version")
    if not artifacts_present(target.source):
        raise RegistryError(
            f"{name} v{version}: its model artifacts are missing at {target.source}; "
            f"{alias} would point to a model that cannot be loaded"
        )
    previous = alias_version(c, name, alias)
    c.set_registered_model_alias(name, alias, version)
    forced = " (forced past a rejected gate)" if force and target.status == "rejected" else ""
    record(c, name, version, f"alias {alias} set{forced}", why=why, who=who)
    if forced:
        c.set_model_version_tag(name, version, FORCED_TAG, "true")
    if previous is not None and previous.version != version:
        record(c, name, previous.version, f"alias {alias} moved to v{version}", why=why, who=who)
    return target


def _champion_history(c: Any, name: str) -> list[str]:
    tags = c.get_registered_model(name).tags or {}
    try:
        return [str(v) for v in json.loads(tags.get(CHAMPION_HISTORY, "[]"))]
    except json.JSONDecodeError:
        return []


def promote(
    c: Any,
    name: str,
    to: str,
    *,
    version: str | None = None,
    why: str = NO_REASON,
    force: bool = False,
) -> VersionInfo:
    """`canary` or `champion` to a version (default: the canary, else the challenger)."""
    if to not in PROMOTABLE:
        raise RegistryError(f"--to must be one of {', '.join(PROMOTABLE)}, not {to!r}")
    if version is None:
        candidates = ("challenger",) if to == "canary" else ("canary", "challenger")
        for alias in candidates:
            holder = alias_version(c, name, alias)
            if holder is not None:
                version = holder.version
                break
        else:
            raise RegistryError(
                f"{name} has no {' or '.join(candidates)} alias to promote; pass --version"
            )
    current = alias_version(c, name, to)
    if current is not None and current.version == str(version):
        raise RegistryError(f"{name} v{version} already holds {to}")
    target = move_alias(c, name, to, str(version), why=why, force=force)
    if to == "champion":
        history = _champion_history(c, name)
        if current is not None and (not history or history[-1] != current.version):
            history.append(current.version)  # a champion set outside this tool
        history.append(target.version)
        c.set_registered_model_tag(name, CHAMPION_HISTORY, json.dumps(history[-50:]))
        canary = alias_version(c, name, "canary")
        if canary is not None and canary.version == target.version:
            c.delete_registered_model_alias(name, "canary")
            record(c, name, target.version, "alias canary removed (now champion)", why=why)
    return target


def rollback(c: Any, name: str, *, why: str = NO_REASON) -> tuple[VersionInfo, VersionInfo]:
    """Champion back to the previous champion that can still serve; returns (from, to)."""
    current = alias_version(c, name, "champion")
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back")
    history = _champion_history(c, name)
    while history and history[-1] == current.version:
        history.pop()
    while history:
        candidate = get_version(c, name, history[-1])
        if candidate.status != "archived" and artifacts_present(candidate.source):
            break
        history.pop()
    else:
        raise RegistryError(
            f"{name}: no earlier champion to roll back to (history holds none that can serve); "
            "promote a version with `brandforge registry promote`"
        )
    c.set_registered_model_alias(name, "champion", candidate.version)
    c.set_registered_model_tag(name, CHAMPION_HISTORY, json.dumps(history))
    record(
        c,
        name,
        candidate.version,
        f"alias champion restored (rollback from v{current.version})",
        why=why,
    )
    record(c, name, current.version, f"alias champion rolled back to v{candidate.version}", why=why)
    return current, candidate


def archive(c: Any, name: str, version: str, *, why: str = NO_REASON) -> VersionInfo:
    """Retire a version: its aliases go, it can never be promoted again. Not the champion."""
    target = get_version(c, name, version)
    holder = alias_version(c, name, "champion")
    if holder is not None and holder.version == target.version:
        raise RegistryError(
            f"{name} v{version} is the champion; promote another version or roll back first"
        )
    for alias in list(versions_aliases(c, name, target.version)):
        c.delete_registered_model_alias(name, alias)
        record(c, name, target.version, f"alias {alias} removed (archived)", why=why)
    c.set_model_version_tag(name, target.version, STATUS_TAG, "archived")
    record(c, name, target.version, "archived", why=why)
    return get_version(c, name, version)


def versions_aliases(c: Any, name: str, version: str) -> list[str]:
    aliases = c.get_registered_model(name).aliases or {}
    return sorted(a for a, v in aliases.items() if str(v) == str(version))
