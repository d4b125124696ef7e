"""The feedback export: reviewed production assets into the brand's dataset, then `prepare`
(serving.assets.feedback, and `brandforge data feedback`: serving.cli.feedback).

Real parts throughout: a SQLite serving database, the asset store on a temporary folder, the
generated demo brand, `training.prepare` and `datasets`' imagefolder.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from brandforge.params import Params, parse_params
from serving.assets.feedback import NEGATIVES_DIR, export_feedback
from serving.assets.store import AssetStore, asset_key
from serving.cli.feedback import feedback_command
from serving.db.engine import engine_for, session_factory
from serving.db.migrate import upgrade
from serving.db.models import Asset, AuditLog, new_asset_id
from training import demo_brand, prepare

BRAND = "acme"


@dataclass
class World:
    root: Path  # project root: data/brands/acme, data/prepared
    db_url: str
    sessions: sessionmaker[Session]
    store: AssetStore
    params: Params

    @property
    def brand_dir(self) -> Path:
        return self.root / "data/brands" / BRAND

    def add(
        self,
        status: str,
        *,
        prompt: str = "acme banner with a teal wave",
        brand: str = BRAND,
        fmt: str = "png",
        seed: int = 0,
        size: int = 48,
        reason: str | None = None,
        reviewed_at: datetime | None = None,
        campaign: tuple[str, int] | None = None,
        data: bytes | None = None,
        stored: bool = True,
    ) -> str:
        """One asset row with its file (random pixels from `seed`) in the store; its id."""
        asset_id = new_asset_id()
        ext = {"jpeg": "jpg"}.get(fmt, fmt)
        key = asset_key(brand, asset_id, ext)
        if data is None:
            data = encode(noise(seed, size), fmt)
        if stored:
            self.store.put(key, data)
        decided = status in ("approved", "rejected")
        with self.sessions.begin() as session:
            session.add(
                Asset(
                    id=asset_id,
                    request_id=f"req-{asset_id}",
                    brand=brand,
                    model_name=f"brandforge-{brand}",
                    model_version="3",
                    variant="champion",
                    prompt=prompt,
                    seed=seed,
                    width=size,
                    height=size,
                    steps=4,
                    guidance=5.0,
                    format=fmt,
                    path=key,
                    compliance={"score": 0.4, "passed": False, "violations": []},
                    status=status,
                    reviewed_by="reviewer" if decided else None,
                    reviewed_at=(reviewed_at or datetime.now(UTC)) if decided else None,
                    review_reason=reason,
                    campaign_id=campaign[0] if campaign else None,
                    item_id=campaign[1] if campaign else None,
                )
            )
        return asset_id

    def export(self, **kwargs) -> object:
        with self.sessions() as session:
            return export_feedback(
                session, self.store, brand=BRAND, brand_dir=self.brand_dir, **kwargs
            )


def noise(seed: int, size: int = 48) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    pil = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt]
    if fmt == "png":  # RGBA with transparency: the export must composite it to RGB
        image = image.convert("RGBA")
    image.save(buf, format=pil, **({"quality": 95} if fmt != "png" else {}))
    return buf.getvalue()


def lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def feedback_lines(world: World) -> list[dict]:
    return [e for e in lines(world.brand_dir / "metadata.jsonl") if e.get("source") == "feedback"]


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated demo brand, built once and copied per test."""
    root = tmp_path_factory.mktemp("demo")
    demo_brand.run(parse_params({"data": {"demo": {"n_images": 24}}}), root=root)
    return root / "data/brands" / BRAND


@pytest.fixture
def world(tmp_path: Path, demo_template: Path) -> World:
    import shutil

    shutil.copytree(demo_template, tmp_path / "data/brands" / BRAND)
    url = f"sqlite:///{tmp_path}/s.db"
    engine = engine_for(url)
    upgrade(engine)
    params = parse_params({"data": {"demo": {"n_images": 24}}})
    yield World(
        tmp_path, url, session_factory(engine), AssetStore(str(tmp_path / "assets")), params
    )
    engine.dispose()


