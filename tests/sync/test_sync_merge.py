"""The three-way merge per remote record: a stale read keeps the bridge's pending decision, a push
writes only what the bridge changed, so a person's change made in the tool meanwhile survives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.memory_tool import Bridge, make_bridge, make_config
from usm_bridge.connector import RemoteDraft
from usm_bridge.errors import RetriableRemoteError
from usm_bridge.model import Status
from usm_bridge.store import OutboxOperation, Store


@pytest.fixture
def pair(store: Store, tmp_path: Path) -> Iterator[Bridge]:
    """Two units, hr -> fac, on memory tools."""
    routes = [{"from": "hr", "to": "fac", "when": {"call_type": ["service_request"]}}]
    built = make_bridge(store, make_config(tmp_path, routes=routes, units=("hr", "fac")))
    try:
        yield built
    finally:
        built.engine.close()


def _call(bridge: Bridge, unit: str) -> Any:
    with bridge.store.begin(readonly=True) as tx:
        (stored,) = tx.list_calls(unit=unit)
        return stored.call


def _open_chain(bridge: Bridge) -> tuple[str, str]:
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket = hr.add(title="Desk for Ann", requester="boss@example.com", service="desk")
    bridge.settle()
    assert hr.tickets[ticket]["status"] == "hold"
    return ticket, fac.only()["id"]


def test_a_stale_read_between_the_decision_and_the_push_keeps_the_decision(
    pair: Bridge,
) -> None:
    hr, fac = pair.tools["hr-tool"], pair.tools["fac-tool"]
    ticket, supplier = _open_chain(pair)
    # The supplier is fulfilled: the router resumes the hr call, but the push fails for now.
    pair.connectors["hr-tool"].faults["update"] = [RetriableRemoteError("HTTP 503")]
    fac.edit(supplier, status="done")
    pair.cycle("fac-tool")
    assert _call(pair, "hr").status is Status.IN_PROGRESS
    assert hr.tickets[ticket]["status"] == "hold"
    # Something else changes on the hr ticket: the read brings the tool's older status.
    hr.edit(ticket)
    pair.cycle("hr-tool")
    assert _call(pair, "hr").status is Status.IN_PROGRESS  # the decision survives the read
    pair.clock.advance(hours=1)  # the retry is due
    pair.cycle("hr-tool")
    assert hr.tickets[ticket]["status"] == "open"  # ... and is pushed
    with pair.store.begin(readonly=True) as tx:
        assert [i for i in tx.list_outbox(status="pending")] == []
    pair.settle()
    assert hr.tickets[ticket]["status"] == "open"
    assert _call(pair, "hr").status is Status.IN_PROGRESS


def test_a_push_writes_only_what_the_bridge_changed_and_keeps_a_persons_status(
    pair: Bridge,
) -> None:
    hr, fac = pair.tools["hr-tool"], pair.tools["fac-tool"]
    ticket, supplier = _open_chain(pair)
    # A person closes the supplier ticket; the bridge has not read fac since.
    fac.edit(supplier, status="closed")
    # The customer changes the request: the description is copied down to fac.
    hr.edit(ticket, description="Standing desk")
    pair.cycle("hr-tool")
    assert fac.tickets[supplier]["description"] == "Standing desk"
    assert fac.tickets[supplier]["status"] == "closed"  # the person's status stays
    pair.settle()
    assert fac.tickets[supplier]["status"] == "closed"
    assert _call(pair, "fac").status is Status.CLOSED  # read back as the person's change
    assert hr.tickets[ticket]["status"] == "open"  # ... which resumes the hr call
    from usm_bridge.store.remote_state import get_remote_state

    with pair.store.begin(readonly=True) as tx:
        updates = [i for i in tx.list_outbox() if i.operation is OutboxOperation.UPDATE]
        assert all(i.status.value == "done" for i in updates)
        base = get_remote_state(tx, "fac-tool", supplier)
    assert base is not None and base.status == "closed"
    assert base.fields.get("description") == "Standing desk"


def test_an_echo_of_a_partial_push_is_nothing_new_and_a_rerun_writes_nothing(
    pair: Bridge,
) -> None:
    hr, fac = pair.tools["hr-tool"], pair.tools["fac-tool"]
    ticket, supplier = _open_chain(pair)
    hr.edit(ticket, description="Standing desk")
    pair.settle()
    before = pair.writes()
    pair.settle()
    assert pair.writes() == before
    assert fac.tickets[supplier]["description"] == "Standing desk"


def test_merge_helpers_compare_flattened_paths_and_treat_a_status_as_one_field() -> None:
    from usm_bridge.sync.merge import changed_fields, flatten, merged_base

    base = RemoteDraft(
        fields={"a": 1, "nested": {"x": "old", "y": 2}},
        status="open",
        status_fields={"reason": "r"},
    )
    assert flatten(base) == {
        ("fields", "a"): 1,
        ("fields", "nested", "x"): "old",
        ("fields", "nested", "y"): 2,
        ("status",): "open",
        ("status_fields", "reason"): "r",
    }
    desired = RemoteDraft(
        fields={"a": 1, "nested": {"x": "new", "y": 2}},
        status="open",
        status_fields={"reason": "other"},
    )
    delta = changed_fields(desired, base)
    assert delta == RemoteDraft(
        fields={"nested": {"x": "new"}}, status="open", status_fields={"reason": "other"}
    )
    assert changed_fields(base, base) is None
    assert merged_base(base, delta) == desired
    same_status = RemoteDraft(fields={"a": 2}, status="open", status_fields={"reason": "r"})
    assert changed_fields(same_status, base) == RemoteDraft(fields={"a": 2})
    # A status is one field: its status fields go with it.
    moved = changed_fields(RemoteDraft(fields={"a": 1}, status="closed"), base)
    assert moved == RemoteDraft(status="closed")
    assert merged_base(base, moved).status_fields == {}
