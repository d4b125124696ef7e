"""Personal data redaction in prompts (serving.delivery.redact): what must go, what must stay."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator

import pytest

from serving.delivery import redact as redact_module
from serving.delivery.redact import (
    KINDS,
    RedactFilter,
    iban_ok,
    install_log_redaction,
    luhn_ok,
    redact,
    redactions,
)

# (prompt, redacted): each kind in the formats people write it, inside a sentence.
POSITIVES = [
    # e-mail
    ("mail jane.doe@example.com now", "mail [email] now"),
    ("reach me at j.o+promo@mail.example.co.uk.", "reach me at [email]."),
    ("JANE_DOE@EXAMPLE.ORG", "[email]"),
    # phone: international
    ("call +44 20 7946 0958 today", "call [phone] today"),
    ("+1 (555) 123-4567", "[phone]"),
    ("+49 (0)30 1234567", "[phone]"),
    ("+33612345678", "[phone]"),
    ("+31-6-1234-5678", "[phone]"),
    ("0044 20 7946 0958", "[phone]"),
    ("ring +44 20 7946 0958 in 2026", "ring [phone] in 2026"),  # the year is not swallowed
    # phone: national
    ("(555) 123-4567", "[phone]"),
    ("555-123-4567", "[phone]"),
    ("555.123.4567", "[phone]"),
    ("1-800-555-0199", "[phone]"),
    ("020 7946 0958", "[phone]"),
    ("07700 900123 or 07700-900-123", "[phone] or [phone]"),
    ("06 12 34 56 78", "[phone]"),
    ("06.12.34.56.78", "[phone]"),
    ("030/1234567", "[phone]"),
    ("0171 1234567", "[phone]"),
    # payment cards (Luhn-valid test numbers)
    ("card 4111 1111 1111 1111 thanks", "card [card] thanks"),
    ("4111-1111-1111-1111", "[card]"),
    ("5500005555555559", "[card]"),
    ("amex 3782 822463 10005", "amex [card]"),
    ("4111 1111 1111 1111 2026", "[card] 2026"),
    # IBAN (mod-97 valid)
    ("pay to GB82 WEST 1234 5698 7654 32 please", "pay to [iban] please"),
    ("DE89370400440532013000", "[iban]"),
    ("de89 3704 0044 0532 0130 00 for acme", "[iban] for acme"),
    ("FR1420041010050500013M02606", "[iban]"),
    # IP addresses
    ("from host 192.168.1.20.", "from host [ip]."),
    ("10.0.0.1:8080", "[ip]"),
    ("2001:db8::8a2e:370:7334", "[ip]"),
    ("via fe80::1, then", "via [ip], then"),
    ("::ffff:192.0.2.1", "[ip]"),
    ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "[ip]"),
    # handles
    ("hi @jane_doe!", "hi [handle]!"),
    ("tag @acme.official and @bob", "tag [handle] and [handle]"),
    # URLs with query strings, tokens or credentials
    ("see https://acme.com/p?token=abc123.", "see [url]."),
    ("www.acme.com/offer?uid=42", "[url]"),
    ("https://user:pw@host.com/x", "[url]"),
    ("https://acme.com/reset/aB3dEf9hIjKlMn0pQr", "[url]"),
    ("(https://acme.com/a?b=c)", "([url])"),
    ("https://acme.com/#access_token=xyz", "[url]"),
    ("https://example.com/u?email=jane@example.com", "[url]"),  # one URL, not URL + e-mail
    # several in one prompt
    (
        "acme 16:9 banner for jane@x.io, +44 20 7946 0958, 30% off",
        "acme 16:9 banner for [email], [phone], 30% off",
    ),
]

# Marketing prompts and other text that must come through unchanged.
NEGATIVES = [
    "acme banner 16:9, spring 2026 sale, 30% off, size 1080x1080, call 4 action",
    "3 colours, 2 logos, 12 variants, 1024 px, 4K, 60 fps",
    "1920 x 1080 px, ratio 4:5, 9:16 story",
    "RGB 26 158 158, hex #1A9E9E, Pantone 7704 C",
    "launch 2026-03-15, 05.06.2026 10:30, Q3 2026, at 10:30:00",
    "version 1.2.3, v1.2.3.4, ISO 9001:2015",
    "price 1,299.00 EUR, was 1.499,00, now 999",
    "+20% brightness, -15% saturation, top 10 tips",
    "orders 2026 2027 2028",
    "4111 1111 1111 1112",  # fails Luhn
    "1234 5678 9012 3456",  # issuer digit 1: no card
    "EAN 4006381333931",
    "GB82 WEST 1234 5698 7654 33",  # fails mod-97
    "use logo@2x.png and icon@3x.webp",
    "https://acme.com/spring-sale and www.acme.com/summer-collection-2026",
    "email us, @ the booth, price @ 30",
    "std::vector, Note:: see",
    "256.300.1.1 is no address",
    "room 101, page 42, year 1999",
    "",
]


@pytest.mark.parametrize(("prompt", "expected"), POSITIVES)
def test_personal_data_is_replaced_by_its_kind(prompt: str, expected: str) -> None:
    assert redact(prompt) == expected


@pytest.mark.parametrize("prompt", NEGATIVES)
def test_marketing_text_comes_through_unchanged(prompt: str) -> None:
    assert redactions(prompt) == []
    assert redact(prompt) == prompt


def test_redactions_give_kind_and_span() -> None:
    text = "jane@x.io or +44 20 7946 0958 from 10.0.0.1 @jd"
    spans = redactions(text)
    assert [(kind, text[start:end]) for kind, start, end in spans] == [
        ("email", "jane@x.io"),
        ("phone", "+44 20 7946 0958"),
        ("ip", "10.0.0.1"),
        ("handle", "@jd"),
    ]
    assert {kind for kind, _, _ in spans} <= set(KINDS)


def test_redacting_twice_changes_nothing_more() -> None:
    for prompt, _ in POSITIVES:
        once = redact(prompt)
        assert redact(once) == once


@pytest.mark.parametrize(
    ("number", "ok"),
    [("4111 1111 1111 1111", True), ("79927398713", True), ("79927398710", False), ("", False)],
)
def test_luhn(number: str, ok: bool) -> None:
    assert luhn_ok(number) is ok


@pytest.mark.parametrize(
    ("iban", "ok"),
    [
        ("GB82 WEST 1234 5698 7654 32", True),
        ("gb82west12345698765432", True),
        ("GB82 WEST 1234 5698 7654 31", False),
        ("GB82", False),
    ],
)
def test_iban_checksum(iban: str, ok: bool) -> None:
    assert iban_ok(iban) is ok


@pytest.mark.parametrize(
    "hostile",
    [
        "0" * 20_000,
        "1 " * 10_000,
        "a:" * 10_000,
        "@" * 20_000,
        "+1 " * 7_000,
        "https://x.com/?" + "a=" * 10_000,
        "aaaa." * 4_000 + "@",
        "DE89 " * 4_000,
    ],
)
def test_long_hostile_input_is_fast(hostile: str) -> None:
    started = time.perf_counter()
    redact(hostile)
    assert time.perf_counter() - started < 2.0


def test_the_log_filter_redacts_messages_and_their_arguments(caplog) -> None:
    logger = logging.getLogger("tests.redact")
    logger.addFilter(RedactFilter())
    try:
        with caplog.at_level(logging.INFO, logger="tests.redact"):
            logger.info("prompt %r from %s", "banner for jane@x.io", "10.0.0.1")
            logger.info("prompt %s", "spring 2026 sale, 16:9")
    finally:
        logger.filters.clear()
    assert caplog.messages == [
        "prompt 'banner for [email]' from [ip]",
        "prompt spring 2026 sale, 16:9",
    ]


PROMPT = "poster for the launch, call +44 20 7946 0958 or mail jane.doe@example.com"
REDACTED = "poster for the launch, call [phone] or mail [email]"


@pytest.fixture
def log_redaction(monkeypatch) -> Iterator[None]:
    """`install_log_redaction()` for one test: the record factory and every filter it adds are
    taken away again afterwards, so other tests see logging as they found it."""
    monkeypatch.setattr(redact_module, "_factory_installed", False)
    factory = logging.getLogRecordFactory()
    try:
        yield
    finally:
        logging.setLogRecordFactory(factory)
        filterers = [logging.lastResort, *logging.root.handlers]
        for logger in logging.root.manager.loggerDict.values():
            if isinstance(logger, logging.Logger):
                filterers += [logger, *logger.handlers]
        for filterer in filterers:
            if filterer is not None:
                filterer.filters = [f for f in filterer.filters if not isinstance(f, RedactFilter)]


def _capture(logger: logging.Logger) -> io.StringIO:
    """What a handler attached straight to `logger` (after installing) writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    return stream


