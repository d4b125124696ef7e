"""Data subjects by keyed hash: what a text mentioned before redaction, never in clear.

Each piece of personal data `serving.delivery.redact` finds is normalised, so that the ways a
person writes it give one subject:

    email    lower-cased                                 Jane.Doe@Example.com → jane.doe@example.com
    phone    digits, with the country prefix as written  +44 (0)20 7946 0958 → +442079460958
             (`00` becomes `+`; a national number         0044 20 7946 0958   → +442079460958
             stays national: erase both forms)            020 7946 0958       → 02079460958
    card     digits;  iban: upper case, no spaces;  ip: the address's canonical form (no port);
    url, handle: lower-cased

and hashed as HMAC-SHA256(key, "<kind>:<normalised>"). The key keeps the hashes from being
reversed by hashing guesses (every e-mail address of a customer list) without it. It comes
from `BRANDFORGE_PRIVACY_KEY`, else the key file `BRANDFORGE_PRIVACY_KEY_FILE`, else the file
`privacy.key` beside an SQLite serving database (in the working folder for a server database),
created with 32 random bytes, owner-only, on first use. Every replica and the CLI must use the
same key: set one of the two settings for a PostgreSQL deployment.

`record_subjects(session, texts, kind=..., object_id=..., brand=...)` is called where a stored
object is written: asset rows (`serving.delivery.deliver`), campaigns and their items
(`serving.campaigns.queue.submit`), audit rows (`serving.auth.audit`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving.db.models import SubjectRef
from serving.delivery.redact import redact, redactions
from serving.errors import Unavailable

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

Subject = tuple[str, str]  # (kind, normalised value)
KEY_FILE = "privacy.key"
# What `subject_of` calls a subject that redaction does not recognise (a customer id): it
# has a hash for the erasure's audit row, but no reference is ever recorded under it.
TEXT = "text"


def normalised(kind: str, value: str) -> str:
    """The one form of a subject (see the module docstring)."""
    value = value.strip()
    if kind == "phone":
        digits = re.sub(r"\D", "", value.replace("(0)", ""))
        if value.startswith("+"):
            return "+" + digits
        return "+" + digits[2:] if value.startswith("00") else digits
    if kind == "card":
        return re.sub(r"\D", "", value)
    if kind == "iban":
        return value.replace(" ", "").upper()
    if kind == "ip":
        address = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
        try:
            return ipaddress.ip_address(address).compressed
        except ValueError:
            return value.lower()
    return value.casefold() if kind == TEXT else value.lower()


def subjects_in(text: str | None) -> set[Subject]:
    """Every subject `text` mentions (what redaction would replace), normalised."""
    if not text:
        return set()
    return {(kind, normalised(kind, text[start:end])) for kind, start, end in redactions(text)}


def subject_of(text: str) -> Subject:
    """The subject a person names to erase: (kind, normalised) when `text` is one piece of
    personal data redaction recognises (an e-mail, a phone number...), else (`text`, the
    text case-folded), found only where a stored text kept it in clear."""
    stripped = text.strip()
    spans = redactions(stripped)
    if len(spans) == 1 and spans[0][1] == 0 and spans[0][2] == len(stripped):
        kind = spans[0][0]
        return kind, normalised(kind, stripped)
    return TEXT, normalised(TEXT, stripped)


def subject_hash(key: bytes, subject: Subject) -> str:
    """The keyed hash of a subject (64 hex digits): what `subject_refs` holds."""
    kind, value = subject
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def redacted_detail(detail: Any) -> tuple[Any, set[Subject]]:
    """An audit detail with every text in it redacted, and the subjects those texts held."""
    if isinstance(detail, str):
        return redact(detail), subjects_in(detail)
    found: set[Subject] = set()
    if isinstance(detail, dict):
        out: dict[Any, Any] = {}
        for k, v in detail.items():
            out[k], more = redacted_detail(v)
            found |= more
        return out, found
    if isinstance(detail, list | tuple):
        items = []
        for v in detail:
            clean, more = redacted_detail(v)
            items.append(clean)
            found |= more
        return items, found
    return detail, found


# --------------------------------------------------------------------------------------------
# The key, and recording references (I/O)
# --------------------------------------------------------------------------------------------


class PrivacyKeyError(Unavailable):
    """The privacy key cannot be read or made (a 503: nothing personal is stored without it)."""


def privacy_key(session: Session) -> bytes:
    """The key of the subject hashes for the database `session` is bound to (see above)."""
    from brandforge.settings import get_settings

    settings = get_settings()
    if settings.privacy_key is not None:
        return settings.privacy_key.get_secret_value().encode()
    path = settings.privacy_key_file or _beside_database(session)
    return _key_file(str(Path(path).resolve()))


def _beside_database(session: Session) -> Path:
    bind = session.get_bind()
    url = bind.engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(str(url.database)).parent / KEY_FILE
    return Path(KEY_FILE)


@lru_cache(maxsize=8)
def _key_file(path: str) -> bytes:
    """The key in the file `path`, made (32 random bytes as hex, mode 0600) when missing.

    Made beside the target and hard-linked into place, so two processes starting at once both
    end up with the one complete key the first link put there."""
    target = Path(path)
    try:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
            try:
                os.link(temp, target)
                log.info("made the privacy key file %s (owner-only)", target)
            except FileExistsError:
                pass
            finally:
                temp.unlink()
        text = target.read_text().strip()
        return bytes.fromhex(text)
    except (OSError, ValueError) as err:
        raise PrivacyKeyError(
            f"the privacy key file {target} cannot be used ({err}): give 64 hex digits in it, "
            "or set BRANDFORGE_PRIVACY_KEY"
        ) from None


def record_subjects(
    session: Session, subjects: Iterable[Subject], *, kind: str, object_id: str, brand: str | None
) -> int:
    """Add one `subject_refs` row per subject for the stored object (`kind`, `object_id`);
    returns how many. Adds, does not flush or commit: the caller's transaction keeps the
    object and its references together."""
    unique = set(subjects)
    if not unique:
        return 0
    key = privacy_key(session)
    session.add_all(
        SubjectRef(subject_hash=subject_hash(key, s), kind=kind, object_id=object_id, brand=brand)
        for s in sorted(unique)
    )
    return len(unique)
