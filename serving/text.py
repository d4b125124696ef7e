"""Rules for free text a client sends (prompts, reasons, campaign templates and variables).

Text ends up in a tokenizer, a database row, log lines, JSON answers and XMP manifests, so it
must be valid Unicode that encodes to UTF-8 (no lone surrogates), free of NUL and other control
characters (tab and newline are fine), and say something (not only whitespace).
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

PROMPT_MAX = 2000
_ALLOWED_CONTROLS = {"\t", "\n", "\r"}


def text_problem(value: str, *, blank_ok: bool = False) -> str | None:
    """Why `value` is not acceptable text, or None."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "text must be valid Unicode (it holds a lone surrogate)"
    bad = next(
        (c for c in value if unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROLS),
        None,
    )
    if bad is not None:
        return f"text must not hold control characters (found U+{ord(bad):04X})"
    if not blank_ok and not value.strip():
        return "text must not be empty or only whitespace"
    return None


def check_text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def check_optional_text(value: str) -> str:
    problem = text_problem(value, blank_ok=True)
    if problem is not None:
        raise ValueError(problem)
    return value


# A required prompt: 1..2000 characters, not blank, valid text.
Prompt = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=PROMPT_MAX),
    AfterValidator(check_text),
]
# A reason a person gives (rejecting an asset, aborting a rollout).
Reason = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=500),
    AfterValidator(check_text),
]
# Text that may be blank (a negative prompt).
OptionalText = Annotated[
    str,
    StringConstraints(strict=True, max_length=PROMPT_MAX),
    AfterValidator(check_optional_text),
]
