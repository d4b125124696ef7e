"""Typed dependencies of the routes: the replica's services and the authenticated caller.

Authentication happens here (401); each route then checks the role AND the brand of every object
it touches with `caller.require(role, brand)` (403), after looking the object up, so an unknown
id and a foreign one are told apart only for callers with the role.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serving.api.services import Services
from serving.auth import AuthError, Principal, authenticate

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key from `brandforge keys create`: `Authorization: Bearer bf_...`",
)
_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKeyHeader",
    description="The same API key in the X-API-Key header",
)
DEV = Principal("dev", frozenset({"admin"}), frozenset({"*"}))


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_caller(
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_header)],
) -> Principal:
    """The caller's key (name, roles, brands); 401 without a valid one."""
    if services.config.dev:
        return DEV
    key = (bearer.credentials if bearer is not None else None) or header
    with services.sessions() as session:
        principal = authenticate(session, key)
        session.commit()  # last_used_at
    if principal is None:
        raise AuthError("missing or invalid API key (Authorization: Bearer <key>)")
    return principal


CallerDep = Annotated[Principal, Depends(get_caller)]
