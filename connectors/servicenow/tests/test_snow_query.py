"""A value containing ^, =, ORDERBY or a newline cannot alter an encoded query."""

from __future__ import annotations

import pytest
from usm_bridge.connector import RemoteDraft

from usm_bridge_servicenow.connector import ServiceNowConnector
from usm_bridge_servicenow.query import (
    Condition,
    OrderBy,
    UnsafeQueryValue,
    encode_query,
    safe_prefix,
)
from usm_bridge_servicenow.testing import IncidentHarness

HOSTILE = [
    "x^NQsys_idISNOTEMPTY",
    "x^ORsys_idISNOTEMPTY",
    "x^ORDERBYDESCnumber",
    "x\nsys_idISNOTEMPTY",
    "x\r\n^NQactive=true",
    "javascript:gs.getUserID()",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_condition_refuses_values_that_would_change_the_query(value: str) -> None:
    with pytest.raises(UnsafeQueryValue) as caught:
        Condition("correlation_id", "=", value)
    assert value not in str(caught.value)  # the message never repeats what a user typed


@pytest.mark.parametrize("value", ["a=b", "ORDERBYnumber", "x ORDERBY y", "100%", "a,b", "<>"])
def test_harmless_characters_pass_unchanged(value: str) -> None:
    assert encode_query([Condition("correlation_id", "=", value)]) == f"correlation_id={value}"


def test_field_names_and_operators_are_checked() -> None:
    with pytest.raises(UnsafeQueryValue):
        Condition("state^NQactive", "=", "1")
    with pytest.raises(UnsafeQueryValue):
        Condition("state", "=^NQ", "1")
    with pytest.raises(UnsafeQueryValue):
        OrderBy("number^NQactive=true")
    with pytest.raises(UnsafeQueryValue):
        Condition("sys_id", "IN", ("a", "b,c"))


def test_encode_query_joins_conditions_then_sorts() -> None:
    query = encode_query(
        [
            Condition("sys_updated_on", ">=", "2024-05-01 09:30:00"),
            Condition("active", "=", "true"),
        ],
        [OrderBy("sys_updated_on"), OrderBy("sys_id", descending=True)],
    )
    assert query == (
        "sys_updated_on>=2024-05-01 09:30:00^active=true^ORDERBYsys_updated_on^ORDERBYDESCsys_id"
    )


def test_safe_prefix() -> None:
    assert safe_prefix("abc^NQx") == "abc"
    assert safe_prefix("abc\ndef") == "abc"
    assert safe_prefix("^abc") == ""
    assert safe_prefix("javascript:x^y") == ""


def test_the_simulator_would_be_fooled_by_a_pasted_value(harness: IncidentHarness) -> None:
    """Proves the end-to-end tests below mean something: pasted raw, the value widens the query."""
    harness.seed(3)
    pasted = "correlation_id=x^NQsys_idISNOTEMPTY"
    assert len(harness.sim.select("incident", pasted)) == 3


@pytest.mark.parametrize("value", HOSTILE)
def test_find_by_hostile_correlation_finds_nothing_else(
    harness: IncidentHarness, connector: ServiceNowConnector, value: str
) -> None:
    harness.seed(3)
    if value.startswith("javascript:"):
        assert connector.find_by_correlation("ok-" + value) is None
    else:
        assert connector.find_by_correlation(value) is None


@pytest.mark.parametrize(
    "correlation",
    ["plain-1", "a=b=c", "xORDERBYDESCnumber", "x^NQsys_idISNOTEMPTY", "line\nbreak", "x^ORa=b"],
)
def test_create_and_find_any_correlation_exactly(
    harness: IncidentHarness, connector: ServiceNowConnector, correlation: str
) -> None:
    harness.seed(2)
    decoy = connector.create(RemoteDraft(fields={"short_description": "decoy"}), correlation + "z")
    created = connector.create(RemoteDraft(fields={"short_description": "real"}), correlation)
    again = connector.create(RemoteDraft(fields={"short_description": "real"}), correlation)
    assert created.remote_id == again.remote_id != decoy.remote_id
    found = connector.find_by_correlation(correlation)
    assert found is not None and found.remote_id == created.remote_id
    stored = harness.sim.get("incident", created.remote_id)
    assert stored is not None and stored["correlation_id"] == correlation
    assert stored["correlation_display"] == "usm-bridge"
