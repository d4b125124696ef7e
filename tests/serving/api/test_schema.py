"""Schemathesis over the whole HTTP API: generated requests (bounded examples; the test server
caps steps, and the tiny model's native size is 32 px) against the OpenAPI schema, with its
checks: no 5xx, documented status codes, content types and response schemas."""

from __future__ import annotations

import dataclasses

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api_schema(api):
    api.services.config = dataclasses.replace(api.services.config, max_steps=3)
    return schemathesis.openapi.from_asgi("/openapi.json", api.client.app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_contract(case, api):
    if isinstance(case.body, dict) and isinstance(case.body.get("brand"), str):
        case.body["brand"] = "initech"  # the key's brand, so requests reach the real work
    if isinstance(case.path_parameters, dict) and "brand" in case.path_parameters:
        case.path_parameters["brand"] = "initech"
    case.call_and_validate(
        headers=api.auth("initech-all"),
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
