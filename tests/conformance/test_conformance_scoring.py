"""The weighted scores on outcomes built by hand: population and severity decide the weight,
so a unit's size and a finding's gravity show in the enterprise score."""

from __future__ import annotations

import math

from usm_bridge.conformance.api import CheckOutcome, Population, Severity, Threshold, Verdict
from usm_bridge.conformance.scoring import SEVERITY_WEIGHTS, score, weigh

STRICT = Threshold(pass_up_to=0.0, warn_up_to=0.0)


def _data(unit: str, size: int, exceptions: int, severity: Severity = "high") -> CheckOutcome:
    rate = exceptions / size if size else None
    return CheckOutcome(
        check_id="data.incident-confirmation",
        title="Closed incidents carry a customer confirmation",
        verdict=STRICT.verdict(rate or 0.0),
        summary=f"{exceptions} of {size}",
        unit=unit,
        category="data",
        severity=severity,
        population=Population(
            items="closed incidents",
            size=size,
            exceptions=exceptions,
            rate=rate,
            threshold=STRICT,
            rule=STRICT.sentence(),
        ),
    )


def _mapping(verdict: Verdict, severity: Severity = "medium") -> CheckOutcome:
    return CheckOutcome(
        check_id="mapping.fields",
        title="The mapping fills the canonical fields",
        verdict=verdict,
        summary="recommended missing: description",
        unit="it",
        category="mapping",
        severity=severity,
    )


def test_a_unit_of_891_calls_weighs_more_than_a_unit_of_one() -> None:
    big = weigh(_data("it", 891, 0))  # every one confirmed
    small = weigh(_data("hr", 1, 1))  # its only one not
    assert (big.score, small.score) == (100.0, 0.0)
    assert small.weight == SEVERITY_WEIGHTS["high"]
    assert big.weight == round(3 * (1 + math.log10(891)), 3)
    enterprise = score([big, small]).score
    assert enterprise == round(100 * big.weight / (big.weight + small.weight), 1)
    assert enterprise is not None and enterprise > 75  # the old mean of verdicts said 50
    # the other way round the enterprise scores low
    assert (score([weigh(_data("it", 891, 891)), weigh(_data("hr", 1, 0))]).score or 0) < 25


def test_890_unconfirmed_closures_outweigh_one_missing_optional_field() -> None:
    closures = weigh(_data("it", 890, 890))
    optional = weigh(_mapping("warn"))
    assert (optional.score, optional.weight) == (50.0, SEVERITY_WEIGHTS["medium"])
    assert closures.score == 0.0
    assert closures.weight is not None and closures.weight > 5 * optional.weight
    unit = score([closures, optional])
    assert unit.score == round(50 * optional.weight / (closures.weight + optional.weight), 1)
    assert unit.verdict == "fail" and (unit.passed, unit.warned, unit.failed) == (0, 1, 1)


def test_the_score_follows_the_rate_and_the_verdict_the_threshold() -> None:
    partial = weigh(_data("it", 200, 3, severity="low"))
    assert partial.score == 98.5
    assert partial.weight == round(1 * (1 + math.log10(200)), 3)
    assert partial.verdict == "fail"  # any exception fails under the strict threshold


def test_an_outcome_that_tested_nothing_does_not_count() -> None:
    empty = weigh(_data("it", 0, 0))
    assert (empty.score, empty.weight) == (None, 0.0)
    assert score([empty]).score is None
    assert score([empty, weigh(_mapping("pass"))]).score == 100.0
