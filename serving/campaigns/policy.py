"""Banned terms in a campaign, before it is queued: pure, no database, no HTTP.

Every text a campaign turns into a prompt or into words on the picture is checked as it will
be used: the negative prompt, and the template, headline and call to action expanded for every
combination of the variables (`serving.campaigns.spec.expand`), since a term can form across
a value and the template's text (`"best {x}"` with `x = "price"`). A violation names where the
term came from, as precisely as it can: the template or a variable's value when the term is in
that piece alone, else the combination whose expanded text holds it.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Mapping

from serving.campaigns.spec import CampaignSpec
from serving.policy import BannedTerms, Violation, first_violation

# Expanded texts a campaign can have (a template, its headline, its call to action).
TEMPLATED = ("template", "headline", "cta")


def _literal(text: str) -> str:
    """A template's own text, its fields replaced by a line break (a word boundary)."""
    return "\n".join(literal for literal, _, _, _ in string.Formatter().parse(text))


def campaign_violation(spec: CampaignSpec, lists: Mapping[str, BannedTerms]) -> Violation | None:
    """The first banned term the campaign would use, or None.

    Checked in this order, so the message points at the smallest piece that holds the term:
    the negative prompt; the template, headline and call to action as written; each variable
    value (`variables.product[2]`); then each expanded text of each combination (`template of
    the items with product='x', season='y'`)."""
    if not any(lists.values()):
        return None
    pieces: dict[str, str | None] = {"negative_prompt": spec.negative_prompt}
    for field in TEMPLATED:
        text = getattr(spec, field)
        pieces[field] = None if text is None else _literal(text)
    for name in sorted(spec.variables):
        for i, value in enumerate(spec.variables[name]):
            pieces[f"variables.{name}[{i}]"] = value
    found = first_violation(pieces, lists)
    if found is not None:
        return found
    names = sorted(spec.variables)
    for combo in itertools.product(*(spec.variables[n] for n in names)):
        values = dict(zip(names, combo, strict=True))
        shown = ", ".join(f"{n}={v[:40]!r}" for n, v in values.items())
        expanded: dict[str, str | None] = {}
        for field in TEMPLATED:
            text = getattr(spec, field)
            label = f"{field} of the items with {shown}" if shown else field
            expanded[label] = None if text is None else text.format(brand=spec.brand, **values)
        found = first_violation(expanded, lists)
        if found is not None:
            return found
    return None
