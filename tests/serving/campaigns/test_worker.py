"""The campaign worker with a real generator engine (no Ray): a campaign end to end, templates x
ratios x formats with composition and a motion loop; and the regenerate-then-review path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from brandforge.brandkit import BrandKit
from serving.campaigns.queue import progress, submit
from serving.campaigns.spec import CampaignSpec, ratio_size
from serving.campaigns.worker import CampaignWorker, run_until_idle
from serving.catalog import BrandContext
from serving.db.engine import engine_for, session_factory
from serving.db.migrate import upgrade
from serving.db.models import Asset, CampaignItem
from serving.generator import Engine, ImageJob, group

KIT = Path(__file__).parents[2] / "evaluation/data/acme.yaml"
FORMATS = ["png", "jpeg", "webp", "heic", "svg"]


@pytest.fixture(scope="module")
def engine(served_registry) -> Engine:
    import mlflow

    from brandforge.settings import get_settings

    with pytest.MonkeyPatch.context() as mp:
        for k, v in served_registry.env.items():
            mp.setenv(k, v)
        get_settings.cache_clear()
        mlflow.set_tracking_uri(served_registry.tracking_uri)
        e = Engine()
        handle = e.load_adapter(f"{served_registry.name}/1")
        yield e
        del handle
    get_settings.cache_clear()


def _render(engine: Engine):
    def render(jobs: list[ImageJob]):
        out = [None] * len(jobs)
        for indices in group(jobs):
            for i, r in zip(indices, engine.render([jobs[i] for i in indices]), strict=True):
                out[i] = r
        return out

    return render


def _loop(engine: Engine):
    return lambda job, frames, seed_to: engine.render_loop(job, frames=frames, seed_to=seed_to)


def lenient_kit() -> BrandKit:
    """The acme palette with limits a tiny random model's drawings can meet."""
    import yaml

    raw = yaml.safe_load(KIT.read_text())
    raw["min_text_contrast"] = 3.0
    raw["quality"] = {
        "min_palette_adherence": 0.0,
        "max_off_palette_share": 1.0,
        "max_palette_balance_distance": 1.0,
        "max_forbidden_share": 1.0,
        "max_noise": 1000.0,
        "max_blockiness": 1000.0,
        "max_clipped_share": 1.0,
        "max_blur": 1.0,
        "min_sharpness": 0.0,
        # the region rules too: its colour noise has forbidden-red blobs a tile can hold
        "max_region_noise": 1000.0,
        "max_region_blur_ratio": 1000.0,
        "max_region_blockiness": 1.0,
        "max_region_off_palette_share": 1.0,
        "max_region_forbidden_share": 1.0,
    }
    return BrandKit.model_validate(raw)


def strict_kit() -> BrandKit:
    import yaml

    return BrandKit.model_validate(yaml.safe_load(KIT.read_text()))


def _campaign(tmp_path: Path, served_registry, spec: dict, kit: BrandKit, engine: Engine):
    from serving.assets.store import AssetStore

    db = engine_for(f"sqlite:///{tmp_path / 'serving.db'}")
    upgrade(db)
    sessions = session_factory(db)
    store = AssetStore(str(tmp_path / "assets"))
    with sessions() as session:
        campaign, _ = submit(
            session,
            CampaignSpec.model_validate(spec),
            model_name=served_registry.name,
            champion_version="1",
            canary=None,
            actor="app",
            base_seed=11,
        )
        session.commit()
    worker = CampaignWorker(
        sessions=sessions,
        store=store,
        render=_render(engine),
        render_loop=_loop(engine),
        context_for=lambda model_id: BrandContext(kit=kit, dataset_hash="d" * 64),
        owner="test-worker",
        default_steps=2,
    )
    return campaign, sessions, store, worker


