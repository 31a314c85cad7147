"""Scores: one number per unit and for the enterprise, from the verdicts of the outcomes.

A pass counts 1, a warn 0.5 and a fail 0; a score is the mean over the outcomes, as a
percentage with one decimal. Every outcome weighs the same, so a unit with two connector
instances has its mapping checked twice. The enterprise score averages every outcome of the
report, the enterprise-wide ones (``unit`` is None) included; its verdict is the worst one.
"""

from __future__ import annotations

from collections.abc import Iterable

from .api import CheckOutcome, Verdict
from .report import Score

__all__ = ["POINTS", "score", "worst"]

POINTS: dict[Verdict, float] = {"pass": 1.0, "warn": 0.5, "fail": 0.0}
_ORDER: dict[Verdict, int] = {"pass": 0, "warn": 1, "fail": 2}


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The worst verdict (``pass`` when there is none)."""
    return max(verdicts, key=_ORDER.__getitem__, default="pass")


def score(outcomes: Iterable[CheckOutcome]) -> Score:
    """The score of a set of outcomes (``score`` is None when there are none)."""
    verdicts = [outcome.verdict for outcome in outcomes]
    if not verdicts:
        return Score(score=None)
    value = round(100 * sum(POINTS[v] for v in verdicts) / len(verdicts), 1)
    return Score(
        score=value,
        passed=verdicts.count("pass"),
        warned=verdicts.count("warn"),
        failed=verdicts.count("fail"),
        verdict=worst(verdicts),
    )
