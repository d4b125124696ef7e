"""Erasure of a data subject (GDPR Art. 17): `POST /v1/privacy/erase`, role `admin`.

An admin of some brands erases those brands' objects only; an admin of every brand erases
everything, audit rows of no brand included (`serving.privacy.erasure`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serving.api.deps import CallerDep, ServicesDep
from serving.api.docs import errors
from serving.api.schemas import ErasureRequest
from serving.errors import Unavailable
from serving.privacy.erasure import erase, plan_erasure

router = APIRouter(tags=["privacy"])
# Objects listed in an answer; the counts cover all of them.
LISTED_MAX = 1000


@router.post("/v1/privacy/erase", responses=errors(401, 403, 413, 422, 503))
def erase_subject(body: ErasureRequest, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Delete every asset (file and row), campaign and campaign item that mentioned the subject
    and scrub the audit rows that did, within the key's brands (or `brand`); one audit row
    records the counts and the subject's keyed hash. `dry_run` lists what would go."""
    caller.require("admin", body.brand)
    if body.brand is not None:
        brands: frozenset[str] | None = frozenset({body.brand})
    else:
        brands = None if caller.all_brands else frozenset(caller.brands)
    with services.sessions() as session:
        plan = plan_erasure(session, body.subject, brands=brands)
        try:
            result = erase(session, services.store, plan, actor=caller.name, dry_run=body.dry_run)
        except OSError as err:
            raise Unavailable(
                f"the asset store failed part-way ({err}); no row was changed: try again"
            ) from None
    return {
        **result.summary(),
        "brands": sorted(brands) if brands is not None else "*",
        "objects": [
            {"kind": t.kind, "id": t.id, "brand": t.brand, "action": t.action}
            for t in plan.targets[:LISTED_MAX]
        ],
        "truncated": len(plan.targets) > LISTED_MAX,
    }
