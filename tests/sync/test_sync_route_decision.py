"""The router's route decision, which both decides and explains (``usm-bridge trace``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import JsonValue

from usm_bridge.config import RouteConfig
from usm_bridge.model import Call, Status
from usm_bridge.sync.route_decision import Blocker, check_conditions, decide_route
from usm_bridge.sync.router import matches

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _call(**fields: Any) -> Call:
    return Call.model_validate(
        {"unit": "hr", "title": "Desk for Ann", "created": NOW, "updated": NOW, **fields}
    )


def _route(when: dict[str, JsonValue], **more: Any) -> RouteConfig:
    return RouteConfig.model_validate({"name": "hr-to-fac", "from": "hr", "to": "fac",
                                       "when": when, **more})  # fmt: skip


@pytest.mark.parametrize(
    ("when", "call", "holds", "actual"),
    [
        ({"call_type": "incident"}, {"call_type": "incident"}, True, "incident"),
        ({"call_type": "incident"}, {"call_type": "service_request"}, False, "service_request"),
        ({"call_type": ["incident", "service_request"]}, {"call_type": "service_request"},
         True, "service_request"),
        ({"call_type": ["incident", "complaint"]}, {"call_type": "service_request"},
         False, "service_request"),
        ({"requester.email": "ann@example.com"},
         {"requester": {"name": "Ann", "email": "ann@example.com"}}, True, "ann@example.com"),
        ({"requester.email": "bob@example.com"},
         {"requester": {"name": "Ann", "email": "ann@example.com"}}, False, "ann@example.com"),
        ({"attributes.jira.labels": "onboarding"},
         {"attributes": {"jira": {"labels": ["urgent", "onboarding"]}}}, True,
         ["urgent", "onboarding"]),
        ({"attributes.jira.labels": ["hardware", "network"]},
         {"attributes": {"jira": {"labels": ["urgent", "onboarding"]}}}, False,
         ["urgent", "onboarding"]),
    ],
)  # fmt: skip
def test_each_condition_kind_decides_and_names_the_value_it_saw(
    when: dict[str, JsonValue], call: dict[str, Any], holds: bool, actual: JsonValue
) -> None:
    (check,) = check_conditions(when, _call(**call))
    assert (check.holds, check.actual, check.found) == (holds, actual, True)
    assert check.key == next(iter(when)) and check.expected == next(iter(when.values()))
    assert matches(when, _call(**call)) is holds


def test_a_missing_field_is_found_missing_and_compares_as_none() -> None:
    call = _call()  # no requester, no attributes
    email, label = check_conditions(
        {"requester.email": "ann@example.com", "attributes.jira.labels": "x"}, call
    )
    assert (email.found, email.actual, email.holds) == (False, None, False)
    assert (label.found, label.actual, label.holds) == (False, None, False)
    # A condition on None matches a call without the field, as it always has.
    (absent,) = check_conditions({"service": None}, call)
    assert absent.holds and absent.found and absent.actual is None
    assert matches({"service": None}, call)


def test_matches_needs_every_condition() -> None:
    call = _call(call_type="incident", service="desk")
    assert matches({"call_type": "incident", "service": "desk"}, call)
    assert not matches({"call_type": "incident", "service": "laptop"}, call)
    assert matches({}, call)


def test_a_failing_condition_names_its_key_expected_and_actual_value() -> None:
    verdict = decide_route(
        _route({"call_type": "incident", "service": "desk"}),
        _call(call_type="service_request", service="desk"),
        routes_with_supplier=set(),
        chain_units={"hr"},
    )
    assert not verdict.opens and verdict.blocker is Blocker.CONDITION
    (failed,) = verdict.failed_conditions
    assert (failed.key, failed.expected) == ("call_type", "incident")
    assert failed.actual == "service_request"
    assert verdict.reason == "call_type is 'service_request', the route wants 'incident'"
    assert len(verdict.conditions) == 2  # the holding one is shown too


def test_a_missing_field_is_named_as_missing_in_the_reason() -> None:
    verdict = decide_route(
        _route({"requester.email": "ann@example.com"}), _call(),
        routes_with_supplier=(), chain_units={"hr"},
    )  # fmt: skip
    assert verdict.reason == "requester.email is no such field, the route wants 'ann@example.com'"


@pytest.mark.parametrize(
    ("call", "have", "chain", "blocker", "reason"),
    [
        ({"unit": "it"}, set(), {"it"}, Blocker.OTHER_UNIT,
         "the route starts at unit 'hr'; this call is at 'it'"),
        ({}, {"hr-to-fac"}, {"hr"}, Blocker.SUPPLIER_EXISTS,
         "the call already has a supplier call of it"),
        ({"status": "closed"}, set(), {"hr"}, Blocker.CALL_DONE, "the call is closed"),
        ({}, set(), {"hr", "fac"}, Blocker.UNIT_UPSTREAM,
         "unit 'fac' is already in the chain upstream of this call"),
    ],
)  # fmt: skip
def test_each_other_reason_stops_the_route_and_says_so(
    call: dict[str, Any], have: set[str], chain: set[str], blocker: Blocker, reason: str
) -> None:
    verdict = decide_route(
        _route({"call_type": "service_request"}),
        _call(call_type="service_request", **call),
        routes_with_supplier=have,
        chain_units=chain,
    )
    assert (verdict.opens, verdict.blocker, verdict.reason) == (False, blocker, reason)
    assert all(check.holds for check in verdict.conditions)


def test_a_route_whose_conditions_hold_opens() -> None:
    verdict = decide_route(
        _route({"call_type": "service_request"}),
        _call(call_type="service_request", status=Status.IN_PROGRESS),
        routes_with_supplier=set(),
        chain_units={"hr"},
    )
    assert (verdict.opens, verdict.blocker) == (True, None)
    assert verdict.reason == "every condition holds"
    unconditional = decide_route(
        _route({}), _call(), routes_with_supplier=set(), chain_units={"hr"}
    )
    assert unconditional.opens and unconditional.reason == "the route has no conditions"


@pytest.mark.parametrize(
    ("call_type", "opens", "actual"),
    [("incident", True, "recover"), ("rfc", False, "change"), ("unclassified", False, None)],
)
def test_a_route_by_process_decides_on_the_process_the_call_type_gives(
    call_type: str, opens: bool, actual: str | None
) -> None:
    verdict = decide_route(
        _route({"process": "recover"}),
        _call(call_type=call_type),
        routes_with_supplier=(),
        chain_units={"hr"},
    )
    assert verdict.opens is opens
    (check,) = verdict.conditions
    # The trace shows the process the call has, as for any condition.
    assert (check.key, check.actual, check.found) == ("process", actual, True)
    if not opens:
        assert verdict.reason == f"process is {actual!r}, the route wants 'recover'"