def test_a_campaign_is_drawn_composed_encoded_and_delivered(tmp_path, served_registry, engine):
    import cairosvg
    import pillow_heif

    from serving.delivery.manifest import DIGITAL_SOURCE_TYPE, read_provenance

    pillow_heif.register_heif_opener()
    spec = {
        "brand": "acme",
        "template": "{brand} {product} banner",
        "variables": {"product": ["shoes", "bags"]},
        "ratios": ["1:1", "9:16"],
        "formats": FORMATS,
        "motion": {"format": "gif", "fps": 4, "duration_s": 1.0},  # 4 frames
        "headline": "New {product}",
        "cta": "Shop now",
        "size": 128,
        "generation_size": 32,
        "steps": 2,
    }
    campaign, sessions, store, worker = _campaign(
        tmp_path, served_registry, spec, lenient_kit(), engine
    )
    assert run_until_idle(worker, limit=4) == 4

    with sessions() as session:
        state = progress(session, campaign.id)
        assets = {a.id: a for a in session.scalars(select(Asset))}
    assert state["state"] == "done" and state["counts"]["done"] == 4, state["counts"]
    assert len(assets) == 4 * (len(FORMATS) + 1)
    for item in state["items"]:
        ids = [a["asset_id"] for a in item["assets"]]
        assert len(ids) == len(FORMATS) + 1 and item["attempts"] == 1
        rows = [assets[i] for i in ids]
        assert sorted(r.format for r in rows) == sorted([*FORMATS, "gif"])
        width, height = ratio_size(item["ratio"], 128)
        for row in rows:
            assert row.status == "delivered" and row.campaign_id == campaign.id
            data = store.get(row.path)
            if row.format == "svg":
                png = cairosvg.svg2png(bytestring=data)
                decoded = Image.open(io.BytesIO(png))
            else:
                decoded = Image.open(io.BytesIO(data))
                decoded.load()
            assert decoded.size == (width, height), (row.format, decoded.size)
            if row.format == "gif":
                assert decoded.n_frames == 4
            found = read_provenance(data)
            assert found["manifest"]["model_version"] == "1"
            assert found["manifest"]["digital_source_type"] == DIGITAL_SOURCE_TYPE
            if row.format in ("png", "webp", "heic"):
                assert found["watermark"]["found"], (row.format, found["watermark"])
        # the headline is composed by code: the text regions are recorded with the layout
        layout = rows[0].settings["layout"]
        assert layout, rows[0].settings
    # the same item drawn twice gives the same picture (seeded by campaign and key)
    png = next(a for a in assets.values() if a.format == "png")
    again = np.asarray(Image.open(io.BytesIO(store.get(png.path))).convert("RGB"))
    assert again.shape[:2] == (png.height, png.width)


def test_an_item_failing_the_brand_kit_is_redrawn_then_sent_to_review(
    tmp_path, served_registry, engine
):
    spec = {
        "brand": "acme",
        "template": "{brand} banner, send proofs to jane.doe@example.com",
        "ratios": ["1:1"],
        "variants": 2,
        "formats": ["png"],
        "size": 64,
        "generation_size": 32,
        "steps": 2,
        "max_regenerations": 2,
    }
    campaign, sessions, store, worker = _campaign(
        tmp_path, served_registry, spec, strict_kit(), engine
    )
    with sessions() as session:
        first_seeds = {i.key: i.seed for i in session.scalars(select(CampaignItem))}
    run_until_idle(worker)
    with sessions() as session:
        state = progress(session, campaign.id)
        items = list(session.scalars(select(CampaignItem)))
        assets = list(session.scalars(select(Asset)))
    # the tiny random model draws noise: every attempt fails the brand kit
    assert state["counts"] == {**state["counts"], "review": 2, "done": 0}
    assert state["state"] == "done"  # nothing left to draw; two items wait for a person
    for item in items:
        assert item.attempts == 3 and item.state == "review"
        assert item.seed != first_seeds[item.key]  # the last attempt's seed is recorded
        assert item.compliance["passed"] is False and item.compliance["violations"]
    assert len(assets) == 2 and {a.status for a in assets} == {"review"}
    # personal data in the prompt is drawn with, but never stored
    assert all("[email]" in a.prompt and "example.com" not in a.prompt for a in assets)
    assert all(a.seed == next(i.seed for i in items if i.id == a.item_id) for a in assets)


def test_an_item_whose_layout_cannot_fit_fails_with_the_reason(tmp_path, served_registry, engine):
    spec = {
        "brand": "acme",
        "template": "{brand} banner",
        "ratios": ["9:16"],
        "formats": ["png"],
        "cta": "Shop the whole spring collection now",
        "size": 48,
        "generation_size": 32,
        "steps": 2,
    }
    campaign, sessions, store, worker = _campaign(
        tmp_path, served_registry, spec, lenient_kit(), engine
    )
    assert run_until_idle(worker) == 1  # failed once, not handed back to the queue forever
    with sessions() as session:
        state = progress(session, campaign.id)
        assert session.scalars(select(Asset)).first() is None
    (item,) = state["items"]
    assert state["state"] == "done" and item["state"] == "failed"
    assert "cta" in item["error"] and item["assets"] == []


