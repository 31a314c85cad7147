"""Scores: one number per outcome, per unit and for the enterprise, that a reader can recompute
from the report's own numbers.

* An outcome judged on an exception rate (a data check that tested something) scores
  ``100 * (1 - rate)``: the share of its population that conforms. Any other outcome (a mapping
  check, the dead letters, an organisation rule) scores by its verdict: pass 100, warn 50,
  fail 0.
* Its weight is its severity's weight (high 3, medium 2, low 1), times ``1 + log10(size)`` for
  an outcome judged on a rate of ``size`` items. An outcome that tested nothing (no calls, no
  closed incidents) weighs 0 and does not count.
* An outcome that had nothing to test (verdict ``n/a``: an empty population) has no score
  and weighs 0: it is never counted as a pass, and neither is the unit whose outcomes are all
  ``n/a`` (its verdict is ``n/a`` and its score null).
* A unit's score is the weighted mean ``sum(weight * score) / sum(weight)`` of its outcomes; the
  enterprise's is the same over every outcome of the report, the enterprise-wide ones included.
  Each outcome's score (two decimals) and weight (three) are in the report, and the means are
  taken over those rounded numbers, to one decimal.

* A finding an unexpired entry of the accepted-exceptions register covers is not an exception
  (:mod:`usm_bridge.conformance.acceptance`): it leaves the population's exceptions and rate,
  the verdict is judged again on the rate that remains, and the score follows from it.

Why the logarithm: weighing by the plain population would let the calls of one big unit drown
every mapping check and every small unit (891 calls against 1); weighing every outcome the
same made 890 unconfirmed closures count as much as one missing optional field. With
``1 + log10(size)`` an outcome over 1 item weighs 1, over 10 weighs 2, over 1,000 weighs 4:
evidence from more items counts more, and a mapping check still counts. The verdict of a unit
or the enterprise is its worst outcome's, whatever the score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .api import CheckOutcome, Severity, Verdict
from .report import Score, ScoringRule

__all__ = ["POINTS", "SEVERITY_WEIGHTS", "rule", "score", "weigh", "worst"]

POINTS: dict[Verdict, float] = {"pass": 100.0, "warn": 50.0, "fail": 0.0}
SEVERITY_WEIGHTS: dict[Severity, int] = {"high": 3, "medium": 2, "low": 1}
# n/a ranks below pass: a unit with one pass and one n/a passes; only all n/a is n/a.
_ORDER: dict[Verdict, int] = {"n/a": -1, "pass": 0, "warn": 1, "fail": 2}

RULE = (
    "An outcome judged on an exception rate scores 100 x (1 - rate); any other outcome scores "
    "100 for pass, 50 for warn, 0 for fail. Its weight is its severity's weight (high 3, "
    "medium 2, low 1), times 1 + log10(population size) when it is judged on a rate; an "
    "outcome that tested nothing is N/A (not applicable): no score, weight 0, never a pass. "
    "A unit's score is sum(weight x score) / sum(weight) "
    "over its outcomes, the enterprise's the same over every outcome; a verdict is the worst "
    "of its outcomes. A finding an unexpired entry of the accepted-exceptions register covers "
    "is shown as accepted and is not an exception: it counts in neither the rate, the verdict "
    "nor the score."
)


def rule() -> ScoringRule:
    """The rule as the report states it."""
    return ScoringRule(text=RULE, severity_weights=dict(SEVERITY_WEIGHTS))


def _rated(outcome: CheckOutcome) -> bool:
    population = outcome.population
    return population is not None and population.threshold is not None


def weigh(outcome: CheckOutcome) -> CheckOutcome:
    """The outcome with its own ``score`` and ``weight`` set (see the module's rule)."""
    severity = SEVERITY_WEIGHTS.get(outcome.severity, SEVERITY_WEIGHTS["medium"])
    population = outcome.population
    if outcome.verdict == "n/a":
        outcome.score, outcome.weight = None, 0.0
    elif population is not None and _rated(outcome):
        if population.rate is None or population.size == 0:
            outcome.score, outcome.weight = None, 0.0
        else:
            outcome.score = round(100 * (1 - population.rate), 2)
            outcome.weight = round(severity * (1 + math.log10(population.size)), 3)
    else:
        outcome.score, outcome.weight = POINTS[outcome.verdict], float(severity)
    return outcome


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The worst verdict; ``n/a`` when there is none, or when every one is ``n/a``."""
    return max(verdicts, key=_ORDER.__getitem__, default="n/a")


def score(outcomes: Iterable[CheckOutcome]) -> Score:
    """The weighted score of a set of outcomes (``score`` is None when none weighs anything).

    Outcomes not yet weighed are weighed here (:func:`weigh`).
    """
    weighed = [weigh(o) if o.weight is None else o for o in outcomes]
    verdicts = [outcome.verdict for outcome in weighed]
    counted = [(o.weight, o.score) for o in weighed if o.weight and o.score is not None]
    total = sum(weight for weight, _ in counted)
    value = round(sum(w * s for w, s in counted) / total, 1) if total else None
    return Score(
        score=value,
        passed=verdicts.count("pass"),
        warned=verdicts.count("warn"),
        failed=verdicts.count("fail"),
        not_applicable=verdicts.count("n/a"),
        verdict=worst(verdicts),
    )
