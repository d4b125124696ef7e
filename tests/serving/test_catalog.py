"""The catalog names models with the configured prefix, like training and the registry do."""

from __future__ import annotations

import mlflow
import pytest

from tests.registry.test_registry import Project


def test_model_names_follow_the_configured_prefix(monkeypatch):
    from brandforge.settings import get_settings
    from serving.catalog import brand_of, model_id, model_name

    monkeypatch.setenv("BRANDFORGE_EXPERIMENT_PREFIX", "shop")
    get_settings.cache_clear()
    try:
        assert model_name("acme") == "shop-acme"
        assert model_id("acme", "3") == "shop-acme/3"
        assert brand_of("shop-acme") == "acme"
        assert brand_of("shop-bases") is None  # the base-model store is no brand
        assert brand_of("brandforge-acme") is None  # another prefix
        assert brand_of("shop-Not.A.Brand") is None
    finally:
        get_settings.cache_clear()


def test_a_prefixed_registry_serves_its_champion(tmp_path, monkeypatch, adapter_dir, tiny_sd_dir):
    from brandforge.settings import get_settings
    from registry.core import client, promote
    from serving.catalog import Catalog
    from serving.errors import Conflict, NotFound

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("BRANDFORGE_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    monkeypatch.setenv("BRANDFORGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BRANDFORGE_EXPERIMENT_PREFIX", "shop")
    get_settings.cache_clear()
    mlflow.set_tracking_uri(uri)
    try:
        project = Project(tmp_path / "p", "acme", adapter_dir, tiny_sd_dir)
        project.train()
        project.register()
        catalog = Catalog(ttl_s=0)
        assert catalog.brands() == ["acme"]  # not "bases", though the base store exists
        with pytest.raises(Conflict, match="shop-acme"):
            catalog.champion("acme")
        promote(client(), "shop-acme", "champion", version="1", why="catalog test")
        assert catalog.champion("acme") == "1"
        with pytest.raises(NotFound):
            catalog.champion("globex")
    finally:
        get_settings.cache_clear()


def test_a_version_registered_before_size_tags_draws_at_its_training_resolution(
    tmp_path, monkeypatch, adapter_dir, tiny_sd_dir
):
    from brandforge.settings import get_settings
    from registry.core import client
    from registry.limits import MAX_SIZE_TAG, NATIVE_SIZE_TAG
    from serving.catalog import Catalog

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("BRANDFORGE_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    monkeypatch.setenv("BRANDFORGE_CACHE_DIR", str(tmp_path / "cache"))
    get_settings.cache_clear()
    mlflow.set_tracking_uri(uri)
    try:
        project = Project(tmp_path / "p", "acme", adapter_dir, tiny_sd_dir)
        run_id = project.train()
        project.register()
        c = client()
        c.log_param(run_id, "base.resolution", "48")
        for tag in (NATIVE_SIZE_TAG, MAX_SIZE_TAG):  # as the previous release registered it
            c.delete_model_version_tag("brandforge-acme", "1", tag)
        sizes = Catalog().sizes("brandforge-acme/1")
        assert (sizes.native, sizes.max_side) == (48, 192)
    finally:
        get_settings.cache_clear()
