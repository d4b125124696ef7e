import numpy as np
import pytest

from brandforge.params import GateParams
from evaluation.ab import compare, comparison_dict, gate_decision

N = 32


def _side(
    score: float,
    *,
    passed: float = 1.0,
    forbidden: float = 0.0,
    quality: float = 0.0,
    spread: float = 0.02,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "compliance_score": np.clip(score + rng.normal(0, spread, N), 0, 1),
        "passed": (np.arange(N) < passed * N).astype(float),
        "palette_adherence": np.clip(score + rng.normal(0, spread, N), 0, 1),
        "forbidden_share": np.full(N, forbidden),
        "forbidden_violation": (np.arange(N) < (N if forbidden > 0.005 else 0)).astype(float),
        "quality_failed": (np.arange(N) < quality * N).astype(float),
    }


DEFAULT_GATES = GateParams()


def _decide(champion, challenger, dup=(0.1, 0.1), gates=DEFAULT_GATES):
    comparisons = compare(champion, challenger, rng=np.random.default_rng(0), resamples=2000)
    return gate_decision(comparisons, near_duplicate_rate=dup, gates=gates)


def test_a_better_challenger_passes_every_gate():
    decision = _decide(_side(0.6, passed=0.5), _side(0.8, passed=0.9, seed=1))
    assert decision.passed
    assert decision.reasons == ["all gates passed"]
    assert {c.name for c in decision.checks} == {
        "compliance_noninferior",
        "pass_rate",
        "forbidden_area",
        "forbidden_images",
        "quality_floors",
        "diversity",
    }


def test_an_identical_challenger_is_not_inferior():
    side = _side(0.7)
    assert _decide(side, side).passed


def test_a_clearly_worse_challenger_is_rejected_with_the_reason():
    decision = _decide(_side(0.8), _side(0.6, passed=0.5, seed=1))
    assert not decision.passed
    failed = {c.name for c in decision.checks if not c.passed}
    assert failed == {"compliance_noninferior", "pass_rate"}
    assert any("compliance score" in r and "lower bound" in r for r in decision.reasons)


def test_a_small_drop_within_the_margin_passes_but_not_beyond_it():
    champion = _side(0.7, spread=0.0)
    slightly_worse = {**champion, "compliance_score": champion["compliance_score"] - 0.01}
    assert _decide(champion, slightly_worse).passed
    worse = {**champion, "compliance_score": champion["compliance_score"] - 0.03}
    decision = _decide(champion, worse)
    assert [c.name for c in decision.checks if not c.passed] == ["compliance_noninferior"]


def test_forbidden_colour_regressions_are_rejected_even_when_the_score_improves():
    decision = _decide(_side(0.6), _side(0.8, forbidden=0.02, seed=1))
    failed = {c.name for c in decision.checks if not c.passed}
    assert failed == {"forbidden_area", "forbidden_images"}


def test_quality_and_collapse_gates():
    decision = _decide(_side(0.7), _side(0.7, quality=0.25, seed=1), dup=(0.1, 0.6))
    failed = {c.name for c in decision.checks if not c.passed}
    assert failed == {"quality_floors", "diversity"}
    lenient = GateParams(max_quality_fail_increase=0.5, max_near_duplicate_increase=0.6)
    assert _decide(_side(0.7), _side(0.7, quality=0.25, seed=1), (0.1, 0.6), lenient).passed


def test_comparison_dict_reports_direction_and_significance():
    comparisons = compare(
        _side(0.6), _side(0.8, forbidden=0.02, seed=1), rng=np.random.default_rng(0), resamples=2000
    )
    score = comparison_dict(comparisons["compliance_score"], higher_is_better=True)
    assert score["verdict"] == "challenger better"
    assert score["delta"] == pytest.approx(0.2, abs=0.03)
    assert score["delta_ci95"][0] > 0
    assert score["win_rate"] > 0.9
    forbidden = comparison_dict(comparisons["forbidden_share"], higher_is_better=False)
    assert forbidden["verdict"] == "challenger worse"
    assert forbidden["win_rate"] == 0.0
    same = compare(_side(0.7), _side(0.7), rng=np.random.default_rng(0), resamples=500)
    assert comparison_dict(same["passed"], higher_is_better=True)["verdict"] == (
        "no significant difference"
    )
