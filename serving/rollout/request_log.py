"""The request log: one row per served request, the evidence the step analysis judges.

The router writes a row per request (its model version and variant, success, latency, image
count and compliance); the controller reads a step's window of rows for each side. Rows are
read as the few columns the analysis uses (`MEASURED`), never as whole objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.db.models import RequestLog, Rollout, utcnow
from serving.rollout.split import Variant

# What the step analysis reads of each request_log row.
MEASURED = (
    RequestLog.ok,
    RequestLog.latency_s,
    RequestLog.images,
    RequestLog.compliance_mean,
    RequestLog.compliance_failed,
)
# A live step at 100 % is judged against at least this many of the champion's latest requests.
BASELINE_REQUESTS = 50


def request_row(
    brand: str,
    version: str | int,
    variant: str,
    *,
    ok: bool,
    latency_s: float,
    images: int,
    compliance_scores: Sequence[float | None],
    compliance_passed: Sequence[bool | None],
    rollout_id: int | None,
    at: datetime | None = None,
) -> RequestLog:
    """One served request as a request_log row (not added to any session): its version and
    variant, success, latency, image count, the mean of its images' compliance scores (None
    when none was scored) and how many images failed the brand kit. Unscored images (None)
    count in neither. A variant that is not champion or canary, or a negative latency or image
    count, is a programming error (ValueError)."""
    if variant not in tuple(Variant):
        raise ValueError(f"variant is one of {', '.join(Variant)}, not {variant!r}")
    if latency_s < 0 or images < 0:
        raise ValueError("latency_s and images cannot be negative")
    scores = [float(s) for s in compliance_scores if s is not None]
    return RequestLog(
        at=at or utcnow(),
        brand=brand,
        model_version=str(version),
        variant=Variant(variant),
        rollout_id=rollout_id,
        ok=bool(ok),
        latency_s=float(latency_s),
        images=int(images),
        compliance_mean=sum(scores) / len(scores) if scores else None,
        compliance_failed=sum(1 for p in compliance_passed if p is False),
    )


def step_window(session: Session, rollout: Rollout, variant: Variant, now: datetime) -> list[Any]:
    """The variant's rows of the rollout's current step (the same window for both sides; in
    shadow mode the canary's rows are the shadow copies)."""
    version = rollout.canary_version if variant == Variant.CANARY else rollout.champion_version
    return list(
        session.execute(
            select(*MEASURED).where(
                RequestLog.brand == rollout.brand,
                RequestLog.at >= rollout.step_started_at,
                RequestLog.at <= now,
                RequestLog.variant == variant,
                RequestLog.model_version == version,
            )
        ).all()
    )


def champion_baseline(session: Session, rollout: Rollout) -> list[Any]:
    """The champion's latest rows before the current step (at most
    `max(min_requests, BASELINE_REQUESTS)`), newest first."""
    return list(
        session.execute(
            select(*MEASURED)
            .where(
                RequestLog.brand == rollout.brand,
                RequestLog.at < rollout.step_started_at,
                RequestLog.variant == Variant.CHAMPION,
                RequestLog.model_version == rollout.champion_version,
            )
            .order_by(RequestLog.at.desc(), RequestLog.id.desc())
            .limit(max(rollout.min_requests, BASELINE_REQUESTS))
        ).all()
    )


# How far back `GET /v1/models` looks for each version's share of images passing the kit.
PASS_RATE_WINDOW_DAYS = 7


def kit_pass_rates(
    session: Session, brand: str, *, since: datetime | None = None
) -> dict[str, dict[str, Any]]:
    """`{version: {"images", "passed", "pass_rate"}}` of the brand's live traffic since `since`
    (default: the last `PASS_RATE_WINDOW_DAYS` days): images scored against the brand kit and
    how many passed it. Requests that failed, and versions without a kit (nothing scored), are
    not counted."""
    from datetime import timedelta

    from sqlalchemy import func

    since = since or utcnow() - timedelta(days=PASS_RATE_WINDOW_DAYS)
    query = (
        select(
            RequestLog.model_version,
            func.sum(RequestLog.images),
            func.sum(RequestLog.compliance_failed),
        )
        .where(
            RequestLog.brand == brand,
            RequestLog.at >= since,
            RequestLog.ok.is_(True),
            RequestLog.compliance_mean.is_not(None),
        )
        .group_by(RequestLog.model_version)
    )
    rates = {}
    for version, images, failed in session.execute(query):
        scored, failed = int(images or 0), int(failed or 0)
        if scored > 0:
            passed = max(scored - failed, 0)
            rates[version] = {
                "images": scored,
                "passed": passed,
                "pass_rate": round(passed / scored, 4),
            }
    return dict(sorted(rates.items()))
