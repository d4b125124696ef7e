"""The one rule for brand names: params.yaml, brand kits, API keys, the HTTP API and the CLI.

A brand name becomes part of a registered model name (`<prefix>-<brand>`), an MLflow experiment,
folder names under `data/`, `models/` and the asset store, and Prometheus label values, so it is
kept to lower-case letters, digits, `-` and `_`. `bases` is reserved: `<prefix>-bases` is the
registry's model of stored base models, which no brand may reach.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

BRAND_MAX = 64
BRAND_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
RESERVED_BRANDS = frozenset({"bases"})
_BRAND_RE = re.compile(BRAND_PATTERN)


def brand_problem(name: object) -> str | None:
    """Why `name` is not a valid brand name, or None when it is."""
    if not isinstance(name, str):
        return f"a brand name is a string, not {type(name).__name__}"
    if not name or len(name) > BRAND_MAX:
        return f"a brand name has 1 to {BRAND_MAX} characters"
    if not _BRAND_RE.match(name):
        return (
            f"invalid brand name {name[:80]!r}: lower-case letters, digits, '-' and '_', "
            "starting with a letter or digit"
        )
    if name in RESERVED_BRANDS:
        return f"{name!r} is reserved (the registry's model of base models), not a brand"
    return None


def check_brand(name: str) -> str:
    """`name` if it is a valid brand name; ValueError saying why otherwise."""
    problem = brand_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


# The pydantic type for every brand field (params.yaml, brand kits, requests, campaign specs).
Brand = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=BRAND_MAX, pattern=BRAND_PATTERN),
    AfterValidator(check_brand),
]
