"""Champion vs challenger on the same prompts and seeds: paired differences and the gate.

Pure functions: per-image metric arrays in, comparisons and a decision out. The stage
(`evaluation.stage`) generates the images and writes what these return.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from brandforge.params import GateParams
from evaluation.stats import PairedComparison, paired_bootstrap

# Per-image metrics compared pairwise; for each, whether a higher value is better.
HIGHER_IS_BETTER = {
    "compliance_score": True,
    "passed": True,
    "palette_adherence": True,
    "off_palette_share": False,
    "palette_balance_distance": False,
    "forbidden_share": False,
    "forbidden_violation": False,
    "quality_failed": False,
    "prompt_alignment": True,
}


@dataclass(frozen=True)
class GateCheck:
    name: str
    value: float
    limit: float
    passed: bool
    reason: str


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    checks: list[GateCheck]

    @property
    def reasons(self) -> list[str]:
        """Why it failed (every failed check), or why it passed."""
        failed = [c.reason for c in self.checks if not c.passed]
        return failed or ["all gates passed"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "decision": "accept" if self.passed else "reject",
            "reasons": self.reasons,
            "checks": [asdict(c) for c in self.checks],
        }


def compare(
    champion: Mapping[str, np.ndarray],
    challenger: Mapping[str, np.ndarray],
    *,
    rng: np.random.Generator,
    resamples: int = 5000,
) -> dict[str, PairedComparison]:
    """Paired bootstrap of challenger − champion for every metric both sides measured."""
    out = {}
    for name in champion:
        if name in challenger:
            out[name] = paired_bootstrap(
                champion[name], challenger[name], rng=rng, resamples=resamples
            )
    return out


def gate_decision(
    comparisons: Mapping[str, PairedComparison],
    *,
    near_duplicate_rate: tuple[float, float],
    gates: GateParams,
) -> GateDecision:
    """May the challenger replace the champion? Every check, with its value and limit.

    Args:
        near_duplicate_rate: (champion, challenger) share of images with a near-duplicate among
            the other seeds of their prompt.
    """
    score = comparisons["compliance_score"]
    passed = comparisons["passed"]
    forbidden = comparisons["forbidden_share"]
    forbidden_images = comparisons["forbidden_violation"]
    quality = comparisons["quality_failed"]
    dup_delta = near_duplicate_rate[1] - near_duplicate_rate[0]
    checks = [
        GateCheck(
            "compliance_noninferior",
            score.ci95[0],
            -gates.max_compliance_drop,
            score.ci95[0] >= -gates.max_compliance_drop,
            f"compliance score: challenger − champion = {score.delta:+.3f} "
            f"(95% CI {score.ci95[0]:+.3f} to {score.ci95[1]:+.3f}); the lower bound must be "
            f"≥ {-gates.max_compliance_drop:+.3f}",
        ),
        GateCheck(
            "pass_rate",
            passed.delta,
            -gates.max_pass_rate_drop,
            passed.delta >= -gates.max_pass_rate_drop,
            f"images passing the brand kit: {passed.mean_a:.0%} → {passed.mean_b:.0%} "
            f"(may drop by at most {gates.max_pass_rate_drop:.0%})",
        ),
        GateCheck(
            "forbidden_area",
            forbidden.delta,
            gates.max_forbidden_increase,
            forbidden.delta <= gates.max_forbidden_increase,
            f"forbidden-colour area: {forbidden.mean_a:.2%} → {forbidden.mean_b:.2%} of the "
            f"pixels (may grow by at most {gates.max_forbidden_increase:.2%})",
        ),
        GateCheck(
            "forbidden_images",
            forbidden_images.delta,
            0.0,
            forbidden_images.delta <= 0.0,
            f"images with a forbidden colour: {forbidden_images.mean_a:.0%} → "
            f"{forbidden_images.mean_b:.0%} (no regression allowed)",
        ),
        GateCheck(
            "quality_floors",
            quality.delta,
            gates.max_quality_fail_increase,
            quality.delta <= gates.max_quality_fail_increase,
            f"images failing a quality floor: {quality.mean_a:.0%} → {quality.mean_b:.0%} "
            f"(may grow by at most {gates.max_quality_fail_increase:.0%})",
        ),
        GateCheck(
            "diversity",
            dup_delta,
            gates.max_near_duplicate_increase,
            dup_delta <= gates.max_near_duplicate_increase,
            f"near-duplicates across seeds: {near_duplicate_rate[0]:.0%} → "
            f"{near_duplicate_rate[1]:.0%} (may grow by at most "
            f"{gates.max_near_duplicate_increase:.0%})",
        ),
    ]
    return GateDecision(passed=all(c.passed for c in checks), checks=checks)


def comparison_dict(c: PairedComparison, *, higher_is_better: bool) -> dict[str, Any]:
    """A comparison as metrics-file JSON; `better` says whether the CI excludes no change."""
    lo, hi = c.ci95
    if lo > 0 or hi < 0:
        better = (lo > 0) == higher_is_better
        verdict = "challenger better" if better else "challenger worse"
    else:
        verdict = "no significant difference"
    win = c.win_rate if higher_is_better else 1.0 - c.win_rate
    return {
        "champion": round(c.mean_a, 4),
        "challenger": round(c.mean_b, 4),
        "delta": round(c.delta, 4),
        "delta_ci95": [round(lo, 4), round(hi, 4)],
        "win_rate": round(win, 4),
        "verdict": verdict,
        "n": c.n,
    }
