"""``data.incident-confirmation``: an explicit confirmation counts; an implicit one (a tool's
automatic close) only where the call's agreement allows implicit confirmation; each finding
says which of the two failures it is, naming the agreement (or "no agreement")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from usm_bridge.agreements import Agreements
from usm_bridge.conformance.api import CheckOutcome
from usm_bridge.conformance.checks import IncidentConfirmationCheck
from usm_bridge.conformance.context import ReportContext
from usm_bridge.conformance.period import Period
from usm_bridge.lifecycle import PriorityMatrix
from usm_bridge.model import (
    Agreement,
    Call,
    CallType,
    Confirmation,
    ConfirmationKind,
    Person,
    Status,
    Unit,
)
from usm_bridge.store import StoredCall

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
EXPLICIT = Confirmation(kind=ConfirmationKind.EXPLICIT, by=Person(name="Ann"), how="her close")
IMPLICIT = Confirmation(kind=ConfirmationKind.IMPLICIT, how="auto-close job")
UNITS = {name: Unit(name=name, title=name.upper()) for name in ("it", "hr", "fac")}


def _call(
    key: str, customer: str | None, confirmation: Confirmation | None, **extra: object
) -> Call:
    return Call.model_validate(
        {
            "unit": "it",
            "source": {"instance": "it-snow", "remote_id": key, "remote_key": key},
            "call_type": CallType.INCIDENT,
            "status": Status.CLOSED,
            "title": f"incident {key}",
            "customer_unit": customer,
            "created": NOW - timedelta(days=3),
            "updated": NOW - timedelta(days=1),
            "confirmation": confirmation,
            **extra,
        }
    )


def _agreements(*agreements: Agreement) -> Agreements:
    return Agreements(
        services={},
        agreements={a.id: a for a in agreements},
        units=UNITS,
        default_matrix=PriorityMatrix(),
    )


def _run(calls: list[Call], agreements: Agreements | None) -> CheckOutcome:
    stored = [
        StoredCall(call=c, version=1, content_hash="x", created_at=NOW, updated_at=NOW)
        for c in calls
    ]
    context = ReportContext(
        period=Period(),
        now=NOW,
        units=UNITS,
        instances={},
        routes=[],
        priority=PriorityMatrix(),
        calls=stored,
        audit=[],
        dead_letters=[],
        chain_links=[],
        identities=[],
        agreements=agreements,
    )
    # One outcome per unit: the calls are IT's (the customer units have none of their own).
    [outcome] = [o for o in IncidentConfirmationCheck().run(context) if o.unit == "it"]
    return outcome


ALLOWS = Agreement(id="hr-it", customer="hr", provider="it", implicit_confirmation=3 * 86400)
EXPLICIT_ONLY = Agreement(id="fac-it", customer="fac", provider="it")


@pytest.mark.parametrize("registry", ["agreements", "none"])
def test_each_closed_incident_is_counted_once_as_what_it_shows(registry: str) -> None:
    calls = [
        _call("INC1", "hr", EXPLICIT),
        _call("INC2", "hr", IMPLICIT),  # hr-it allows implicit confirmation
        _call("INC3", "fac", IMPLICIT),  # fac-it does not
        _call("INC4", None, IMPLICIT),  # no agreement at all
        _call("INC5", "hr", None),  # nothing
        _call("INC6", "hr", IMPLICIT, agreement="gone"),  # names one never registered
        _call("INC7", "hr", None, status=Status.FULFILLED),  # not closed: not tested
    ]
    agreements = _agreements(ALLOWS, EXPLICIT_ONLY) if registry == "agreements" else None
    outcome = _run(calls, agreements)
    details = {e.remote_key: e.detail for e in outcome.evidence}
    if registry == "none":
        # Without a registry no agreement allows anything: every implicit close is a finding.
        assert outcome.metrics == {
            "closed_incidents": 6,
            "explicit": 1,
            "implicit_allowed": 0,
            "implicit_not_allowed": 4,
            "none": 1,
        }
        assert set(details) == {"INC2", "INC3", "INC4", "INC5", "INC6"}
        return
    assert outcome.metrics == {
        "closed_incidents": 6,
        "explicit": 1,
        "implicit_allowed": 1,
        "implicit_not_allowed": 3,
        "none": 1,
    }
    automatic = "closed automatically where the agreement does not allow implicit confirmation "
    assert details == {
        "INC3": automatic + "(agreement 'fac-it'): auto-close job",
        "INC4": automatic + "(no agreement): auto-close job",
        "INC5": "closed without any confirmation",
        "INC6": automatic + "(agreement 'gone', not registered): auto-close job",
    }
    assert outcome.verdict == "fail"
    assert outcome.population is not None
    assert (outcome.population.size, outcome.population.exceptions) == (6, 4)


def test_explicit_and_allowed_implicit_confirmations_pass() -> None:
    outcome = _run(
        [_call("INC1", "hr", EXPLICIT), _call("INC2", "hr", IMPLICIT)], _agreements(ALLOWS)
    )
    assert outcome.verdict == "pass" and outcome.evidence == []
    assert outcome.metrics["implicit_allowed"] == 1 and outcome.metrics["explicit"] == 1


def test_a_confirmed_time_without_a_confirmation_counts_as_explicit() -> None:
    # A tool with a confirmed state of its own (the mailbox's "confirmed") says when, not how.
    outcome = _run([_call("INC1", None, None, confirmed=NOW - timedelta(days=1))], None)
    assert outcome.verdict == "pass"
    assert outcome.metrics["explicit"] == 1