def test_without_a_generation_size_items_draw_at_the_versions_native_size(
    tmp_path, served_registry, engine
):
    spec = {
        "brand": "acme",
        "template": "{brand} banner",
        "ratios": ["1:1", "16:9"],
        "formats": ["png"],
        "size": 64,
        "steps": 2,
    }
    campaign, sessions, store, worker = _campaign(
        tmp_path, served_registry, spec, lenient_kit(), engine
    )
    drawn: list[tuple[int, int]] = []
    render = worker.render

    def recording(jobs):
        drawn.extend((j.width, j.height) for j in jobs)
        return render(jobs)

    worker.render = recording
    worker.context_for = lambda model_id: BrandContext(kit=lenient_kit(), native_size=32)
    assert run_until_idle(worker, limit=4) == 2
    assert sorted(drawn) == sorted([ratio_size("1:1", 32), ratio_size("16:9", 32)])


def test_items_draw_with_the_sampler_the_version_was_evaluated_with_unless_told(
    tmp_path, served_registry, engine
):
    spec = {
        "brand": "acme",
        "template": "{brand} banner {n}",
        "variables": {"n": ["one", "two"]},
        "ratios": ["1:1"],
        "formats": ["png"],
        "size": 64,
        "generation_size": 32,
    }
    campaign, sessions, store, worker = _campaign(
        tmp_path, served_registry, spec, lenient_kit(), engine
    )
    drawn: list[tuple[int, float]] = []
    render = worker.render

    def recording(jobs):
        drawn.extend((j.steps, j.guidance) for j in jobs)
        return render(jobs)

    worker.render = recording
    worker.default_steps = None  # no server-wide override: the version's own settings
    worker.context_for = lambda model_id: BrandContext(kit=lenient_kit(), steps=3, guidance=1.0)
    assert run_until_idle(worker, limit=4) == 2
    assert drawn == [(3, 1.0), (3, 1.0)]
    with sessions() as session:
        rows = list(session.scalars(select(Asset)))
    assert [(r.steps, r.guidance) for r in rows] == [(3, 1.0), (3, 1.0)]  # what was drawn

    # a spec's own steps win, and a server-wide override wins over the version
    (tmp_path / "b").mkdir()
    campaign, sessions, store, worker = _campaign(
        tmp_path / "b", served_registry, {**spec, "steps": 2}, lenient_kit(), engine
    )
    worker.render, drawn[:] = recording, []
    worker.default_guidance = 1.5
    worker.context_for = lambda model_id: BrandContext(kit=lenient_kit(), steps=3, guidance=1.0)
    assert run_until_idle(worker, limit=4) == 2
    assert drawn == [(2, 1.5), (2, 1.5)]


def test_campaign_files_and_their_mp4_loop_carry_signed_c2pa_credentials(
    tmp_path, served_registry, engine, monkeypatch
):
    from brandforge.settings import get_settings
    from serving.delivery.credentials import read_credentials
    from serving.delivery.dev_certificate import dev_certificate_chain

    chain = dev_certificate_chain(days=2)
    (tmp_path / "chain.pem").write_bytes(chain.chain)
    (tmp_path / "key.pem").write_bytes(chain.key)
    monkeypatch.setenv("BRANDFORGE_C2PA_CERT", str(tmp_path / "chain.pem"))
    monkeypatch.setenv("BRANDFORGE_C2PA_KEY", str(tmp_path / "key.pem"))
    get_settings.cache_clear()
    spec = {
        "brand": "acme",
        "template": "{brand} banner",
        "ratios": ["1:1"],
        "formats": ["png", "jpeg"],
        "motion": {"format": "mp4", "fps": 4, "frames": 2},
        "size": 48,
        "generation_size": 32,
        "steps": 2,
    }
    try:
        campaign, sessions, store, worker = _campaign(
            tmp_path, served_registry, spec, lenient_kit(), engine
        )
        assert run_until_idle(worker) == 1
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    with sessions() as session:
        assets = list(session.scalars(select(Asset)))
    assert sorted(a.format for a in assets) == ["jpeg", "mp4", "png"]
    for asset in assets:
        found = read_credentials(store.get(asset.path), trust_anchors=chain.ca.decode())
        assert found["status"] == "valid" and found["trusted"], (asset.format, found)
        assert found["lineage"]["asset_id"] == asset.id and found["lineage"]["model_version"] == "1"
        assert found["lineage"]["dataset_hash"] == "d" * 64
