"""Pushes across processes: a target another process pushes to is left to it, and the writes a
killed process had claimed are pushed by the next cycle at once, not after their lease."""

from __future__ import annotations

import os
import socket

import pytest
from store.lock_holders import held_elsewhere, wait_until_free

from sync.memory_tool import Bridge
from usm_bridge.store import OutboxStatus
from usm_bridge.sync.exclusion import cycle_lock, push_lock

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL")

FAC = "fac-tool"


def test_writes_claimed_by_a_killed_process_are_pushed_at_once_by_the_next_cycle(
    bridge: Bridge, store_url: str
) -> None:
    fac = bridge.tools[FAC]
    bridge.tools["hr-tool"].add(title="Desk for Ann", requester="boss@example.com", service="desk")
    with held_elsewhere(store_url, push_lock(FAC)):
        (hr,) = bridge.cycle("hr-tool")
        # The hr cycle ran, and left the push to fac to the process holding its tool.
        assert hr.ok and hr.skipped is None and hr.routed == 1 and fac.writes == []
    with bridge.store.begin(readonly=True) as tx:
        items = tx.list_outbox(status=OutboxStatus.PENDING, instance=FAC)
    # The supplier call's create, and its update to the status the chain gave it.
    assert [item.operation for item in items] == ["create", "update"]
    assert all(item.attempts == 0 for item in items) and fac.tickets == {}

    with held_elsewhere(store_url, push_lock(FAC), claim=FAC) as pusher:
        assert pusher.said["claimed"] == [item.id for item in items]
        # While it lives, its claim stands and fac's own cycle leaves the tool to it.
        (waiting,) = bridge.cycle(FAC)
        assert waiting.ok and waiting.read == 0
        assert waiting.skipped == (
            f"{FAC} is being pushed to by pid {pusher.pid} on {socket.gethostname()} since "
            + waiting.skipped.rsplit(" since ", 1)[1]  # type: ignore[union-attr]
        )
        pusher.kill()  # mid-push, as far as the store knows: claimed, never settled
        wait_until_free(bridge.store, push_lock(FAC))
        # The clock has not moved: the claim's lease (5 minutes) is far from over.
        (after,) = bridge.cycle(FAC)
    # One create; the update finds the record as the create made it (nothing to write).
    assert after.ok and after.skipped is None and after.pushed == 1
    assert [write[0] for write in fac.writes] == ["create"] and len(fac.tickets) == 1
    with bridge.store.begin(readonly=True) as tx:
        settled = [tx.get_outbox_item(item.id) for item in items]
    assert [(i.status, i.attempts, i.claimed_by) for i in settled if i is not None] == [
        (OutboxStatus.DONE, 2, None),
        (OutboxStatus.DONE, 2, None),
    ]


def test_a_cycle_held_by_another_process_is_skipped_and_not_recorded(
    bridge: Bridge, store_url: str
) -> None:
    bridge.tools["hr-tool"].add(title="Desk for Ann", requester="boss@example.com")
    with held_elsewhere(store_url, cycle_lock("hr-tool")) as other:
        (skipped,) = bridge.cycle("hr-tool")
        assert skipped.ok and skipped.read == 0
        assert skipped.skipped is not None
        assert skipped.skipped.startswith(f"a cycle of hr-tool runs in pid {other.pid} on ")
        with bridge.store.begin(readonly=True) as tx:
            assert tx.get_instance_state("hr-tool") is None  # no run recorded
            assert tx.list_calls() == []
    (ran,) = bridge.cycle("hr-tool")
    assert ran.ok and ran.skipped is None and ran.read == 1 and ran.stored == 1
