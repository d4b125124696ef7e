"""API keys, roles, brands and the audit log of the serving tier (DESIGN.md, decision 7).

Every key carries its roles AND the brands it may touch, so one brand's key can never read or
change another brand's objects. Roles:

- `generate`: produce assets and read its brands' assets;
- `review`: approve or reject assets (feedback for training);
- `deploy`: start, promote or roll back a canary;
- `admin`: implies every other role (on its brands only: brands and roles are independent).

A key is `bf_` + 43 URL-safe characters (256 random bits). The database keeps its SHA-256 and
its first 12 characters only; the plaintext is shown once, at creation.

The HTTP layer maps the two exceptions: `AuthError` → 401 (no, unknown or revoked key),
`Forbidden` → 403 (a valid key without the role or brand needed). Both carry `status_code`.

Functions take a `Session` and never commit: the caller owns the transaction, so a change and
its audit row are committed together or not at all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from brandforge.names import brand_problem
from serving.db.models import NAME_MAX, ApiKey, AuditLog, utcnow
from serving.privacy.subjects import record_subjects, redacted_detail

ROLES = ("generate", "review", "deploy", "admin")
ADMIN = "admin"
ALL_BRANDS = "*"
KEY_PREFIX = "bf_"
# Shown in listings and logs to tell keys apart: "bf_" + 9 random characters (54 bits), which
# leaves ~202 unknown bits in the rest of the key.
PREFIX_LEN = 12
# Actor names the system itself writes into the audit log; no key may take them.
RESERVED_NAMES = ("system",)
RESERVED_NAME_PREFIXES = ("cli:",)
# `last_used_at` is written at most this often per key: a database write on every request
# would serialise all requests on SQLite and bloat PostgreSQL for no added information.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class AccessError(Exception):
    """Base of the errors the HTTP layer turns into a response with `status_code`."""

    status_code = 400


class AuthError(AccessError):
    """No key, an unknown key or a revoked key: HTTP 401."""

    status_code = 401


class Forbidden(AccessError):
    """A valid key without the role or the brand the action needs: HTTP 403."""

    status_code = 403


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name, its roles and its brands (`{"*"}` = every brand), and
    its own admission limits (None: the settings' defaults; `serving.admission`)."""

    name: str
    roles: frozenset[str]
    brands: frozenset[str]
    rate_per_minute: int | None = None
    daily_images: int | None = None

    @property
    def all_brands(self) -> bool:
        """Whether the key may touch every brand (listings then need no brand filter)."""
        return ALL_BRANDS in self.brands

    def has_role(self, role: str) -> bool:
        """Whether the key holds `role` (`admin` holds every role)."""
        _check_role(role)
        return ADMIN in self.roles or role in self.roles

    def can_access(self, brand: str) -> bool:
        """Whether the key may touch `brand`."""
        return self.all_brands or brand in self.brands

    def can(self, role: str, brand: str | None = None) -> bool:
        """Whether the key may act as `role`, on `brand` when given.

        `brand=None` checks the role only: use it for actions that touch no brand's object;
        anything that belongs to a brand (asset, campaign, rollout) must pass its brand.
        An unknown role is a programming error (`ValueError`), not a silent False.
        """
        return self.has_role(role) and (brand is None or self.can_access(brand))

    def require(self, role: str, brand: str | None = None) -> None:
        """Raise `Forbidden`, saying which role or brand was needed, unless `can(role, brand)`."""
        if not self.has_role(role):
            held = ", ".join(sorted(self.roles)) or "none"
            raise Forbidden(f"API key {self.name!r} lacks role {role!r} (it has: {held})")
        if brand is not None and not self.can_access(brand):
            allowed = ", ".join(sorted(self.brands))
            raise Forbidden(
                f"API key {self.name!r} may not act on brand {brand!r} (its brands: {allowed})"
            )


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")


