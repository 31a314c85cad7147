"""Dead letters in the conformance report (SQLite, PostgreSQL): each open letter with its owning
unit and age; dismissed letters counted apart, no longer failing or warning."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from conformance_enterprise import Enterprise

from usm_bridge.conformance.api import CheckOutcome
from usm_bridge.conformance.checks import BUILTIN_CHECKS, DeadLettersCheck
from usm_bridge.conformance.engine import run_checks
from usm_bridge.dead_letters import dismiss_dead_letters


def _dead_letter_outcomes(enterprise: Enterprise) -> dict[str | None, CheckOutcome]:
    outcomes = run_checks(enterprise.context(), BUILTIN_CHECKS())
    return {o.unit: o for o in outcomes if o.check_id == "data.dead-letters"}


def _brief(outcome: CheckOutcome) -> tuple[str, str]:
    return outcome.verdict, outcome.summary


def test_a_units_dismissed_letters_are_counted_apart(enterprise: Enterprise) -> None:
    before = _dead_letter_outcomes(enterprise)
    assert before["hr"].verdict == "fail" and before["facilities"].verdict == "warn"
    assert before["facilities"].metrics["dismissed"] == 0
    facilities = [n for n, i in enterprise.config.instances.items() if i.unit == "facilities"]
    dismissed = [
        letter
        for name in facilities
        for letter in dismiss_dead_letters(
            enterprise.store, reason="writes no longer wanted", by="auditor", instance=name
        )
    ]
    assert len(dismissed) == 1  # the enterprise plants one facilities letter
    after = _dead_letter_outcomes(enterprise)
    assert _brief(after["facilities"]) == (
        "pass",
        "no open dead letters (1 dismissed, not counted)",
    )
    assert after["facilities"].metrics["dismissed"] == 1
    assert after["facilities"].evidence == []
    # the other unit's open letters still count, and it has none dismissed
    assert _brief(after["hr"]) == _brief(before["hr"])
    assert after["hr"].metrics["dismissed"] == 0


def test_open_letters_show_their_unit_and_age(enterprise: Enterprise) -> None:
    with enterprise.store.begin(readonly=True) as tx:
        letters = {letter.instance: letter for letter in tx.list_dead_letters(status=None)}
    hr_letter = letters["hr-mail"]
    # The report is read three and a quarter days after the letter first failed.
    later = replace(enterprise.context(), now=hr_letter.created_at + timedelta(days=3, hours=6))
    outcomes = {
        o.unit: o for o in DeadLettersCheck().run(later) if o.check_id == "data.dead-letters"
    }
    (item,) = outcomes["hr"].evidence
    assert item.detail.startswith(
        f"map dead letter {hr_letter.id} of hr-mail (unit hr), open for 3.2 days: field status"
    )
    assert (item.instance, item.at) == ("hr-mail", hr_letter.created_at)
    assert outcomes["hr"].metrics["oldest_open_hours"] == 78.0
    assert outcomes["hr"].summary.endswith("oldest open for 3.2 days")
    (push,) = outcomes["facilities"].evidence
    assert " of fac-jira (unit facilities), open for " in push.detail
    assert push.instance == "fac-jira"
