"""Personal data out of prompts before they are stored or logged (DESIGN.md, decision 9).

`redact(text)` replaces each piece of personal data with a typed placeholder; `redactions(text)`
says what was found where; `install_log_redaction()` applies it to every log record of the
serving tier. Kinds, and the placeholder each becomes:

    email    jane.doe@example.com                      [email]
    phone    +44 20 7946 0958, (555) 123-4567,         [phone]
             020 7946 0958, 06 12 34 56 78
    card     4111 1111 1111 1111 (Luhn-checked,        [card]
             issuer digit 2-6, 13-19 digits)
    iban     GB82 WEST 1234 5698 7654 32 (mod-97)      [iban]
    ip       192.168.1.20, 2001:db8::8a2e:370:7334     [ip]
    url      a URL with a query string, a token-like   [url]
             path segment or user:password@ (a bare
             https://acme.com/spring-sale stays)
    handle   @jane_doe                                 [handle]

Marketing prompts are full of numbers that are not personal: sizes (1080x1080), ratios (16:9),
years, dates, times, percentages, prices, hex colours, counts. The patterns are anchored so
that none of those match: a national phone number needs a trunk `0` or an area code in
parentheses or the US 3-3-4 grouping, and at least 9 digits; an international one a `+` or `00`
and 8 to 15 digits; numbers are checked with their checksum where they have one.

Pattern matching cannot find every name or address in free text; this removes the structured
identifiers, which is what prompts carry in practice.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

Span = tuple[str, int, int]

# Highest priority first: when two candidates overlap, the earlier kind wins (a URL holding an
# e-mail address is one URL; an e-mail address is not also a handle).
KINDS = ("url", "email", "iban", "card", "ip", "phone", "handle")

_URL = re.compile(r"(?<![\w@.-])(?:(?:https?|ftp)://|www\.)[^\s<>\"'`{}|\\^\[\]]+", re.IGNORECASE)
_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_HANDLE = re.compile(
    r"(?<![\w@./+-])@(?=[A-Za-z0-9_.]*[A-Za-z])[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,48}[A-Za-z0-9_])?"
    r"(?![\w@])"
)
_IBAN = re.compile(
    r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?!\w)", re.IGNORECASE
)
_CARD = re.compile(r"(?<![\w.,+-])\d(?:[ -]?\d){12,18}(?![\w]|[.,]\d)")
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?::\d{1,5})?(?![\w]|\.\d)"
)
_IPV6 = re.compile(
    r"(?<![\w:.])(?=[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:]{2,39}"
    r"(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?(?![\w:]|\.\w)"
)
# Phone numbers: the separators a person writes between digit groups are one of " .-/".
_PHONE_INTL = re.compile(
    r"(?<![\w+])(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\((?:0|\d{1,4})\))?(?:[ .-]?\d{1,5}){1,6}"
    r"(?![\w%]|[.,]\d)"
)
_PHONE_PAREN = re.compile(
    r"(?<![\w(])\(\d{2,5}\)[ .-]?\d{2,4}(?:[ .-]?\d{2,4}){1,3}(?![\w%]|[.,]\d)"
)
_PHONE_TRUNK = re.compile(r"(?<![\w.,+/:-])0\d{1,4}(?:[ ./-]?\d{2,5}){1,4}(?![\w%:]|[.,]\d)")
_PHONE_US = re.compile(r"(?<![\w.,+/:-])(?:1[ .-])?[2-9]\d{2}[ .-]\d{3}[ .-]\d{4}(?![\w%:]|[.,]\d)")
# A date at the start of a phone-shaped match ("05.06.2026 10:30") makes it no phone number.
_DATE_PREFIX = re.compile(
    r"^(?:\d{1,2}([./-])\d{1,2}\1(?:\d{4}|\d{2})|\d{4}([./-])\d{1,2}\2\d{1,2})(?=$|\s)"
)
# Trailing characters that end a sentence rather than a URL.
_URL_TRAILING = ".,;:!?'\")]"
_TOKEN_SEGMENT = re.compile(r"(?=[^/]*\d)(?=[^/]*[a-z])(?=[^/]*[A-Z])[A-Za-z0-9_-]{16,}")
# E-mail look-alikes that are file names (logo@2x.png).
_FILE_SUFFIXES = frozenset(
    "png jpg jpeg gif webp svg heic heif avif tif tiff bmp psd ai pdf mp4 mov webm".split()
)


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def luhn_ok(number: str) -> bool:
    """Whether the digits of `number` pass the Luhn checksum (payment card numbers)."""
    digits = [int(c) for c in _digits(number)]
    if not digits:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    """Whether `candidate` (spaces allowed) is an IBAN: 15 to 34 characters, mod-97 check."""
    s = candidate.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _card_ok(s: str) -> bool:
    digits = _digits(s)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_ok(digits)


def _phone_ok(s: str) -> bool:
    if _DATE_PREFIX.match(s):
        return False
    n = len(_digits(s.replace("(0)", "")))
    if s.startswith("+"):
        return 8 <= n <= 15
    if s.startswith("00"):
        return 10 <= n <= 17
    return 9 <= n <= 12


def _ip6_ok(s: str) -> bool:
    if s.count(":") < 2 or sum(bool(part) for part in s.split(":")) < 2:
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


def _email_ok(s: str) -> bool:
    return s.rsplit(".", 1)[-1].lower() not in _FILE_SUFFIXES


def _shrink(text: str, start: int, end: int, ok: Callable[[str], bool], seps: str) -> int | None:
    """The end of the longest prefix of text[start:end] ending before a separator (or at
    `end`) that `ok` accepts, or None. Lets "+44 20 7946 0958 2026" give up the year."""
    while end > start:
        if ok(text[start:end]):
            return end
        cut = max(text.rfind(c, start, end) for c in seps)
        if cut <= start:
            return None
        end = cut
        while end > start and text[end - 1] in seps:
            end -= 1
    return None


def _url_end(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1] in _URL_TRAILING:
        if text[end - 1] == ")" and text.count("(", start, end) >= text.count(")", start, end):
            break
        end -= 1
    return end


def _url_sensitive(url: str) -> bool:
    rest = url.split("://", 1)[-1]
    authority = rest.split("/", 1)[0]
    if "@" in authority:
        return True
    if re.search(r"\?[^#\s]*[\w=]", url) or re.search(r"#[^\s]*=", url):
        return True
    path = rest[len(authority) :]
    return any(_TOKEN_SEGMENT.fullmatch(seg) for seg in path.split("/") if seg)


def _candidates(text: str) -> Iterator[Span]:
    for m in _URL.finditer(text):
        end = _url_end(text, m.start(), m.end())
        if _url_sensitive(text[m.start() : end]):
            yield ("url", m.start(), end)
    for m in _EMAIL.finditer(text):
        if _email_ok(m.group()):
            yield ("email", m.start(), m.end())
    for m in _IBAN.finditer(text):
        iban_end = _shrink(text, m.start(), m.end(), iban_ok, " ")
        if iban_end is not None:
            yield ("iban", m.start(), iban_end)
    for m in _CARD.finditer(text):
        card_end = _shrink(text, m.start(), m.end(), _card_ok, " -")
        if card_end is not None:
            yield ("card", m.start(), card_end)
    for m in _IPV6.finditer(text):
        s, e = m.start(), m.end()
        while e > s and text[e - 1] == ":" and not _ip6_ok(text[s:e]):
            e -= 1
        if _ip6_ok(text[s:e]):
            yield ("ip", s, e)
    for m in _IPV4.finditer(text):
        yield ("ip", m.start(), m.end())
    for pattern in (_PHONE_INTL, _PHONE_PAREN, _PHONE_US, _PHONE_TRUNK):
        for m in pattern.finditer(text):
            phone_end = _shrink(text, m.start(), m.end(), _phone_ok, " .-/")
            if phone_end is not None:
                yield ("phone", m.start(), phone_end)
    for m in _HANDLE.finditer(text):
        yield ("handle", m.start(), m.end())


def redactions(text: str) -> list[Span]:
    """The personal data found in `text`: (kind, start, end) spans, in order, not overlapping.

    Where candidates overlap, the kind earlier in `KINDS` wins, then the longer span.
    """
    rank = {kind: i for i, kind in enumerate(KINDS)}
    found = sorted(_candidates(text), key=lambda c: (rank[c[0]], c[1] - c[2], c[1]))
    taken: list[Span] = []
    for kind, start, end in found:
        if all(end <= s or start >= e for _, s, e in taken):
            taken.append((kind, start, end))
    return sorted(taken, key=lambda c: c[1])


def redact(text: str) -> str:
    """`text` with every piece of personal data replaced by its placeholder (`[email]`, ...)."""
    out: list[str] = []
    pos = 0
    for kind, start, end in redactions(text):
        out.append(text[pos:start])
        out.append(f"[{kind}]")
        pos = end
    out.append(text[pos:])
    return "".join(out)


# Loggers whose records are redacted as they are made, wherever they are handled: ours, and Ray
# Serve's (its replica logs carry the errors of requests, and Serve replaces its handlers, and
# their filters, when a replica starts).
REDACTED_LOGGERS = ("serving", "ray.serve")
# Loggers whose handlers get the filter too, besides the root logger's: a prompt that reaches
# a library's message (an exception text, a uvicorn error) is redacted on its way out.
_HANDLED_LOGGERS = ("serving", "ray", "ray.serve", "uvicorn", "uvicorn.error", "uvicorn.access")
_install_lock = threading.Lock()
_factory_installed = False


def redact_record(record: logging.LogRecord) -> None:
    """Redact a log record in place: its message (arguments merged in first), the text of
    its exception and its stack. A record whose message cannot be formatted is left as it is
    (the handler reports that error as usual)."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 (a logging call must never fail because of redaction)
        return
    cleaned = redact(message)
    if cleaned != message:
        record.msg = cleaned
        record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = _TRACEBACKS.formatException(record.exc_info)
    if record.exc_text:
        text = redact(record.exc_text)
        if text != record.exc_text:
            # Formatters print exc_text when it is set; one that formats exc_info itself
            # (a JSON formatter) would print the raw text, so the exception goes.
            record.exc_text, record.exc_info = text, None
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


