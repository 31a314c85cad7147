"""A create found already made still gets its state.

Some tools create a record in several requests: Jira makes the issue (in its workflow's first
status, whatever the draft says) and then transitions it to the draft's status. When the
process dies between the two, or the second one fails, the record exists with the marker but
without its status. The outbox then finds the record by its marker instead of creating it
again; it must write the draft over it, since nothing else would: no change of the call need
come, and reading the record back must not take the half-made state for a change in the tool.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.memory_tool import Bridge, Crash, MemoryConnector, MemoryTool, make_bridge, make_config
from usm_bridge.connector import RemoteDraft, RemoteRef
from usm_bridge.dead_letters import retry_dead_letters
from usm_bridge.errors import PermanentRemoteError
from usm_bridge.model import Call, Status
from usm_bridge.store import OutboxItem, OutboxOperation, OutboxStatus, Store

#: Where the tool puts every new record, whatever the draft asks.
INITIAL = "open"


class TwoStepConnector(MemoryConnector):
    """A create in two requests, as Jira's: the record is made in the tool's initial status
    (the draft's status is ignored), then moved to the draft's status. ``faults["transition"]``
    breaks the create between the two."""

    def create(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        self._fault("create")
        found = self.find_by_correlation(correlation)
        if found is not None:
            return found
        ticket_id = self.tool.add(correlation, **{**draft.fields, "status": INITIAL})
        self.tool.writes.append(("create", ticket_id))
        self._fault("transition")
        if draft.status is not None and draft.status != INITIAL:
            self.tool.edit(ticket_id, status=draft.status)
            self.tool.writes.append(("transition", ticket_id))
        return RemoteRef(remote_id=ticket_id)


@pytest.fixture
def bridge(store: Store, tmp_path: Path) -> Iterator[Bridge]:
    """The three units, fac's tool creating in two requests."""
    built = make_bridge(store, make_config(tmp_path))
    built.connectors["fac-tool"] = TwoStepConnector(built.tools["fac-tool"])
    built.restart()
    try:
        yield built
    finally:
        built.engine.close()


def _creates(tool: MemoryTool) -> list[str]:
    return [remote_id for operation, remote_id in tool.writes if operation == "create"]


def _supplier(bridge: Bridge) -> Call:
    with bridge.store.begin(readonly=True) as tx:
        (stored,) = tx.list_calls(unit="fac")
    return stored.call


def _fac_items(bridge: Bridge) -> list[OutboxItem]:
    with bridge.store.begin(readonly=True) as tx:
        return tx.list_outbox(instance="fac-tool")


def _request(bridge: Bridge) -> None:
    # A chair: routed hr -> fac only. Its supplier call is registered: "new" in fac's tool.
    bridge.tools["hr-tool"].add(title="Chair for Ann", service="chair")


def _assert_settled_once(bridge: Bridge) -> None:
    fac = bridge.tools["fac-tool"]
    ticket = fac.only()  # no second record
    assert ticket["status"] == "new"  # the draft's status, not the tool's initial one
    assert _creates(fac) == [ticket["id"]]
    supplier = _supplier(bridge)  # and no stranger's call made from reading it
    assert supplier.status is Status.REGISTERED
    assert supplier.source is not None and supplier.source.remote_id == ticket["id"]
    found = [item for item in _fac_items(bridge) if item.idempotency_key.endswith(":found")]
    assert len(found) == 1 and found[0].operation is OutboxOperation.UPDATE
    assert [i for i in _fac_items(bridge) if i.status is OutboxStatus.PENDING] == []


def test_the_tool_holds_the_drafts_status_after_a_normal_create(bridge: Bridge) -> None:
    _request(bridge)
    bridge.settle()
    assert bridge.tools["fac-tool"].only()["status"] == "new"
    assert [item.operation for item in _fac_items(bridge)] == [OutboxOperation.CREATE]


def test_a_create_killed_between_its_requests_gets_its_status_after_the_restart(
    bridge: Bridge,
) -> None:
    fac = bridge.tools["fac-tool"]
    bridge.connectors["fac-tool"].faults["transition"] = [Crash()]
    _request(bridge)
    with pytest.raises(Crash):
        bridge.engine.run_cycle("hr-tool")
    assert fac.only()["status"] == INITIAL
    bridge.restart()
    bridge.clock.advance(minutes=10)  # the lease of the interrupted claim runs out
    # fac's cycle finds the record before reading it, and reads it before pushing the update:
    # the half-made state must not become the call's.
    bridge.settle()
    _assert_settled_once(bridge)


def test_a_create_whose_second_request_broke_gets_its_status_when_it_is_found(
    bridge: Bridge,
) -> None:
    fac = bridge.tools["fac-tool"]
    bridge.connectors["fac-tool"].faults["transition"] = [KeyError("transitions")]
    _request(bridge)
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok and summary.dead_letters == 0
    assert fac.only()["status"] == INITIAL
    bridge.clock.advance(minutes=2)  # past the first backoff
    # The retry looks the marker up and finds the record: it links it and writes the draft.
    counts = bridge.engine.pusher.drain("fac-tool")
    assert (counts.pushed, counts.dead) == (2, 0)
    assert fac.only()["status"] == "new"
    bridge.settle()
    _assert_settled_once(bridge)


def test_a_create_whose_second_request_was_refused_gets_its_status_once_linked(
    bridge: Bridge,
) -> None:
    fac = bridge.tools["fac-tool"]
    refusal = PermanentRemoteError("transition refused", status=400)
    bridge.connectors["fac-tool"].faults["transition"] = [refusal]
    _request(bridge)
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok and summary.dead_letters == 1  # the create, given up
    bridge.settle()
    _assert_settled_once(bridge)

    # Retrying the create's letter settles it against the linked record: nothing more.
    done = len(fac.writes)
    outcome = retry_dead_letters(bridge.engine)
    assert len(outcome.resolved) == 1 and not outcome.failed
    bridge.settle()
    assert fac.writes[done:] == []
    _assert_settled_once(bridge)
