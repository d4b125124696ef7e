"""One generated image → one delivered file: the single path for live requests and campaigns.

    picture (an image, or motion frames) ──► provenance manifest (XMP) ──► watermark (pixels)
        ──► encode in the requested format ──► C2PA signature ──► asset store ──► `Asset` row

`Delivery` does this for every file of one live request or one campaign item, and keeps them
all or none: files go to the store as they are encoded, the rows are committed together at the
end, and if anything fails before that commit (an encoder, the store, the database refusing a
row, a lost campaign lease), the files already written are deleted again, so no file is left
without its row. `score_image` is the compliance report both callers store with each asset.

Live generate (`serving.api.routes.generate`):

    origin = Origin(brand=..., model_name=..., model_version=..., variant=..., dataset_hash=...)
    with Delivery(store=store, origin=origin, request_id=request_id,
                  retention_days=retention_days) as delivery:
        for image, seed in ...:  # each `Rendered.image()` of the generator
            delivery.add(image, fmt=body.format, drawing=Drawing(prompt=..., seed=seed, ...),
                         compliance=score_image(image, kit))
        delivery.commit(sessions)
    delivery.delivered  # asset id, seed, compliance of each file, in order

A campaign item passes `campaign=CampaignRef(...)`, `held_for_review=` and `settings=`, and
commits with `then=` the queue's `finish` in the same transaction. Nothing here knows Ray or
HTTP: the routes and the campaign worker are the callers.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image

from serving.assets.retention import expiry_for
from serving.assets.review import AssetStatus
from serving.assets.store import asset_key
from serving.db.models import Asset, new_asset_id, utcnow
from serving.delivery.credentials import ContentCredentials, credentials_from_settings
from serving.delivery.formats import EXTENSIONS, MOTION_FORMATS, encode_motion, encode_still
from serving.delivery.manifest import build_manifest, manifest_xmp
from serving.delivery.redact import redact
from serving.delivery.watermark import embed_watermark, watermark_payload
from serving.privacy.subjects import Subject, record_subjects, subjects_in

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

# What an asset of a version registered without a brand kit records as its compliance.
NO_KIT_COMPLIANCE: dict[str, Any] = {
    "score": None,
    "passed": None,
    "violations": [],
    "reason": "the version has no brand kit",
}


class Store(Protocol):
    """The part of `serving.assets.store.AssetStore` delivery uses."""

    def put(self, key: str, data: bytes) -> str | None: ...  # the encrypting key's id

    def delete(self, key: str) -> bool: ...


@dataclass(frozen=True)
class Origin:
    """Which model drew the pictures of a delivery: what the manifest and every row record."""

    brand: str
    model_name: str
    model_version: str
    variant: str  # champion or canary
    dataset_hash: str | None = None


@dataclass(frozen=True)
class Drawing:
    """How one picture was drawn, for reproducing it (prompts are redacted before storing)."""

    prompt: str
    seed: int
    steps: int
    guidance: float
    negative_prompt: str = ""


@dataclass(frozen=True)
class CampaignRef:
    """The campaign item a delivered file belongs to."""

    campaign_id: str
    item_id: int


@dataclass(frozen=True)
class Motion:
    """A motion picture: frames of one size, played at `fps` (GIF or MP4)."""

    frames: Sequence[Image.Image]
    fps: float


@dataclass(frozen=True)
class Delivered:
    """One file delivered: its asset id (the client's handle), store key and row."""

    asset_id: str
    key: str
    format: str
    seed: int
    compliance: dict[str, Any]
    status: AssetStatus
    manifest: dict[str, Any]


def score_image(
    image: Image.Image | bytes,
    kit: Any,
    *,
    logo: Image.Image | None = None,
    text_boxes: Sequence[tuple[int, int, int, int]] = (),
) -> dict[str, Any]:
    """The compliance a delivered asset records: `score`, `passed` and `violations` of the
    brand kit's report on `image` (a picture or encoded bytes), or `NO_KIT_COMPLIANCE` when
    `kit` is None. `logo` and `text_boxes` are what composition placed (campaigns)."""
    if kit is None:
        return dict(NO_KIT_COMPLIANCE)
    import numpy as np

    from evaluation.compliance import compliance_report

    if isinstance(image, bytes):
        image = Image.open(io.BytesIO(image))
    report = compliance_report(
        np.asarray(image.convert("RGB")),
        kit,
        logo=np.asarray(logo) if logo is not None else None,
        text_boxes=list(text_boxes) or None,
    ).to_dict()
    return {key: report[key] for key in ("score", "passed", "violations")}


def asset_row(
    *,
    asset_id: str,
    key: str,
    fmt: str,
    size: tuple[int, int],
    origin: Origin,
    drawing: Drawing,
    compliance: dict[str, Any],
    manifest: dict[str, Any],
    request_id: str,
    created_at: datetime,
    expires_at: datetime | None,
    status: AssetStatus,
    settings: dict[str, Any],
    campaign: CampaignRef | None,
    key_id: str | None = None,
) -> Asset:
    """The `assets` row of one delivered file, the only place one is built. `size` is the
    delivered picture's (width, height); prompts are stored redacted (DESIGN.md, decision 9)."""
    return Asset(
        id=asset_id,
        request_id=request_id,
        brand=origin.brand,
        model_name=origin.model_name,
        model_version=origin.model_version,
        variant=str(origin.variant),
        prompt=redact(drawing.prompt),
        negative_prompt=redact(drawing.negative_prompt),
        seed=drawing.seed,
        width=size[0],
        height=size[1],
        steps=drawing.steps,
        guidance=drawing.guidance,
        format=fmt,
        path=key,
        compliance=compliance,
        status=status,
        settings=settings,
        provenance=manifest,
        campaign_id=campaign.campaign_id if campaign is not None else None,
        item_id=campaign.item_id if campaign is not None else None,
        created_at=created_at,
        expires_at=expires_at,
        key_id=key_id,
    )


def encode_marked(picture: Image.Image | Motion, fmt: str, *, asset_id: str, xmp: bytes) -> bytes:
    """`picture` watermarked with `asset_id` (every frame of a motion) and encoded as `fmt`
    with the manifest `xmp` embedded."""
    payload = watermark_payload(asset_id)
    if isinstance(picture, Motion):
        if fmt not in MOTION_FORMATS:
            raise ValueError(f"motion frames go into {' or '.join(MOTION_FORMATS)}, not {fmt!r}")
        marked = [embed_watermark(frame.convert("RGB"), payload) for frame in picture.frames]
        return encode_motion(marked, fmt, fps=picture.fps, xmp=xmp)
    return encode_still(embed_watermark(picture.convert("RGB"), payload), fmt, xmp=xmp)


@dataclass
class Delivery:
    """The files of one live request or one campaign item, delivered all or none.

    `add` marks, encodes and stores one file and builds its row; `commit` writes the rows in
    one transaction. Used as a context manager, an exception before `commit` succeeded deletes
    every file `add` wrote. `created_at` is shared by all files (one request, one moment);
    `retention_days` (brand, or `*`, to days) sets their expiry. `seconds` adds up the time
    spent marking and encoding (`encode`) and writing files and rows (`store`).
    """

    store: Store
    origin: Origin
    request_id: str
    retention_days: Mapping[str, float] | None = None
    campaign: CampaignRef | None = None
    held_for_review: bool = False
    created_at: datetime = field(default_factory=utcnow)
    # Signs each final file (C2PA); by default the settings' (None: they name no certificate).
    credentials: ContentCredentials | None = field(default_factory=credentials_from_settings)
    delivered: list[Delivered] = field(default_factory=list, init=False)
    seconds: dict[str, float] = field(
        default_factory=lambda: {"encode": 0.0, "store": 0.0}, init=False
    )
    _rows: list[Asset] = field(default_factory=list, init=False, repr=False)
    _kept: bool = field(default=False, init=False, repr=False)
    # The personal data each row's prompts held before redaction (serving.privacy).
    _mentions: list[tuple[str, set[Subject]]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.expires_at = expiry_for(
            self.origin.brand, self.created_at, dict(self.retention_days or {})
        )

    def __enter__(self) -> Delivery:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if error is not None and not self._kept:
            self.discard()

    @property
    def status(self) -> AssetStatus:
        """What every file of this delivery is: delivered, or held until a reviewer decides."""
        return AssetStatus.REVIEW if self.held_for_review else AssetStatus.DELIVERED

    def add(
        self,
        picture: Image.Image | Motion,
        *,
        fmt: str,
        drawing: Drawing,
        compliance: dict[str, Any] | Callable[[], dict[str, Any]],
        settings: dict[str, Any] | None = None,
    ) -> Delivered:
        """Mark, encode and store `picture` as one `fmt` file; its row waits for `commit`.
        `compliance` may be a call that waits for a scoring still running: it is made only
        once the file is stored, so the scoring runs beside the encoding; if it fails, the
        file is deleted."""
        if self._kept:
            raise RuntimeError("this delivery is committed: start a new Delivery for more files")
        origin = self.origin
        started = time.perf_counter()
        asset_id = new_asset_id()
        manifest = build_manifest(
            asset_id=asset_id,
            brand=origin.brand,
            model_name=origin.model_name,
            model_version=origin.model_version,
            variant=str(origin.variant),
            dataset_hash=origin.dataset_hash,
            created_at=self.created_at,
        )
        data = encode_marked(picture, fmt, asset_id=asset_id, xmp=manifest_xmp(manifest))
        if self.credentials is not None:  # last: the signature covers the final bytes
            data = self.credentials.sign(data, fmt, manifest)
        encoded = time.perf_counter()
        self.seconds["encode"] += encoded - started
        key = asset_key(origin.brand, asset_id, EXTENSIONS[fmt])
        key_id = self.store.put(key, data)
        self.seconds["store"] += time.perf_counter() - encoded
        if callable(compliance):
            try:
                compliance = compliance()
            except BaseException:
                self.store.delete(key)
                raise
        done = Delivered(asset_id, key, fmt, drawing.seed, compliance, self.status, manifest)
        self.delivered.append(done)
        first = picture.frames[0] if isinstance(picture, Motion) else picture
        self._rows.append(
            asset_row(
                asset_id=asset_id,
                key=key,
                fmt=fmt,
                size=first.size,
                origin=origin,
                drawing=drawing,
                compliance=compliance,
                manifest=manifest,
                request_id=self.request_id,
                created_at=self.created_at,
                expires_at=self.expires_at,
                status=self.status,
                settings=settings or {},
                campaign=self.campaign,
                key_id=key_id,
            )
        )
        mentioned = subjects_in(drawing.prompt) | subjects_in(drawing.negative_prompt)
        self._mentions.append((asset_id, mentioned))
        return done

    @property
    def asset_ids(self) -> list[str]:
        return [d.asset_id for d in self.delivered]

    def commit(
        self,
        sessions: sessionmaker[Session],
        *,
        then: Callable[[Session], bool] | None = None,
    ) -> bool:
        """Write the rows in one transaction and keep the files; True when they were kept.

        `then(session)` runs in the same transaction after the rows are flushed and may
        commit it itself (the campaign queue's `finish` does); when it returns False (the
        item's lease was lost) the transaction is rolled back and the files are deleted.
        """
        started = time.perf_counter()
        try:
            with sessions() as session:
                session.add_all(self._rows)
                for asset_id, found in self._mentions:
                    record_subjects(
                        session, found, kind="asset", object_id=asset_id, brand=self.origin.brand
                    )
                session.flush()
                keep = then(session) if then is not None else True
                if keep:
                    session.commit()
                else:
                    session.rollback()
        except BaseException:
            self.discard()
            raise
        finally:
            self.seconds["store"] += time.perf_counter() - started
        if not keep:
            self.discard()
            return False
        self._kept = True
        return True

    def discard(self) -> None:
        """Delete the files written so far (best effort: retention removes a straggler)."""
        for done in self.delivered:
            try:
                self.store.delete(done.key)
            except Exception:  # noqa: BLE001 (an orphan file is harmless; keep deleting)
                log.warning("could not delete the file %s of a failed delivery", done.key)
        self.delivered.clear()
        self._rows.clear()
        self._mentions.clear()


def deliver_live(
    pictures: Sequence[tuple[Image.Image, Drawing]],
    *,
    fmt: str,
    kit: Any,
    origin: Origin,
    request_id: str,
    store: Store,
    sessions: sessionmaker[Session],
    retention_days: Mapping[str, float] | None = None,
    seconds: dict[str, float] | None = None,
) -> list[Delivered]:
    """Deliver the pictures of one live generate request as `fmt` files, each scored against
    `kit` (None: the version has none): all files and rows are kept, or none is. Each picture
    is scored on the shared scoring threads while this one marks, encodes and stores it (both
    are mostly numpy and codec work outside the GIL). `seconds`, when given, receives the time
    spent per stage: `score` (summed over the pictures' scorings), `encode` and `store`."""
    scoring = [_SCORING.submit(_timed_score, image, kit) for image, _ in pictures]
    try:
        with Delivery(
            store=store, origin=origin, request_id=request_id, retention_days=retention_days
        ) as delivery:
            for (image, drawing), scored in zip(pictures, scoring, strict=True):
                report = partial(_report, scored)
                delivery.add(image, fmt=fmt, drawing=drawing, compliance=report)
            delivery.commit(sessions)
    finally:
        for scored in scoring:
            scored.cancel()  # those not started when a delivery failed
    if seconds is not None:
        done = [f.result()[1] for f in scoring if f.done() and not f.cancelled()]
        seconds.update(score=sum(done), **delivery.seconds)
    return list(delivery.delivered)


# Compliance scoring of live deliveries runs here, beside the request's encoding and storing.
_SCORING = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="score")


def _timed_score(image: Image.Image, kit: Any) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    return score_image(image, kit), time.perf_counter() - started


def _report(scored: Future[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    return scored.result()[0]