def test_approved_become_training_images_rejected_become_negatives_and_prepare_uses_them(
    world: World,
):
    hash_before = prepare.run(world.params, root=world.root)["hash"]
    approved_png = world.add("approved", prompt="acme spring sale banner, teal and orange", seed=1)
    approved_jpeg = world.add(
        "approved", prompt="acme poster, big orange circle", fmt="jpeg", seed=2
    )
    rejected = world.add("rejected", prompt="acme tile in red", seed=3, reason="forbidden red")
    waiting = world.add("review", seed=4)
    delivered = world.add("delivered", seed=5)
    other_brand = world.add("approved", brand="globex", seed=6)

    result = world.export()

    assert (result.approved, result.rejected, result.skipped) == (2, 1, 0)
    assert result.folder == world.brand_dir
    by_id = {e["asset_id"]: e for e in feedback_lines(world)}
    assert set(by_id) == {approved_png, approved_jpeg}
    assert by_id[approved_png] == {
        "file_name": f"images/feedback-{approved_png}.png",
        "text": "acme spring sale banner, teal and orange",
        "source": "feedback",
        "asset_id": approved_png,
        "model_version": "3",
    }
    for asset_id in (approved_png, approved_jpeg):
        with Image.open(world.brand_dir / f"images/feedback-{asset_id}.png") as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (48, 48))
    # Lossless in, lossless out: the PNG asset's pixels are exactly the generated ones.
    exported = np.asarray(Image.open(world.brand_dir / f"images/feedback-{approved_png}.png"))
    assert np.array_equal(exported, np.asarray(noise(1)))

    [negative] = lines(world.brand_dir / NEGATIVES_DIR / "metadata.jsonl")
    assert negative["file_name"] == f"feedback-{rejected}.png"
    assert negative["negative"] is True and negative["reason"] == "forbidden red"
    assert negative["text"] == "acme tile in red" and negative["asset_id"] == rejected
    assert (world.brand_dir / NEGATIVES_DIR / f"feedback-{rejected}.png").is_file()
    assert not (world.brand_dir / f"images/feedback-{rejected}.png").exists()
    everything = "".join(p.name for p in world.brand_dir.rglob("*"))
    for absent in (waiting, delivered, other_brand):
        assert absent not in everything

    # Idempotent: the second run adds nothing and says why.
    meta_before = (world.brand_dir / "metadata.jsonl").read_bytes()
    again = world.export()
    assert (again.approved, again.rejected, again.skipped) == (0, 0, 3)
    assert set(again.skip_reasons) == {approved_png, approved_jpeg, rejected}
    assert all(why.startswith("already exported") for why in again.skip_reasons.values())
    assert (world.brand_dir / "metadata.jsonl").read_bytes() == meta_before
    assert len(lines(world.brand_dir / NEGATIVES_DIR / "metadata.jsonl")) == 1

    # The export feeds prepare: the feedback images are in the prepared set with their
    # captions, the negatives are not.
    info = prepare.run(world.params, root=world.root)
    assert info["n_images"] == 26 and info["hash"] != hash_before
    prepared = lines(world.root / "data/prepared/metadata.jsonl")
    captions = {e["text"] for e in prepared}
    assert {
        "acme spring sale banner, teal and orange",
        "acme poster, big orange circle",
    } <= captions
    assert "acme tile in red" not in captions
    assert not any(e["source"].startswith(NEGATIVES_DIR) for e in prepared)

    # More negatives change nothing prepare sees: same dataset hash.
    world.add("rejected", prompt="acme in purple", seed=7, reason="off palette")
    assert world.export().rejected == 1
    assert prepare.run(world.params, root=world.root)["hash"] == info["hash"]

    # The negatives folder is itself a valid imagefolder for tools that want the negatives.
    import datasets

    negatives = datasets.load_dataset(
        "imagefolder",
        data_dir=str(world.brand_dir / NEGATIVES_DIR),
        split="train",
        cache_dir=str(world.root / "hf-cache"),
    )
    assert sorted(negatives["reason"]) == ["forbidden red", "off palette"]
    assert all(negatives["negative"])


def test_missing_undecodable_vector_small_and_captionless_assets_are_skipped_with_reasons(
    world: World,
):
    gone = world.add("approved", seed=1, stored=False)
    garbage = world.add("approved", seed=2, data=b"not an image at all")
    vector = world.add("approved", seed=3, fmt="svg", data=b"<svg xmlns='x'></svg>")
    tiny = world.add("approved", seed=4, size=16)
    no_prompt = world.add("approved", seed=5, prompt="   ")
    good = world.add("approved", seed=6)

    result = world.export(min_size=32)

    assert (result.approved, result.rejected) == (1, 0)
    reasons = result.skip_reasons
    assert result.skipped == len(reasons) == 5
    assert "missing from the asset store" in reasons[gone]
    assert "cannot be decoded" in reasons[garbage]
    assert "vector" in reasons[vector]
    assert "16x16 px is smaller than prepare.min_size=32" in reasons[tiny]
    assert "no prompt" in reasons[no_prompt]
    assert [e["asset_id"] for e in feedback_lines(world)] == [good]
    assert sorted(p.name for p in (world.brand_dir / "images").glob("feedback-*")) == [
        f"feedback-{good}.png"
    ]
    prepare.run(world.params, root=world.root)  # nothing half-exported breaks it