_TRACEBACKS = logging.Formatter()


class RedactFilter(logging.Filter):
    """A logging filter that redacts each record (`redact_record`), so that a prompt logged
    anywhere below the handler or logger it is attached to is redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_FILTER = RedactFilter()


def install_log_redaction() -> None:
    """Redact personal data in this process's logs (DESIGN.md, decision 9); idempotent.

    Records of the `serving` and `ray.serve` loggers and their children are redacted when
    they are made (a wrapper around the log record factory), so a logger created later, or a
    handler added later, changes nothing. Besides, every handler of the root logger and of
    the `serving`, `ray` and `uvicorn` loggers, and Python's last-resort handler, gets a
    `RedactFilter`, for other libraries' records that repeat a prompt. Call it where a process
    starts: `serving.runtime.start` and each Ray Serve deployment's `__init__`.
    """
    global _factory_installed
    with _install_lock:
        targets: list[logging.Filterer] = [logging.getLogger(name) for name in REDACTED_LOGGERS]
        for logger in [logging.getLogger(), *map(logging.getLogger, _HANDLED_LOGGERS)]:
            targets.extend(logger.handlers)
        if logging.lastResort is not None:
            targets.append(logging.lastResort)
        for target in targets:
            if not any(isinstance(f, RedactFilter) for f in target.filters):
                target.addFilter(_FILTER)
        if not _factory_installed:
            logging.setLogRecordFactory(_redacting_factory(logging.getLogRecordFactory()))
            _factory_installed = True


def _redacting_factory(make: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if _covered(record.name):
            redact_record(record)
        return record

    return factory


def _covered(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in REDACTED_LOGGERS)
