"""Admission: what one generation request may cost, and how many a key and a brand may make.

Cost. A request costs `width x height / native**2 x steps x images` cost units: one unit is one
image at the served version's native size for one denoising step (`registry.limits`). Work per
image grows with the pixel count and the steps, so the unit is roughly constant for one base
and a limit in units means the same on a 32 px base as on a 1024 px one. Each version records
its own limit at registration (`brandforge.max_cost`, params.yaml `register.max_cost`);
settings override it (`BRANDFORGE_MAX_REQUEST_COST`, or `max_cost` in `BRANDFORGE_BRAND_LIMITS`).
A request above the limit is refused (422) before anything is drawn, naming its numbers.

Rate limits and quotas. Generation requests (`POST /v1/generate`, a campaign submission) are
counted per key and per brand in fixed UTC windows: `requests` per minute and `images` per UTC
day. A key's own limits (`brandforge keys limits`) replace the settings' defaults
(`BRANDFORGE_RATE_PER_MINUTE`, `BRANDFORGE_DAILY_IMAGES`); a brand's limits
(`BRANDFORGE_BRAND_LIMITS`) hold over all of its keys together. Over a limit the request is
refused (429) with the seconds until the window ends. Fixed windows let a client spend two
windows' worth around a boundary; that is the price of one row per window instead of a log of
every request.

The counts live in the serving database (`usage_windows`), so every ingress replica sees the
same ones: each request adds to its rows with one atomic upsert (`INSERT ... ON CONFLICT DO
UPDATE ... RETURNING count`, on SQLite and PostgreSQL alike) and checks what it got back; a
refused request's additions roll back with its transaction. PostgreSQL's row lock (SQLite's
write lock) serialises the upserts of one row, so no update is lost. Rows are taken in one
order (sorted scope, metric), so two requests never wait on each other in a cycle.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, or_, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from serving.db.models import UsageWindow, utcnow
from serving.errors import Invalid, RateLimited

if TYPE_CHECKING:
    from brandforge.settings import BrandLimits, Settings
    from serving.auth import Principal

log = logging.getLogger(__name__)

# What is counted, and over which window (seconds): requests per minute, images per UTC day.
WINDOWS = {"requests": ("minute", 60), "images": ("day", 86_400)}
# Old windows deleted per new window at most: keeps one request's clean-up short.
PURGE_BATCH = 500
# Bounds of a key's own limits (`brandforge keys create --rate/--daily-images`).
MAX_RATE_PER_MINUTE = 1_000_000
MAX_DAILY_IMAGES = 1_000_000_000


# -- cost (pure) -----------------------------------------------------------------------------


def request_cost(*, width: int, height: int, steps: int, images: int, native: int) -> float:
    """The cost of drawing `images` images of `width` x `height` px in `steps` steps, in units
    of one native-size image at one step."""
    return width * height / (native * native) * steps * images


def cost_problem(
    *, cost: float, limit: int, formula: str, model: str, native: int, lower: str
) -> str | None:
    """Why a request of `cost` units is refused (None: it is within `limit`). `formula` shows
    its numbers (`steps x width x height x n = 20 x 512 x 512 x 1`), `lower` what to lower."""
    if cost <= limit:
        return None
    return (
        f"{formula} costs {cost:,.0f} units (one unit: one {native}x{native} image at one "
        f"step), above the limit of {limit:,} units of {model}; lower {lower}"
    )


def check_cost(
    policy: Policy,
    *,
    brand: str,
    model: str,
    native: int,
    version_limit: int,
    size: tuple[int, int],
    steps: int,
    images: int,
    images_field: str = "n",
    lower: str = "steps, n or width and height",
) -> None:
    """Raise `Invalid` for a request above its cost limit (`Policy.max_cost`), naming the
    fields, their values and the limit."""
    width, height = size
    cost = request_cost(width=width, height=height, steps=steps, images=images, native=native)
    problem = cost_problem(
        cost=cost,
        limit=policy.max_cost(brand, version_limit),
        formula=(
            f"steps x width x height x {images_field} = {steps} x {width} x {height} x {images}"
        ),
        model=model,
        native=native,
        lower=lower,
    )
    if problem is not None:
        raise Invalid(problem)


# -- limits (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """One limit that applies to a request: `limit` of `metric` per window for one scope."""

    scope: str  # "key" or "brand"
    name: str  # the key's name or the brand
    metric: str  # "requests" or "images"
    limit: int

    @property
    def scope_id(self) -> str:
        """The `usage_windows.scope` of this limit's counts (`key:app`, `brand:acme`)."""
        return f"{self.scope}:{self.name}"

    @property
    def window(self) -> str:
        return WINDOWS[self.metric][0]

    def describe(self) -> dict[str, object]:
        """The limit as the 429 answer names it."""
        return {
            "scope": self.scope,
            "name": self.name,
            "metric": self.metric,
            "limit": self.limit,
            "window": self.window,
        }


