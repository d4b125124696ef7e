"""Shared fixtures: tiny real models and a prepared demo dataset, built once per session."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Nothing in the tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
# The key of the personal-data hashes (serving.privacy): without it, tests on PostgreSQL would
# make `privacy.key` in the working folder. Tests of the key file unset it.
os.environ.setdefault("BRANDFORGE_PRIVACY_KEY", "tests-only-privacy-key-0123456789")


def _share_the_cores() -> None:
    """Under pytest-xdist, each worker draws and trains on its share of the cores.

    torch starts one thread per core in every process; with one worker per core, two workers'
    thread pools contend and every small op waits for a descheduled thread (a training step
    gets several times slower, see training/base_model.py's `_ThreadTuner`). The environment
    variable reaches the processes a test starts (`dvc repro`, `brandforge serve`)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


_share_the_cores()


@pytest.fixture(scope="module")
def ray_turn() -> Iterator[None]:
    """Held by a module that starts a Ray cluster, for the whole module. `make test` runs the
    suite in pytest-xdist workers, and two local Ray clusters on one machine collide on Ray's
    fixed default ports (the dashboard agent's, among others), so the workers take turns: a
    lock file shared by every worker of every run on this machine."""
    with open(Path(tempfile.gettempdir()) / "brandforge-tests-ray.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 32 px SD 1.x pipeline folder with its base reference."""
    from tests.tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "base")


@pytest.fixture(scope="session")
def prepared_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root holding a small prepared demo brand (data/prepared)."""
    from brandforge.params import parse_params
    from training import demo_brand, prepare

    root = tmp_path_factory.mktemp("prepared")
    params = parse_params({"data": {"demo": {"n_images": 24}}})
    demo_brand.run(params, root=root)
    prepare.run(params, root=root)
    return root


@pytest.fixture
def train_root(
    tmp_path: Path, tiny_sd_dir: Path, prepared_demo: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A fresh project root with prepared data, the tiny base and its own MLflow store."""
    shutil.copytree(prepared_demo / "data", tmp_path / "data")
    shutil.copytree(tiny_sd_dir, tmp_path / "models" / "base")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("BRANDFORGE_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    monkeypatch.setenv("BRANDFORGE_CACHE_DIR", str(tmp_path / "cache"))
    import mlflow

    from brandforge.settings import get_settings

    get_settings.cache_clear()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")  # MLflow's global state
    yield tmp_path
    get_settings.cache_clear()
