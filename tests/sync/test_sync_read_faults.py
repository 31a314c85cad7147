"""Read-time faults of plugins and connectors: one record's fault never stops the instance.

A mapping plugin's bug on one record makes that record a ``map`` dead letter and the read goes
on; a connector's bug while the engine looks for the records of interrupted creates leaves
those for later and the instance is read all the same.
"""

from __future__ import annotations

import logging

import pytest

from sync.memory_tool import Bridge, BuggyInbound, BuggyOutbound, MemoryTool
from usm_bridge.dead_letters import retry_dead_letters
from usm_bridge.errors import RetriableRemoteError
from usm_bridge.store import (
    DeadLetter,
    DeadLetterStage,
    OutboxItem,
    OutboxOperation,
    OutboxStatus,
)


def _creates(tool: MemoryTool) -> list[str]:
    return [remote_id for operation, remote_id in tool.writes if operation == "create"]


def _map_letters(bridge: Bridge) -> list[DeadLetter]:
    with bridge.store.begin(readonly=True) as tx:
        return tx.list_dead_letters(stage=DeadLetterStage.MAP)


def _hr_titles(bridge: Bridge) -> list[str]:
    with bridge.store.begin(readonly=True) as tx:
        return sorted(stored.call.title for stored in tx.list_calls(unit="hr"))


@pytest.mark.parametrize(
    "error",
    [ValueError("no such desk model"), KeyError("model")],
    ids=["ValueError", "KeyError"],
)
def test_a_mapping_plugin_raising_inbound_dead_letters_the_record_and_the_read_goes_on(
    bridge: Bridge, error: Exception
) -> None:
    plugin = BuggyInbound("Odd desk", error)
    bridge.host.register(plugin)
    hr = bridge.tools["hr-tool"]
    hr.add(title="Fine one", kind="incident")
    odd = hr.add(title="Odd desk", kind="incident")
    hr.add(title="Fine two", kind="incident")
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok, summary.error
    assert (summary.read, summary.stored, summary.dead_letters) == (3, 2, 1)
    assert _hr_titles(bridge) == ["Fine one", "Fine two"]
    (letter,) = _map_letters(bridge)
    assert letter.instance == "hr-tool"
    assert isinstance(letter.payload, dict) and letter.payload["remote_id"] == odd
    assert "mapping inbound for hr-tool failed in a plugin" in letter.reason
    assert f"{type(error).__name__}: {error}" in letter.reason
    with bridge.store.begin(readonly=True) as tx:
        assert tx.get_cursor("hr-tool") == str(hr.version)  # past it: never read again
    again = bridge.engine.run_cycle("hr-tool")
    assert again.ok and again.read == 0

    plugin.armed = False
    outcome = retry_dead_letters(bridge.engine)
    assert [i for i, _ in outcome.resolved] == [letter.id] and not outcome.failed
    assert _hr_titles(bridge) == ["Fine one", "Fine two", "Odd desk"]


def test_a_mapping_plugin_raising_outbound_on_read_dead_letters_the_record_not_the_read(
    bridge: Bridge,
) -> None:
    # A guess at what the tool holds would be no base for recognising an echo: the record
    # waits in the dead letters instead, and the others are read.
    plugin = BuggyOutbound("Odd desk", KeyError("desk_model"), instance="hr-tool")
    bridge.host.register(plugin)
    hr = bridge.tools["hr-tool"]
    hr.add(title="Odd desk", kind="incident")
    hr.add(title="Fine one", kind="incident")
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok, summary.error
    assert (summary.read, summary.stored, summary.dead_letters) == (2, 1, 1)
    (letter,) = _map_letters(bridge)
    assert "mapping outbound for hr-tool failed in a plugin: KeyError: 'desk_model'" in (
        letter.reason
    )
    assert _hr_titles(bridge) == ["Fine one"]