def test_duplicates_and_other_formats_of_one_campaign_item_are_exported_once(world: World):
    first = world.add("approved", seed=1)
    same_pixels = world.add("approved", seed=1)  # same seed, same image: prepare refuses twins
    as_png = world.add("approved", seed=2, campaign=("camp-1", 0))
    as_webp = world.add("approved", seed=2, fmt="webp", campaign=("camp-1", 0))

    result = world.export()

    exported = {e["asset_id"] for e in feedback_lines(world)}
    assert result.approved == 2 and as_png in exported and as_webp not in exported
    assert len(exported & {first, same_pixels}) == 1
    twin = ({first, same_pixels} - exported).pop()
    assert "same pixels as images/feedback-" in result.skip_reasons[twin]
    assert "another format of the same campaign item" in result.skip_reasons[as_webp]
    assert prepare.run(world.params, root=world.root)["n_images"] == 26


def test_an_interrupted_export_is_completed_by_the_next_run(world: World):
    asset_id = world.add("approved", seed=1)
    world.export()
    # Simulate a crash after the image was written and before its line was appended.
    metadata = world.brand_dir / "metadata.jsonl"
    metadata.write_text("".join(metadata.read_text().splitlines(keepends=True)[:-1]))
    assert (world.brand_dir / f"images/feedback-{asset_id}.png").is_file()
    assert feedback_lines(world) == []

    result = world.export()

    assert result.approved == 1, result.skip_reasons
    assert [e["asset_id"] for e in feedback_lines(world)] == [asset_id]
    assert prepare.run(world.params, root=world.root)["n_images"] == 25


def test_since_and_approved_only(world: World):
    long_ago = datetime.now(UTC) - timedelta(days=30)
    old = world.add("approved", seed=1, reviewed_at=long_ago)
    new = world.add("approved", seed=2)
    world.add("rejected", seed=3, reason="wrong logo")

    result = world.export(include_rejected=False, since=datetime.now(UTC) - timedelta(days=1))

    assert (result.approved, result.rejected) == (1, 0)
    assert [e["asset_id"] for e in feedback_lines(world)] == [new]
    assert old not in (world.brand_dir / "metadata.jsonl").read_text()
    assert not (world.brand_dir / NEGATIVES_DIR).exists()


def test_refuses_a_folder_that_is_not_a_brand(world: World):
    from serving.assets.feedback import FeedbackError

    with world.sessions() as session, pytest.raises(FeedbackError, match="no brand.yaml"):
        export_feedback(session, world.store, brand=BRAND, brand_dir=world.root / "nowhere")


def test_negatives_folder_name_agrees_with_prepare():
    assert NEGATIVES_DIR == prepare.NEGATIVES_DIR


def test_cli_exports_prints_the_next_step_and_audits(world: World, monkeypatch: pytest.MonkeyPatch):
    from brandforge.settings import get_settings

    monkeypatch.setenv("BRANDFORGE_ASSET_DIR", str(world.root / "assets"))
    monkeypatch.delenv("BRANDFORGE_ASSET_STORE", raising=False)
    get_settings.cache_clear()
    approved = world.add("approved", prompt="acme product card", seed=1)
    world.add("rejected", seed=2, reason="logo cut off")
    world.add("approved", seed=3, stored=False)

    app = typer.Typer()
    app.command()(feedback_command)
    args = [
        "--brand",
        BRAND,
        "--data-dir",
        str(world.root / "data/brands"),
        "--db",
        world.db_url,
        "--params",
        str(world.root / "no-params.yaml"),
    ]
    runner = CliRunner()
    try:
        first = runner.invoke(app, args)
        second = runner.invoke(app, [*args, "--no-rejected"])
        bad = runner.invoke(app, [*args[:2], "--data-dir", str(world.root / "x"), *args[4:]])
        traversal = runner.invoke(app, ["--brand", "../etc", *args[2:]])
    finally:
        get_settings.cache_clear()

    assert first.exit_code == 0, first.output
    assert "exported 1 approved image(s)" in first.output
    assert "1 rejected one(s)" in first.output and "skipped 1" in first.output
    assert "missing from the asset store" in first.output
    assert f"next: dvc add {world.brand_dir} && dvc repro" in first.output
    assert [e["asset_id"] for e in feedback_lines(world)] == [approved]

    assert second.exit_code == 0, second.output
    assert "nothing new to export" in second.output

    assert bad.exit_code == 1 and "no brand.yaml" in bad.output
    assert traversal.exit_code == 2 and "invalid brand name '../etc'" in traversal.output
    assert "'--brand'" in traversal.output  # the usage error names the option

    with world.sessions() as session:
        rows = session.scalars(select(AuditLog).where(AuditLog.action == "feedback.export"))
        details = [row.detail for row in rows]
    assert [d["approved"] for d in details] == [1, 0]
    assert details[0]["rejected"] == 1
