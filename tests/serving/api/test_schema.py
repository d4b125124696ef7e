"""Schemathesis over the whole HTTP API: generated requests for every operation (bounded
examples; the test server caps steps at 3 and the tiny model's native size is 32 px) against
the OpenAPI schema, with its checks: no 5xx, documented status codes, content types and
response schemas."""

from __future__ import annotations

import dataclasses

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.e2e
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _aim_at_the_keys_brand(case) -> None:
    """Random brand names would all be 403s: point valid ones at the key's brand."""
    if isinstance(case.body, dict) and isinstance(case.body.get("brand"), str):
        case.body["brand"] = "initech"
    if isinstance(case.path_parameters, dict) and "brand" in case.path_parameters:
        case.path_parameters["brand"] = "initech"


@pytest.fixture
def capped(api):
    """The API with steps capped at 3, so generated requests stay cheap."""
    config = api.services.config
    api.services.config = dataclasses.replace(config, max_steps=3)
    yield api
    api.services.config = config


def test_the_api_keeps_its_contract(capped):
    api = capped
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 16
    headers = api.auth("initech-all")
    statuses: list[int] = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:
            _aim_at_the_keys_brand(case)
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            statuses.append(response.status_code)

        check()
    # the run reached real work, not only refusals
    assert len(statuses) > 5 * len(operations)
    assert {200, 201, 202} & set(statuses) and 422 in statuses
