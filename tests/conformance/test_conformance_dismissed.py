"""Dismissed dead letters leave the conformance report's open dead letters (SQLite, PostgreSQL)."""

from __future__ import annotations

from conformance_enterprise import Enterprise

from usm_bridge.conformance.checks import BUILTIN_CHECKS
from usm_bridge.conformance.engine import run_checks
from usm_bridge.dead_letters import dismiss_dead_letters


def _dead_letter_outcomes(enterprise: Enterprise) -> dict[str | None, tuple[str, str]]:
    outcomes = run_checks(enterprise.context(), BUILTIN_CHECKS())
    return {o.unit: (o.verdict, o.summary) for o in outcomes if o.check_id == "data.dead-letters"}


def test_a_units_dismissed_letters_no_longer_fail_or_warn(enterprise: Enterprise) -> None:
    before = _dead_letter_outcomes(enterprise)
    assert before["hr"][0] == "fail" and before["facilities"][0] == "warn"
    facilities = [n for n, i in enterprise.config.instances.items() if i.unit == "facilities"]
    dismissed = [
        letter
        for name in facilities
        for letter in dismiss_dead_letters(
            enterprise.store, reason="writes no longer wanted", by="auditor", instance=name
        )
    ]
    assert dismissed  # the enterprise plants at least one facilities letter
    after = _dead_letter_outcomes(enterprise)
    assert after["facilities"] == ("pass", "no open dead letters")
    assert after["hr"] == before["hr"]  # the other unit's open letters still count
