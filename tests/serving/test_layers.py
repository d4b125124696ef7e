"""The serving package's layers import only downward (DESIGN.md, `serving/`):
cli → runtime → app → api → {catalog, delivery, rollout, campaigns, assets, auth, generator}
→ {db, errors, text, config}. Nothing below `api` imports `api` or `cli`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVING = Path(__file__).parents[2] / "serving"
LAYERS = {
    "cli": 5,
    "runtime": 4,
    "app": 3,
    "api": 2,
    **dict.fromkeys(
        [
            "catalog",
            "delivery",
            "rollout",
            "campaigns",
            "assets",
            "auth",
            "generator",
            "policy",
            "privacy",
            "admission",
            "scheduler",
        ],
        1,
    ),
    **dict.fromkeys(["db", "errors", "text", "config", "tls"], 0),
}


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "serving" and len(parts) > 1 else None


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


def _modules() -> list[Path]:
    return sorted(p for p in SERVING.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SERVING)))
def test_imports_go_downward(path):
    relative = path.relative_to(SERVING)
    own = relative.parts[0].removesuffix(".py")
    if own == "__init__":
        return
    assert own in LAYERS, f"serving/{relative}: a new top-level part needs a layer here"
    upward = [
        module
        for module in _imports(path)
        if (part := _part(module)) is not None and LAYERS.get(part, 99) > LAYERS[own]
    ]
    assert not upward, f"serving/{relative} imports upward: {upward}"
