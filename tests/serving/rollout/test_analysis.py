"""The step analysis of a rollout (serving.rollout.analysis) on constructed rows, and the bounds
of a rollout's own settings. Pure: no database, no registry."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from brandforge.params import RolloutParams
from serving.rollout.analysis import (
    MAX_MIN_REQUESTS,
    MAX_MIN_SECONDS,
    MAX_STEPS,
    RolloutOverrides,
    analyse,
)


def rows(
    n: int,
    *,
    errors: int = 0,
    latency: float = 0.2,
    score: float | None = 0.9,
    images: int = 4,
    failed: int = 0,
) -> list[dict[str, Any]]:
    """`n` requests, the first `errors` of them failed; each ok one with `images` images of
    mean compliance `score`, `failed` of which failed the brand kit."""
    return [
        {
            "ok": i >= errors,
            "latency_s": latency,
            "images": images if i >= errors else 0,
            "compliance_mean": score if i >= errors else None,
            "compliance_failed": failed if i >= errors else 0,
        }
        for i in range(n)
    ]


def judge(champion: list[dict], canary: list[dict], *, elapsed: float = 600, **limits: Any):
    return analyse(
        champion,
        canary,
        RolloutParams(**limits),
        elapsed_s=elapsed,
        min_requests=50,
        min_seconds=300,
    )


def test_analysis_waits_for_enough_requests_and_time() -> None:
    few = judge(rows(100), rows(49))
    assert few.decision == "wait" and "min_requests is 50" in few.reasons[0]
    # even a bad canary is not judged on too little traffic
    assert judge(rows(100), rows(49, errors=49)).decision == "wait"
    early = judge(rows(100), rows(100), elapsed=299)
    assert early.decision == "wait" and "min_seconds is 300" in early.reasons[0]
    assert judge(rows(100), rows(50), elapsed=300).decision == "pass"


def test_analysis_passes_equal_traffic_and_reports_measurements() -> None:
    result = judge(rows(200, errors=2, failed=1), rows(50, errors=0, failed=1))
    assert result.decision == "pass" and result.reasons == []
    m = result.measurements
    assert m["champion"]["requests"] == 200 and m["champion"]["error_rate"] == 0.01
    assert m["canary"]["p95_latency_s"] == 0.2 and m["canary"]["compliance_mean"] == pytest.approx(
        0.9
    )
    assert m["canary"]["failed_compliance_rate"] == 0.25
    assert [c["passed"] for c in m["checks"]] == [True, True, True, True]


@pytest.mark.parametrize(
    ("canary", "parameter", "words"),
    [
        (rows(50, errors=5), "max_error_rate_increase", "error rate rose by 0.100"),
        (rows(50, latency=0.5), "max_p95_latency_ratio", "p95 latency is 2.50x"),
        (rows(50, score=0.8), "max_compliance_drop", "mean compliance dropped by 0.100"),
        (rows(50, failed=1), "max_failed_compliance_increase", "failed-compliance rate rose"),
    ],
)
def test_analysis_fails_on_each_threshold(canary: list[dict], parameter: str, words: str) -> None:
    result = judge(rows(100), canary)
    assert result.decision == "fail"
    assert len(result.reasons) == 1 and words in result.reasons[0]
    assert parameter in result.reasons[0]
    assert [c.parameter for c in result.failed] == [parameter]


def test_analysis_skips_comparisons_without_champion_data() -> None:
    # a live step at 100 %: the champion gets no requests in the window
    result = judge([], rows(50))
    assert result.decision == "pass"
    assert all(c.passed is None for c in result.checks)
    # the champion failed everything: no latency to compare, the error rate still counts
    broken = judge(rows(60, errors=60), rows(50, latency=9.0))
    latency = next(c for c in broken.checks if c.parameter == "max_p95_latency_ratio")
    assert latency.passed is None and "no successful requests" in latency.note
    assert broken.decision == "pass"


# --------------------------------------------------------------------------------------------
# A rollout's own settings
# --------------------------------------------------------------------------------------------


def test_overrides_within_bounds_replace_the_defaults() -> None:
    params = RolloutParams()
    given = RolloutOverrides(steps=[10, 100], min_requests=MAX_MIN_REQUESTS, min_seconds=0)
    settings = given.settings(params)
    assert (settings.steps, settings.min_requests, settings.min_seconds) == (
        [10, 100],
        MAX_MIN_REQUESTS,
        0,
    )
    assert settings.max_compliance_drop == params.max_compliance_drop
    assert RolloutOverrides().settings(params) == params
    assert RolloutOverrides.model_validate_json('{"min_seconds": 2592000}').min_seconds == (
        MAX_MIN_SECONDS
    )


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"min_requests": 10**24}, "min_requests"),
        ({"min_requests": 0}, "min_requests"),
        ({"min_requests": True}, "min_requests"),
        ({"min_requests": "50"}, "min_requests"),
        ({"min_seconds": float("inf")}, "min_seconds"),
        ({"min_seconds": float("nan")}, "min_seconds"),
        ({"min_seconds": MAX_MIN_SECONDS + 1}, "min_seconds"),
        ({"min_seconds": -1}, "min_seconds"),
        ({"steps": []}, "steps"),
        ({"steps": [50, 25, 100]}, "strictly increasing"),
        ({"steps": [50, 50, 100]}, "strictly increasing"),
        ({"steps": [25, 50]}, "last step must be 100"),
        ({"steps": [0, 100]}, "steps.0"),
        ({"steps": [50, 101]}, "steps.1"),
        ({"steps": [50.5, 100]}, "steps.0"),
        ({"steps": list(range(1, MAX_STEPS + 1)) + [100]}, "steps"),
        ({"weight": 5}, "weight"),
    ],
)
def test_overrides_out_of_bounds_are_refused(given: dict[str, Any], field: str) -> None:
    # min_requests 1e24 or min_seconds Infinity made a step that can never pass (or a 500).
    with pytest.raises(ValidationError) as err:
        RolloutOverrides.model_validate(given)
    assert field in str(err.value)
