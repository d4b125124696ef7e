"""Data subjects by keyed hash (serving.privacy.subjects): one subject however it is written,
the key file made owner-only beside the database, and references recorded where objects are
written (delivery, campaign submission, the audit log), never the subject in clear."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from brandforge.settings import get_settings
from serving.db.engine import engine_for, session_factory
from serving.db.migrate import upgrade
from serving.db.models import AuditLog, SubjectRef
from serving.privacy.subjects import (
    TEXT,
    _key_file,
    privacy_key,
    redacted_detail,
    subject_hash,
    subject_of,
    subjects_in,
)


@pytest.mark.parametrize(
    ("written", "subject"),
    [
        ("Jane.Doe@Example.com", ("email", "jane.doe@example.com")),
        (" jane.doe@example.com ", ("email", "jane.doe@example.com")),
        ("+44 20 7946 0958", ("phone", "+442079460958")),
        ("+44 (0)20 7946 0958", ("phone", "+442079460958")),
        ("0044 20 7946 0958", ("phone", "+442079460958")),
        ("020 7946 0958", ("phone", "02079460958")),
        ("4111 1111 1111 1111", ("card", "4111111111111111")),
        ("GB82 WEST 1234 5698 7654 32", ("iban", "GB82WEST12345698765432")),
        ("2001:DB8::8A2E:370:7334", ("ip", "2001:db8::8a2e:370:7334")),
        ("192.168.1.20:8080", ("ip", "192.168.1.20")),
        ("@Jane_Doe", ("handle", "@jane_doe")),
        ("CUST-00042", (TEXT, "cust-00042")),  # not personal data redaction knows
        ("mail jane@example.com", (TEXT, "mail jane@example.com")),  # not one subject
    ],
)
def test_a_subject_has_one_form_however_it_is_written(written: str, subject: tuple) -> None:
    assert subject_of(written) == subject


def test_a_text_mentions_each_subject_once_in_its_normal_form() -> None:
    found = subjects_in("mail JANE@example.com or jane@example.com, call 0044 20 7946 0958")
    assert found == {("email", "jane@example.com"), ("phone", "+442079460958")}
    assert subjects_in("spring sale banner 1080x1080, 16:9, 2026") == set()


def test_hashes_are_keyed() -> None:
    subject = ("email", "jane@example.com")
    one, other = subject_hash(b"k" * 32, subject), subject_hash(b"x" * 32, subject)
    assert one != other and len(one) == 64 and "jane" not in one
    assert subject_hash(b"k" * 32, ("email", "john@example.com")) != one


def test_an_audit_detail_is_redacted_and_says_whom_it_mentioned() -> None:
    detail, found = redacted_detail(
        {"reason": "asked by jane@example.com", "n": 3, "tags": ["+44 20 7946 0958", None]}
    )
    assert detail == {"reason": "asked by [email]", "n": 3, "tags": ["[phone]", None]}
    assert found == {("email", "jane@example.com"), ("phone", "+442079460958")}


def test_the_key_file_is_made_owner_only_beside_an_sqlite_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRANDFORGE_PRIVACY_KEY", raising=False)
    get_settings.cache_clear()
    _key_file.cache_clear()
    engine = engine_for(f"sqlite:///{tmp_path / 'state' / 'serving.db'}")
    upgrade(engine)
    try:
        with session_factory(engine)() as session:
            key = privacy_key(session)
            assert privacy_key(session) == key and len(key) == 32
        path = tmp_path / "state" / "privacy.key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert bytes.fromhex(path.read_text()) == key
        assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []
        _key_file.cache_clear()
        with session_factory(engine)() as session:  # a second process reads the same key
            assert privacy_key(session) == key
        path.write_text("not hex\n")
        _key_file.cache_clear()
        with session_factory(engine)() as session, pytest.raises(Exception, match="64 hex"):
            privacy_key(session)
    finally:
        engine.dispose()
        _key_file.cache_clear()
        get_settings.cache_clear()


def test_an_audit_row_records_its_subjects_by_hash_only(db_engine) -> None:
    from serving.auth import audit

    sessions = session_factory(db_engine)
    with sessions() as session:
        row = audit(session, "ops", "asset.reject", "acme", reason="ask jane@example.com")
        audit(session, "ops", "asset.reject", "acme", reason="too dark")
        session.commit()
        assert session.get(AuditLog, row.id).detail == {"reason": "ask [email]"}
        refs = session.scalars(select(SubjectRef)).all()
        key = privacy_key(session)
    assert [(r.kind, r.object_id, r.brand) for r in refs] == [("audit_log", str(row.id), "acme")]
    assert refs[0].subject_hash == subject_hash(key, ("email", "jane@example.com"))