def test_a_dead_letter_reason_from_a_plugin_is_masked_and_bounded(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "hunter2-cmdb-password"
    message = f"lookup https://bot:{secret}@cmdb.example/api/desks failed: " + "x" * 5000
    bridge.host.register(BuggyInbound("Odd desk", ValueError(message)))
    bridge.tools["hr-tool"].add(title="Odd desk", kind="incident")
    with caplog.at_level(logging.DEBUG):
        summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok and summary.dead_letters == 1
    (letter,) = _map_letters(bridge)
    assert "ValueError: lookup https://bot:" in letter.reason
    assert secret not in letter.reason and len(letter.reason) < 1000
    assert secret not in caplog.text


def test_a_retriable_remote_error_of_a_plugin_ends_the_read_to_be_read_again(
    bridge: Bridge,
) -> None:
    # A look-up that may work next time is no fault of the record: it is read again.
    plugin = BuggyInbound("Odd desk", RetriableRemoteError("CMDB timed out"))
    bridge.host.register(plugin)
    hr = bridge.tools["hr-tool"]
    hr.add(title="Odd desk", kind="incident")
    summary = bridge.engine.run_cycle("hr-tool")
    assert not summary.ok and "CMDB timed out" in (summary.error or "")
    assert _map_letters(bridge) == []
    plugin.armed = False
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok and summary.stored == 1
    assert _hr_titles(bridge) == ["Odd desk"]


def test_a_mapping_plugin_raising_while_merging_a_read_takes_the_field_from_the_read(
    bridge: Bridge,
) -> None:
    hr = bridge.tools["hr-tool"]
    desk = hr.add(title="Old title", kind="incident")
    bridge.settle()
    # Now the plugin breaks on the stored call only, which the merge maps to find the fields
    # the tool changed: the read itself maps, so the record is stored as read.
    bridge.host.register(BuggyOutbound("Old title", ValueError("stale desk"), instance="hr-tool"))
    hr.edit(desk, title="New title")
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok, summary.error
    assert (summary.stored, summary.dead_letters) == (1, 0)
    assert _hr_titles(bridge) == ["New title"]


def _pending_create(bridge: Bridge) -> OutboxItem:
    with bridge.store.begin(readonly=True) as tx:
        (create,) = [
            item
            for item in tx.list_outbox(status=OutboxStatus.PENDING, instance="fac-tool")
            if item.operation is OutboxOperation.CREATE
        ]
    return create


def _item(bridge: Bridge, item_id: int) -> OutboxItem:
    with bridge.store.begin(readonly=True) as tx:
        item = tx.get_outbox_item(item_id)
    assert item is not None
    return item


def _fac_titles(bridge: Bridge) -> list[str]:
    with bridge.store.begin(readonly=True) as tx:
        return sorted(stored.call.title for stored in tx.list_calls(unit="fac"))


def test_a_connector_raising_while_creates_are_recovered_holds_the_read_back(
    bridge: Bridge,
) -> None:
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    connector = bridge.connectors["fac-tool"]
    # A create tried and not settled (it broke the connector before making anything).
    connector.faults["create"] = [KeyError("project")]
    hr.add(title="Chair for Ann", service="chair")
    assert bridge.engine.run_cycle("hr-tool").ok
    create = _pending_create(bridge)
    assert create.attempts == 1 and fac.tickets == {}
    fac.add(title="Broken lamp", kind="incident")  # a person's record in fac meanwhile
    connector.faults["find"] = [KeyError("issues")]  # looking for the create's record breaks
    summary = bridge.engine.run_cycle("fac-tool")
    # The read waits: it could take a record that create made for a stranger's call.
    assert not summary.ok and "could not be checked" in str(summary.error)
    assert summary.read == 0 and _fac_titles(bridge) == ["Chair for Ann"]
    assert _item(bridge, create.id).status is OutboxStatus.PENDING  # left for later

    bridge.clock.advance(minutes=2)  # past the create's backoff
    bridge.settle()
    assert sorted(t["title"] for t in fac.tickets.values()) == ["Broken lamp", "Chair for Ann"]
    assert _fac_titles(bridge) == ["Broken lamp", "Chair for Ann"]  # no stranger's call
    assert _item(bridge, create.id).status is OutboxStatus.DONE


def test_a_create_record_is_never_read_as_a_strangers_call_while_it_cannot_be_checked(
    bridge: Bridge,
) -> None:
    """The create made its record and never learnt it; the look-up for it fails once. The
    record is not read until the look-up answers, and is then linked to the supplier call:
    one record, one call, no dead letter."""
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    connector = bridge.connectors["fac-tool"]
    connector.crash_after_create = KeyError("id")  # made, and never learnt it
    hr.add(title="Chair for Ann", service="chair")
    assert bridge.engine.run_cycle("hr-tool").ok
    create = _pending_create(bridge)
    connector.faults["find"] = [KeyError("issues")]
    assert not bridge.engine.run_cycle("fac-tool").ok
    made = fac.only()["id"]
    with bridge.store.begin(readonly=True) as tx:
        assert tx.find_call("fac-tool", made) is None  # not taken for a new call

    bridge.clock.advance(minutes=2)
    for _ in range(2):
        for summary in bridge.cycle():
            assert summary.ok, summary.error
    assert len(fac.tickets) == 1 and _creates(fac) == [made]
    assert _item(bridge, create.id).status is OutboxStatus.DONE
    assert _fac_titles(bridge) == ["Chair for Ann"]
    with bridge.store.begin(readonly=True) as tx:
        found = tx.find_call("fac-tool", made)
        assert found is not None and found.call.chain.upstream is not None
        assert tx.list_dead_letters() == []
