"""A registry holding a brand with a champion (and a second version), for the serving tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

from tests.registry.test_registry import Project, adapter_dir  # noqa: F401  (fixture)


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    root: Path
    name: str  # registered model of brand "acme"
    env: dict[str, str]  # what a server process needs to see the same stores


@pytest.fixture(scope="session")
def other_adapter_dir(tmp_path_factory, adapter_dir) -> Path:  # noqa: F811
    """A second adapter: the first one's LoRA-B weights negated, so it draws differently."""
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("adapter2")
    weights = load_file(adapter_dir / "pytorch_lora_weights.safetensors")
    flipped = {k: (-v if "lora_B" in k else v) for k, v in weights.items()}
    save_file(flipped, out / "pytorch_lora_weights.safetensors")
    return out


@pytest.fixture(scope="session")
def blank_adapter_dir(tmp_path_factory, adapter_dir) -> Path:  # noqa: F811
    """An adapter whose weights went NaN (a diverged training): the model draws black frames,
    blank and off-palette, so every image fails compliance with score 0."""
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("adapter-blank")
    weights = load_file(adapter_dir / "pytorch_lora_weights.safetensors")
    nan = {k: (v * float("nan") if "lora_B" in k else v) for k, v in weights.items()}
    save_file(nan, out / "pytorch_lora_weights.safetensors")
    return out


@pytest.fixture(scope="session")
def served_registry(
    tmp_path_factory,
    tiny_sd_dir,
    adapter_dir,  # noqa: F811
    other_adapter_dir,
) -> Registry:
    """brandforge-acme v1 (champion) and v2 (challenger, another adapter), on a store of their
    own."""
    from brandforge.settings import get_settings
    from registry.core import client, promote

    root = tmp_path_factory.mktemp("served")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {
        "MLFLOW_TRACKING_URI": uri,
        "BRANDFORGE_ARTIFACT_ROOT": str(root / "mlartifacts"),
        "BRANDFORGE_CACHE_DIR": str(root / "cache"),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        get_settings.cache_clear()
        mlflow.set_tracking_uri(uri)
        project = Project(root / "project", "acme", adapter_dir, tiny_sd_dir)
        project.train()
        project.register()
        project.adapter = other_adapter_dir
        project.train()
        project.register()
        promote(client(), project.name, "champion", version="1", why="serving tests")
        get_settings.cache_clear()
    return Registry(uri, root, project.name, env)


@pytest.fixture
def registry_env(served_registry, monkeypatch) -> Registry:
    """The served registry's environment in this process."""
    from brandforge.settings import get_settings

    for k, v in served_registry.env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    mlflow.set_tracking_uri(served_registry.tracking_uri)
    yield served_registry
    get_settings.cache_clear()