def hash_key(key: str) -> str:
    """The SHA-256 hex digest of a key: the only form in which a key is stored.

    A fast, unsalted hash is right here, unlike for passwords: the key is 256 bits from a
    CSPRNG, so guessing it (or any preimage of its hash) takes ~2^255 tries however fast the
    hash is. Slow salted KDFs (bcrypt, scrypt, argon2) exist to stop dictionary attacks on
    low-entropy human passwords, which do not apply. Being deterministic, the hash is also the
    lookup key (unique index), and it costs microseconds on every request, not 100 ms.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _normalise_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValueError("the key name is empty; give a name saying who or what uses it")
    if len(name) > NAME_MAX:
        raise ValueError(f"the key name is {len(name)} characters long; at most {NAME_MAX}")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise ValueError(f"the key name {name!r} contains control characters")
    if name in RESERVED_NAMES or name.startswith(RESERVED_NAME_PREFIXES):
        raise ValueError(
            f"the key name {name!r} is reserved for audit actors "
            f"({', '.join(RESERVED_NAMES)}, {', '.join(p + '...' for p in RESERVED_NAME_PREFIXES)})"
        )
    return name


def _normalise_roles(roles: Iterable[str]) -> list[str]:
    given = {r.strip() for r in roles if r.strip()}
    if not given:
        raise ValueError(f"give at least one role; valid roles: {', '.join(ROLES)}")
    unknown = sorted(given - set(ROLES))
    if unknown:
        raise ValueError(
            f"unknown role{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"valid roles: {', '.join(ROLES)}"
        )
    return [r for r in ROLES if r in given]  # canonical order


def _normalise_brands(brands: Iterable[str]) -> list[str]:
    given = {b.strip() for b in brands if b.strip()}
    if not given:
        raise ValueError(f"give at least one brand, or {ALL_BRANDS!r} for every brand")
    if ALL_BRANDS in given:
        if len(given) > 1:
            raise ValueError(
                f"{ALL_BRANDS!r} (every brand) cannot be combined with named brands "
                f"({', '.join(sorted(given - {ALL_BRANDS}))})"
            )
        return [ALL_BRANDS]
    problems = [problem for b in sorted(given) if (problem := brand_problem(b)) is not None]
    if problems:
        raise ValueError("; ".join(problems))
    return sorted(given)


def check_limits(*, rate_per_minute: int | None, daily_images: int | None) -> None:
    """ValueError naming the bound unless each given limit is a whole number in its bounds
    (requests per minute up to 1,000,000; images per UTC day up to 1,000,000,000)."""
    bounds = {
        "rate_per_minute": (rate_per_minute, "requests per minute", 1_000_000),
        "daily_images": (daily_images, "images per UTC day", 1_000_000_000),
    }
    for field, (value, what, most) in bounds.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise ValueError(f"{field} {value!r}: give 1 to {most:,} {what}")


def create_key(
    session: Session,
    *,
    name: str,
    roles: Iterable[str],
    brands: Iterable[str],
    rate_per_minute: int | None = None,
    daily_images: int | None = None,
) -> tuple[str, ApiKey]:
    """Create an API key; return the plaintext key (show it once, it is not stored) and its row.

    `roles` from `ROLES`; `brands` are brand names, or `["*"]` for every brand;
    `rate_per_minute` and `daily_images` the key's own admission limits (None: the settings'
    defaults). Raises `ValueError` for an empty or duplicate name, no or unknown roles (naming
    the valid ones), no or malformed brands, or a limit out of bounds. Flushes, does not
    commit. When the name is taken by a concurrent writer between the check and the insert,
    the session is rolled back.
    """
    name = _normalise_name(name)
    role_list = _normalise_roles(roles)
    brand_list = _normalise_brands(brands)
    check_limits(rate_per_minute=rate_per_minute, daily_images=daily_images)
    if session.scalar(select(exists().where(ApiKey.name == name))):
        raise ValueError(f"an API key named {name!r} already exists")

    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        key_prefix=key[:PREFIX_LEN],
        key_hash=hash_key(key),
        roles=",".join(role_list),
        brands=",".join(brand_list),
        created_at=utcnow(),
        rate_per_minute=rate_per_minute,
        daily_images=daily_images,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise ValueError(f"an API key named {name!r} already exists") from None
    return key, row


def _principal(row: ApiKey) -> Principal:
    return Principal(
        name=row.name,
        roles=frozenset(row.role_list),
        brands=frozenset(row.brand_list),
        rate_per_minute=row.rate_per_minute,
        daily_images=row.daily_images,
    )


def authenticate(session: Session, key: str | None) -> Principal | None:
    """The principal of `key`, or None for no key, an unknown key or a revoked key.

    Looks the key up by its hash, then compares the hashes in constant time. Records
    `last_used_at` (at most once a minute per key; flushed, not committed).
    """
    if not key or not key.startswith(KEY_PREFIX):
        return None
    digest = hash_key(key)
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).one_or_none()
    # The lookup already matched the hash; comparing again in constant time is defence in
    # depth should the lookup ever become a prefix or case-insensitive match.
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    if row.revoked_at is not None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.flush()
    return _principal(row)


def require_principal(session: Session, key: str | None) -> Principal:
    """`authenticate`, raising `AuthError` (401) instead of returning None."""
    if not key:
        raise AuthError("missing API key")
    principal = authenticate(session, key)
    if principal is None:
        raise AuthError("invalid or revoked API key")
    return principal


def get_key(session: Session, name: str) -> ApiKey | None:
    """The key row named `name` (revoked or not), or None."""
    return session.scalars(select(ApiKey).where(ApiKey.name == name.strip())).one_or_none()


def revoke_key(session: Session, name: str, *, at: datetime | None = None) -> ApiKey:
    """Revoke the key named `name`: it no longer authenticates, and cannot be un-revoked.

    Idempotent: a key already revoked keeps its first `revoked_at`. Raises `ValueError` when
    no key has that name. Flushes, does not commit.
    """
    row = get_key(session, name)
    if row is None:
        raise ValueError(f"no API key named {name.strip()!r}")
    if row.revoked_at is None:
        row.revoked_at = at or utcnow()
        session.flush()
    return row


UNCHANGED: Any = object()  # `set_limits`: leave this limit as it is


def set_limits(
    session: Session, name: str, *, rate_per_minute: Any = UNCHANGED, daily_images: Any = UNCHANGED
) -> ApiKey:
    """Change a key's own admission limits (None: back to the settings' defaults; a limit not
    passed stays). ValueError for no such key or a limit out of bounds. Flushes, no commit."""
    row = get_key(session, name)
    if row is None:
        raise ValueError(f"no API key named {name.strip()!r}")
    given = {"rate_per_minute": rate_per_minute, "daily_images": daily_images}
    given = {k: v for k, v in given.items() if v is not UNCHANGED}
    check_limits(
        rate_per_minute=given.get("rate_per_minute"), daily_images=given.get("daily_images")
    )
    for field, value in given.items():
        setattr(row, field, value)
    session.flush()
    return row


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def has_any_key(session: Session) -> bool:
    """Whether at least one key is usable (not revoked): the server refuses to start without
    one outside `--dev`, since nobody could call it (revoked keys do not count)."""
    return bool(session.scalar(select(exists().where(ApiKey.revoked_at.is_(None)))))


def audit(
    session: Session, actor: str, action: str, brand: str | None = None, **detail: Any
) -> AuditLog:
    """Write one audit row: `actor` (a key's name, `cli:<login>` or `system`) did `action`
    (e.g. `api_key.create`) to `brand`, with `detail` as JSON (values that JSON cannot hold
    are written as `str()`). Never pass a secret in `detail`. Flushes, does not commit.

    Personal data in the texts of `detail` (a reason that quotes an e-mail address) is
    redacted, and recorded by keyed hash for erasure (`serving.privacy`)."""
    clean, mentioned = redacted_detail(dict(detail))
    row = AuditLog(at=utcnow(), actor=actor, action=action, brand=brand, detail=clean)
    session.add(row)
    session.flush()
    if mentioned:
        record_subjects(session, mentioned, kind="audit_log", object_id=str(row.id), brand=brand)
        session.flush()
    return row