def test_prompts_in_serving_logs_are_redacted_at_info_and_in_an_error_path(
    log_redaction, caplog
) -> None:
    install_log_redaction()
    # a module logger made after installing (a lazily imported module), on its own handler
    logger = logging.getLogger("serving.api.routes.generate_later")
    stream = _capture(logger)
    try:
        with caplog.at_level(logging.INFO):
            logger.info("generate: prompt %r (n=%d)", PROMPT, 2)
            try:
                raise RuntimeError(f"the generator failed on {PROMPT}")
            except RuntimeError:
                logger.exception("generation failed for %s", PROMPT)
    finally:
        logger.handlers.clear()
    for text in (stream.getvalue(), caplog.text):
        assert f"generate: prompt '{REDACTED}' (n=2)" in text
        assert f"generation failed for {REDACTED}" in text
        assert f"RuntimeError: the generator failed on {REDACTED}" in text  # the traceback
        assert "jane.doe" not in text and "7946" not in text
    assert "Traceback (most recent call last)" in stream.getvalue()


def test_ray_serve_records_and_root_handlers_are_redacted(log_redaction, caplog) -> None:
    install_log_redaction()
    serve = logging.getLogger("ray.serve")
    stream = _capture(serve)  # Serve replaces its handlers when a replica starts
    other = logging.getLogger("tests.some_library")
    try:
        with caplog.at_level(logging.INFO):
            serve.warning("replica error: %s", PROMPT)
            other.warning("a library repeats %s", PROMPT)  # only the handler filters see it
    finally:
        serve.removeHandler(serve.handlers[-1])
    assert stream.getvalue() == f"WARNING ray.serve replica error: {REDACTED}\n"
    # pytest's capture handler sits on the root logger, like a process's log handler
    assert f"a library repeats {REDACTED}" in caplog.text and "jane.doe" not in caplog.text


def test_installing_twice_adds_one_filter_and_one_factory(log_redaction) -> None:
    before = logging.getLogRecordFactory()
    install_log_redaction()
    factory = logging.getLogRecordFactory()
    install_log_redaction()
    assert factory is not before and logging.getLogRecordFactory() is factory
    serving = logging.getLogger("serving")
    assert sum(isinstance(f, RedactFilter) for f in serving.filters) == 1
    for handler in logging.root.handlers:
        assert sum(isinstance(f, RedactFilter) for f in handler.filters) == 1
    record = factory("serving.x", logging.INFO, __file__, 1, "mail %s", ("a@b.io",), None)
    assert record.getMessage() == "mail [email]"
    plain = factory("tests.x", logging.INFO, __file__, 1, "mail %s", ("a@b.io",), None)
    assert plain.getMessage() == "mail a@b.io"  # outside serving: left to the handlers
