"""Banned terms at the edge: refuse a request whose texts use one, and audit the refusal.

The lists are the brand kit of each model version that may draw the request (a version
registered without a kit has none) and the server's policy list (`BRANDFORGE_BANNED_TERMS`).
A refusal is a 422 naming the term and the field (`serving.policy.Violation.message`) and one
`policy.refused` audit row with the brand, the field, the term, the route and the caller,
never the prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from serving.api.services import Services
from serving.auth import Principal, audit
from serving.catalog import model_id
from serving.errors import Invalid
from serving.policy import BannedTerms, Violation, first_violation

POLICY = "the server's policy list"


def banned_lists(services: Services, brand: str, versions: Iterable[str]) -> dict[str, BannedTerms]:
    """Source → terms: the kits of `versions` of `brand` (in order), then the server's list."""
    from brandforge.settings import get_settings

    lists: dict[str, BannedTerms] = {}
    for version in dict.fromkeys(versions):
        kit = services.catalog.context(model_id(brand, version)).kit
        terms = getattr(kit, "banned_terms", None) or []
        if terms:
            lists[f"the brand kit of {brand} v{version}"] = BannedTerms.of(terms)
    lists[POLICY] = BannedTerms.of(get_settings().banned_terms)
    return lists


def refuse_if_banned(
    services: Services,
    caller: Principal,
    *,
    brand: str,
    route: str,
    find: Callable[[Mapping[str, BannedTerms]], Violation | None],
    versions: Iterable[str],
) -> None:
    """Raise `Invalid` (422) and write a `policy.refused` audit row when `find(lists)` finds a
    banned term; return quietly otherwise."""
    violation = find(banned_lists(services, brand, versions))
    if violation is None:
        return
    with services.sessions() as session:
        audit(
            session,
            caller.name,
            "policy.refused",
            brand,
            route=route,
            field=violation.field[:300],
            term=violation.term,
            source=violation.source,
        )
        session.commit()
    raise Invalid(violation.message)


def texts_of(prompt: str, negative_prompt: str | None) -> Callable[..., Violation | None]:
    """The `find` of a live request: its prompt and negative prompt."""
    texts = {"prompt": prompt, "negative_prompt": negative_prompt}
    return lambda lists: first_violation(texts, lists)
