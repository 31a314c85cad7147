"""The merges of a read take values of one validated call into another without validating it
again, and refuse what validating would refuse, with the same error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from usm_bridge.model import Call, CallType, Person, Status, WaitingOn
from usm_bridge.sync.calls import with_changes, with_values_of

T0 = datetime(2026, 1, 5, 10, tzinfo=UTC)
T1 = datetime(2026, 1, 5, 11, tzinfo=UTC)


def test_values_of_a_stored_call_give_the_call_validating_would_give() -> None:
    read = Call(unit="it", title="read", created=T0, updated=T1, call_type=CallType.INCIDENT)
    stored = Call(
        unit="it",
        title="stored",
        created=T0,
        updated=T0,
        call_type=CallType.INCIDENT,
        status=Status.WAITING,
        waiting_on=WaitingOn.SUPPLIER,
        requester=Person(name="Ann"),
        customer_unit="hr",
    )
    names = ("status", "waiting_on", "waiting_process", "requester", "customer_unit")
    values = {name: getattr(stored, name) for name in names}
    merged = with_values_of(read, values)
    assert merged.model_dump() == with_changes(read, **values).model_dump()
    assert (merged.title, merged.status, merged.requester) == (
        "read",
        Status.WAITING,
        stored.requester,
    )
    assert read.status is Status.REGISTERED  # the read itself is left as it was


def test_values_that_make_no_call_raise_the_validation_error() -> None:
    read = Call(unit="it", title="read", created=T0, updated=T1)  # unclassified
    values = {"status": Status.IN_PROGRESS}
    with pytest.raises(ValidationError) as validated:
        with_changes(read, **values)
    with pytest.raises(ValidationError) as merged:
        with_values_of(read, values)
    assert str(merged.value) == str(validated.value)
    assert "an unclassified call cannot be in_progress" in str(merged.value)
