"""Shared fixtures of the serving tests: a registry holding a brand with a champion (and a second
version), adapters, and empty serving databases on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from sqlalchemy import Engine

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


@dataclass(frozen=True)
class PaletteAdapters:
    base: Path  # the tiny base with the colour-preserving VAE (identity "tiny-colour-0")
    good: Path  # trained on the demo brand's on-palette images
    bad: Path  # trained on the same images recoloured off-palette


OFF_PALETTE = {  # brand colour → what the bad adapter's training images show instead
    (0x1A, 0x9E, 0x9E): (0xDC, 0x28, 0x28),  # teal → the kit's forbidden red
    (0xF5, 0xF5, 0xF5): (120, 60, 160),  # white → purple
    (0xF5, 0x8C, 0x1E): (40, 90, 30),  # orange → dark green
}


@pytest.fixture(scope="session")
def palette_adapters(tmp_path_factory) -> PaletteAdapters:
    """Two adapters really trained on the colour-VAE tiny base: one on the demo brand, one on
    its images recoloured off-palette (what a mislabelled dataset version would produce).

    The tiny model learns colours only partly in 250 steps, so the bad adapter is saved at
    strength 6 (its LoRA-B weights times six, as `set_adapters(..., adapter_weights=[6])` would
    apply it): its images turn green and red, and their mean compliance score drops by about
    0.12 against the good one's (0.32 vs 0.44, sd 0.05, over 24 images at 3 steps), well beyond
    the rollout's 0.05 threshold and the noise of a few dozen images. At strength 1 the drop
    (~0.02) is within that noise.
    """
    import numpy as np
    from PIL import Image
    from safetensors.torch import load_file, save_file

    from brandforge.params import parse_params
    from brandforge.pipeline import LORA_DIR
    from brandforge.settings import get_settings
    from tests.tiny_models import TINY_LORA_TRAIN, build_tiny_sd
    from training import demo_brand, prepare, train_lora

    root = tmp_path_factory.mktemp("palette-adapters")
    params = parse_params(
        {"data": {"demo": {"n_images": 24}}, "train": {**TINY_LORA_TRAIN, "max_steps": 250}}
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("BRANDFORGE_ARTIFACT_ROOT", str(root / "mlartifacts"))
        mp.setenv("BRANDFORGE_CACHE_DIR", str(root / "cache"))
        get_settings.cache_clear()
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        demo_brand.run(params, root=root)
        prepare.run(params, root=root)
        build_tiny_sd(root / "models/base", colour_vae=True)
        train_lora.run(params, root=root)
        good = root / "adapters/good"
        good.parent.mkdir()
        (root / LORA_DIR).rename(good)

        for path in (root / "data/brands/acme/images").rglob("*.png"):
            rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
            out = rgb.copy()
            for brand_colour, other in OFF_PALETTE.items():
                out[np.abs(rgb - brand_colour).sum(-1) < 90] = other
            Image.fromarray(out.astype(np.uint8)).save(path)
        prepare.run(params, root=root)
        train_lora.run(params, root=root, fresh=True)
        bad = root / "adapters/bad"
        bad.mkdir()
        weights = load_file(root / LORA_DIR / "pytorch_lora_weights.safetensors")
        strong = {k: (6 * v if "lora_B" in k else v) for k, v in weights.items()}
        save_file(strong, bad / "pytorch_lora_weights.safetensors")
    get_settings.cache_clear()
    return PaletteAdapters(root / "models/base", good, bad)


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


# --------------------------------------------------------------------------------------------
# The serving database, on both backends
# --------------------------------------------------------------------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A plain `postgresql://` URL (as a user would write it) of an empty throwaway database,
    dropped after the test (the registry tests' helper: fails, never skips, without PostgreSQL)."""
    from tests.registry.conftest import _throwaway_database

    with _throwaway_database(create=True) as db:
        yield db.uri


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty serving database, once an SQLite file (in a folder that does not
    exist yet: `engine_for` creates it) and once a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'serving.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    """An engine on `db_url`, upgraded to this release's schema."""
    from serving.db.engine import engine_for
    from serving.db.migrate import upgrade

    engine = engine_for(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()