@dataclass(frozen=True)
class Policy:
    """The settings' admission limits (`Policy.from_settings`); 0: no per-key default."""

    rate_per_minute: int = 120
    daily_images: int = 10_000
    max_request_cost: int | None = None
    brand_limits: Mapping[str, BrandLimits] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Policy:
        from brandforge.settings import get_settings

        s = settings or get_settings()
        return cls(s.rate_per_minute, s.daily_images, s.max_request_cost, dict(s.brand_limits))

    def _brand(self, brand: str) -> BrandLimits | None:
        return self.brand_limits.get(brand) or self.brand_limits.get("*")

    def limits(self, principal: Principal, brand: str) -> list[Limit]:
        """Every limit a generation request of `principal` for `brand` counts against, in the
        order their rows are taken (sorted, so concurrent requests never wait in a cycle)."""
        found = []
        rate = principal.rate_per_minute or self.rate_per_minute
        daily = principal.daily_images or self.daily_images
        if rate:
            found.append(Limit("key", principal.name, "requests", rate))
        if daily:
            found.append(Limit("key", principal.name, "images", daily))
        own = self._brand(brand)
        if own is not None and own.rate_per_minute:
            found.append(Limit("brand", brand, "requests", own.rate_per_minute))
        if own is not None and own.daily_images:
            found.append(Limit("brand", brand, "images", own.daily_images))
        return sorted(found, key=lambda limit: (limit.scope_id, limit.metric))

    def max_cost(self, brand: str, version_limit: int) -> int:
        """The cost limit of a request for `brand` on a version recorded with `version_limit`:
        the brand's setting, else the global setting, else the version's own."""
        own = self._brand(brand)
        if own is not None and own.max_cost:
            return own.max_cost
        return self.max_request_cost or version_limit


def window_start(metric: str, now: datetime) -> datetime:
    """The start of the window of `metric` that holds `now` (UTC minute or UTC day)."""
    if WINDOWS[metric][0] == "minute":
        return now.replace(second=0, microsecond=0)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def retry_after_s(metric: str, now: datetime) -> int:
    """Whole seconds until the window of `metric` that holds `now` ends (at least 1)."""
    end = window_start(metric, now) + timedelta(seconds=WINDOWS[metric][1])
    return max(1, math.ceil((end - now).total_seconds()))


def refusal(limit: Limit, *, used: int, now: datetime) -> RateLimited | None:
    """The 429 for a window that holds `used` with this request counted (None: within)."""
    if used <= limit.limit:
        return None
    wait = retry_after_s(limit.metric, now)
    who = f"API key {limit.name!r}" if limit.scope == "key" else f"brand {limit.name!r}"
    return RateLimited(
        f"{who} is over its limit of {limit.limit:,} {limit.metric} per {limit.window} "
        f"(this {limit.window}: {min(used, limit.limit):,} used); retry in {wait} s",
        retry_after_s=wait,
        limit={**limit.describe(), "retry_after_s": wait},
    )


def never_fits(limit: Limit, amount: int) -> Invalid | None:
    """A request larger than a whole window's limit can never pass: a 422, not a 429."""
    if amount <= limit.limit:
        return None
    who = f"API key {limit.name!r}" if limit.scope == "key" else f"brand {limit.name!r}"
    return Invalid(
        f"this request needs {amount:,} {limit.metric}, more than {who} may use in a whole "
        f"{limit.window} ({limit.limit:,}); split it"
    )


# -- counting (database) ---------------------------------------------------------------------


def _insert(session: Session) -> Any:
    """The dialect's INSERT (both have `on_conflict_do_update`; the generic one has not)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(UsageWindow)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(UsageWindow)


def add_usage(session: Session, *, scope: str, metric: str, start: datetime, amount: int) -> int:
    """Add `amount` to one window's count, atomically; returns the count after the addition.
    Flushes nothing else and does not commit: the caller's transaction holds the row."""
    stmt = _insert(session).values(scope=scope, metric=metric, window_start=start, count=amount)
    stmt = stmt.on_conflict_do_update(
        index_elements=["scope", "metric", "window_start"],
        set_={"count": UsageWindow.count + stmt.excluded["count"]},
    ).returning(UsageWindow.count)
    return int(session.execute(stmt).scalar_one())


def purge(session: Session, now: datetime) -> int:
    """Delete at most `PURGE_BATCH` windows that have ended; returns how many. Rows another
    transaction holds are skipped (PostgreSQL), never waited for."""
    ended = or_(
        *(
            (UsageWindow.metric == metric) & (UsageWindow.window_start < window_start(metric, now))
            for metric in WINDOWS
        )
    )
    key = (UsageWindow.scope, UsageWindow.metric, UsageWindow.window_start)
    batch = select(*key).where(ended).limit(PURGE_BATCH).with_for_update(skip_locked=True)
    result = session.execute(delete(UsageWindow).where(tuple_(*key).in_(batch)))
    return int(getattr(result, "rowcount", 0) or 0)


def admit(
    session: Session, limits: list[Limit], amounts: Mapping[str, int], *, now: datetime
) -> None:
    """Count `amounts` (metric → how many) against every limit, in order; raise `Invalid`
    for a request no window could hold and `RateLimited` for one over a limit. The caller
    commits on success and must roll back on an error (the additions go with it)."""
    for limit in limits:
        amount = amounts.get(limit.metric, 0)
        if amount <= 0:
            continue
        too_large = never_fits(limit, amount)
        if too_large is not None:
            raise too_large
        start = window_start(limit.metric, now)
        used = add_usage(
            session, scope=limit.scope_id, metric=limit.metric, start=start, amount=amount
        )
        refused = refusal(limit, used=used, now=now)
        if refused is not None:
            raise refused
        if used == amount:  # the first request of a new window: clear out ended ones
            purge(session, now)


def admit_request(
    sessions: sessionmaker[Session],
    policy: Policy,
    principal: Principal,
    brand: str,
    *,
    images: int,
    now: datetime | None = None,
) -> None:
    """Count one generation request of `images` images for `principal` on `brand` in a
    transaction of its own: committed when admitted, rolled back when refused."""
    limits = policy.limits(principal, brand)
    if not limits:
        return
    with sessions() as session:
        admit(session, limits, {"requests": 1, "images": images}, now=now or utcnow())
        session.commit()
