"""The loop from production back to training: reviewed assets into the brand's dataset.

`brandforge data feedback --brand acme` (`serving.cli.feedback`) exports what people decided
in review (`serving.assets.review`):

- **approved** assets become training images of the brand:
  `<data_dir>/<brand>/images/feedback-<asset_id>.png`, each with a `metadata.jsonl` line
  `{"file_name": "images/feedback-<id>.png", "text": <the asset's prompt>, "source": "feedback",
  "asset_id": ..., "model_version": ...}`. The prompt is the caption: it is what the image was
  generated from (already redacted of personal data when it was stored).
- **rejected** assets become negative examples, NOT training images:
  `<data_dir>/<brand>/negatives/feedback-<id>.png` with lines in `negatives/metadata.jsonl`
  (file names relative to `negatives/`, plus `"negative": true, "reason": <the review reason>`).
  `training.prepare` ignores the top-level `negatives/` folder (its validation, its `imagefolder`
  check and the dataset hash), so they are versioned with the brand and never trained on.

Images are decoded from whatever format was stored and saved as RGB PNG. The export is
idempotent (asset ids already in a metadata file are skipped), and each image file is written
completely before its metadata line is appended, so an interrupted run never leaves a caption
without its image; the next run finishes the job. Nothing here commits to the serving database.

Then version and retrain: `dvc add data/brands/<brand> && dvc repro`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.assets.crypto import UnreadableAsset
from serving.db.models import Asset

log = logging.getLogger(__name__)

# Must equal `training.prepare.NEGATIVES_DIR` (serving may not import training; a test checks).
NEGATIVES_DIR = "negatives"
METADATA = "metadata.jsonl"
SOURCE = "feedback"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
# When one campaign item was stored in several formats, the one exported is the first of these
# present (lossless first), so the brand gets one training image per generated image.
FORMAT_PREFERENCE = ("png", "webp", "heic", "jpeg", "gif")
# Stored formats without pixels to train on (vector, video); skipped with this reason.
NOT_RASTER = {
    "svg": "svg is a vector tracing of the image, not its pixels",
    "mp4": "mp4 is a video; export the item's still format instead",
}


class FeedbackError(ValueError):
    """The export cannot run (no brand folder, a broken metadata file); the message says why."""


class AssetReader(Protocol):
    """What the export needs of the asset store (`serving.assets.AssetStore`): the bytes of a
    stored asset, raising a `LookupError` (`AssetMissing`) when the file is gone."""

    def get(self, key: str, *, encrypted: bool = False) -> bytes: ...


@dataclass
class FeedbackExport:
    """What one export did: counts, why each skipped asset was skipped, and the brand folder."""

    approved: int
    rejected: int
    skipped: int
    folder: Path
    skip_reasons: dict[str, str] = field(default_factory=dict)  # asset id -> why


def _read_metadata(path: Path) -> tuple[set[str], set[str]]:
    """The asset ids and file names already listed in a metadata.jsonl (empty when absent)."""
    ids: set[str] = set()
    names: set[str] = set()
    if not path.is_file():
        return ids, names
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise FeedbackError(
                f"{path} line {number} is not valid JSON ({err.msg}); fix or remove the line, "
                "then export again"
            ) from None
        if isinstance(entry, dict):
            if isinstance(entry.get("asset_id"), str):
                ids.add(entry["asset_id"])
            if isinstance(entry.get("file_name"), str):
                names.add(entry["file_name"].removeprefix("./"))
    return ids, names


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels of any decoded image; transparency is composited on white, as prepare does."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image.convert("RGB")


def _decode(data: bytes) -> Image.Image:
    if data[4:8] == b"ftyp":  # HEIC (`serving.delivery.formats` writes it with pillow-heif)
        import pillow_heif

        pillow_heif.register_heif_opener()
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # the first frame of an animated file
        return _to_rgb(image).copy()


def _pixel_hash(image: Image.Image) -> str:
    # The same identity prepare uses for "exact duplicate (same pixels)".
    return hashlib.sha256(f"{image.width}x{image.height}".encode() + image.tobytes()).hexdigest()


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _append_line(path: Path, entry: dict[str, Any]) -> None:
    """Append one JSON line, first ending an unterminated last line (a hand edit) with one."""
    line = json.dumps(entry, ensure_ascii=False) + "\n"
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as existing:
            existing.seek(-1, os.SEEK_END)
            if existing.read(1) != b"\n":
                line = "\n" + line
    with path.open("a", encoding="utf-8") as out:
        out.write(line)
        out.flush()
        os.fsync(out.fileno())


def _existing_pixels(brand_dir: Path) -> dict[str, str]:
    """pixel hash -> file, for every training image of the brand (not the negatives)."""
    found: dict[str, str] = {}
    for path in sorted(brand_dir.rglob("*")):
        rel = path.relative_to(brand_dir)
        if (
            not path.is_file()
            or path.suffix.lower() not in IMAGE_EXTENSIONS
            or rel.parts[0] == NEGATIVES_DIR
            or any(p.startswith((".", "__")) for p in rel.parts)
        ):
            continue
        try:
            found.setdefault(_pixel_hash(_decode(path.read_bytes())), rel.as_posix())
        except Exception:  # noqa: BLE001 (prepare reports broken files; here they match nothing)
            continue
    return found


def _one_per_item(assets: Iterable[Asset], skips: dict[str, str]) -> list[Asset]:
    """Keep one asset per campaign item (several formats of one image), the best format."""

    def rank(a: Asset) -> int:
        fmt = a.format.lower()
        return FORMAT_PREFERENCE.index(fmt) if fmt in FORMAT_PREFERENCE else len(FORMAT_PREFERENCE)

    chosen: dict[tuple[str, str, int], Asset] = {}
    kept: list[Asset] = []
    for asset in assets:
        if asset.campaign_id is None or asset.item_id is None:
            kept.append(asset)
            continue
        key = (asset.status, asset.campaign_id, asset.item_id)
        best = chosen.get(key)
        if best is None or rank(asset) < rank(best):
            chosen[key] = asset
    for asset in assets:
        if asset.campaign_id is None or asset.item_id is None:
            continue
        best = chosen[(asset.status, asset.campaign_id, asset.item_id)]
        if best is asset:
            kept.append(asset)
        else:
            skips[asset.id] = (
                f"another format of the same campaign item is exported ({best.id}, {best.format})"
            )
    return sorted(kept, key=lambda a: (a.reviewed_at or a.created_at, a.id))


def export_feedback(
    session: Session,
    store: AssetReader,
    *,
    brand: str,
    brand_dir: Path,
    include_rejected: bool = True,
    since: datetime | None = None,
    min_size: int = 1,
) -> FeedbackExport:
    """Export the brand's reviewed assets into its dataset folder (see the module docstring).

    `since` (timezone-aware) limits the export to assets reviewed at or after it. Approved
    images whose shorter side is below `min_size` (prepare's `prepare.min_size`) or whose pixels
    equal an image already in the folder are skipped, since prepare would refuse them. Skipped,
    with the reason in `skip_reasons`: assets already exported, files gone from the store, files
    that do not decode, approved assets without a prompt. Raises `FeedbackError` when the brand
    folder or its brand.yaml is missing, or a metadata file is not valid JSON lines.
    """
    brand_dir = Path(brand_dir)
    if not (brand_dir / "brand.yaml").is_file():
        raise FeedbackError(
            f"{brand_dir}: not a brand folder (no brand.yaml); `dvc pull` it, or give the "
            "folder that holds brand.yaml, images/ and metadata.jsonl (--data-dir)"
        )
    if since is not None and since.utcoffset() is None:
        raise FeedbackError(f"since={since!r} has no time zone; give an aware UTC datetime")

    statuses = ["approved", "rejected"] if include_rejected else ["approved"]
    query = select(Asset).where(
        Asset.brand == brand, Asset.status.in_(statuses), Asset.deleted_at.is_(None)
    )
    if since is not None:
        query = query.where(Asset.reviewed_at >= since)
    skips: dict[str, str] = {}
    assets = _one_per_item(list(session.scalars(query.order_by(Asset.id))), skips)

    negatives_dir = brand_dir / NEGATIVES_DIR
    train_ids, train_names = _read_metadata(brand_dir / METADATA)
    negative_ids, negative_names = _read_metadata(negatives_dir / METADATA)
    pixels: dict[str, str] | None = None  # read lazily: only when there is an image to add
    counts = {"approved": 0, "rejected": 0}

    for asset in assets:
        name = f"feedback-{asset.id}.png"
        approved = asset.status == "approved"
        file_name = f"images/{name}" if approved else name
        names = train_names if approved else negative_names
        reason = _skip_reason(asset, file_name, train_ids | negative_ids, names)
        image = None
        if reason is None:
            image, reason = _read_image(asset, store)
        if reason is not None or image is None:
            skips[asset.id] = reason or "unreadable"
            continue

        if approved:
            if pixels is None:
                pixels = _existing_pixels(brand_dir)
            reason = _add_training_image(brand_dir, file_name, image, asset, pixels, min_size)
            if reason is not None:
                skips[asset.id] = reason
                continue
            train_ids.add(asset.id)
        else:
            _add_negative(negatives_dir, name, image, asset)
            negative_ids.add(asset.id)
        counts[asset.status] += 1

    result = FeedbackExport(
        approved=counts["approved"],
        rejected=counts["rejected"],
        skipped=len(skips),
        folder=brand_dir,
        skip_reasons=skips,
    )
    log.info(
        "feedback of %s: %d approved, %d rejected exported, %d skipped → %s",
        brand,
        result.approved,
        result.rejected,
        result.skipped,
        brand_dir,
    )
    return result


def _add_training_image(
    brand_dir: Path,
    file_name: str,
    image: Image.Image,
    asset: Asset,
    pixels: dict[str, str],
    min_size: int,
) -> str | None:
    """Write an approved image and its caption line; or say why prepare would refuse it."""
    if min(image.size) < min_size:
        return f"{image.width}x{image.height} px is smaller than prepare.min_size={min_size}"
    digest = _pixel_hash(image)
    # Its own file without a metadata line (an interrupted export) is no duplicate.
    if pixels.get(digest, file_name) != file_name:
        return f"same pixels as {pixels[digest]} (prepare refuses duplicates)"
    _write_file(brand_dir / file_name, _png_bytes(image))
    _append_line(
        brand_dir / METADATA,
        {
            "file_name": file_name,
            "text": asset.prompt.strip(),
            "source": SOURCE,
            "asset_id": asset.id,
            "model_version": str(asset.model_version),
        },
    )
    pixels[digest] = file_name
    return None


def _add_negative(negatives_dir: Path, name: str, image: Image.Image, asset: Asset) -> None:
    """Write a rejected image under negatives/ with the reviewer's reason."""
    _write_file(negatives_dir / name, _png_bytes(image))
    _append_line(
        negatives_dir / METADATA,
        {
            "file_name": name,
            "text": asset.prompt.strip(),
            "source": SOURCE,
            "asset_id": asset.id,
            "model_version": str(asset.model_version),
            "negative": True,
            "reason": asset.review_reason or "",
        },
    )


def _skip_reason(asset: Asset, file_name: str, ids: set[str], names: set[str]) -> str | None:
    """Why an asset is not exported before its file is read (None: read it)."""
    folder = "images" if asset.status == "approved" else NEGATIVES_DIR
    if asset.id in ids or file_name in names:
        return f"already exported ({folder}/feedback-{asset.id}.png)"
    if asset.status == "approved" and not asset.prompt.strip():
        return "no prompt to use as its caption"
    return NOT_RASTER.get(asset.format.lower())


def _read_image(asset: Asset, store: AssetReader) -> tuple[Image.Image | None, str | None]:
    """The asset's decoded image, or None and why it cannot be read."""
    try:
        data = store.get(asset.path, encrypted=asset.key_id is not None)
    except LookupError:  # serving.assets.store.AssetMissing
        return None, f"file missing from the asset store ({asset.path})"
    except ValueError as err:  # serving.assets.store.BadAssetKey
        return None, f"the asset store refused its key: {err}"
    except UnreadableAsset as err:  # encrypted under a key this ring lacks, or altered
        return None, str(err)
    try:
        return _decode(data), None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        return None, f"cannot be decoded as an image ({asset.format}: {err})"
