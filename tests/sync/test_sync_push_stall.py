"""Issue #18: a target that does not answer stops its drain at the first timeout, and a drain
leaves nothing leased that it did not push.

The engine's :meth:`~usm_bridge.sync.engine.SyncEngine.cycle` and
:meth:`~usm_bridge.sync.engine.SyncEngine.push` are used as the daemon uses them: the cycle
names the targets it queued writes for, the push drains one of them.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from sync.memory_tool import Bridge
from usm_bridge.connector import RemoteDraft, RemoteRef
from usm_bridge.errors import ConfigurationError, RetriableRemoteError
from usm_bridge.model import utcnow
from usm_bridge.store import OutboxItem, OutboxOperation, OutboxStatus


def _request(bridge: Bridge, title: str) -> str:
    # A chair, not a desk: routed hr -> fac only.
    return bridge.tools["hr-tool"].add(title=title, service="chair")


def _pending(bridge: Bridge, target: str = "fac-tool") -> list[OutboxItem]:
    with bridge.store.begin(readonly=True) as tx:
        return tx.list_outbox(status=OutboxStatus.PENDING, instance=target)


def test_a_target_that_times_out_stops_its_push_at_the_first_item_and_loses_nothing(
    bridge: Bridge,
) -> None:
    for name in ("Ann", "Bob", "Cem"):
        _request(bridge, f"Chair for {name}")
    cycle = bridge.engine.cycle("hr-tool")
    assert cycle.ok, cycle.error
    assert cycle.pushed == 0 and {"hr-tool", "fac-tool"} <= cycle.targets  # nothing pushed yet
    assert [i.operation for i in _pending(bridge)].count(OutboxOperation.CREATE) == 3
    fac = bridge.connectors["fac-tool"]
    looked_up: list[str] = []
    find = fac.find_by_correlation

    def find_hung(correlation: str) -> RemoteRef | None:
        looked_up.append(correlation)
        fac._fault("find")
        return find(correlation)

    fac.find_by_correlation = find_hung  # type: ignore[method-assign]
    fac.faults["find"] = [RetriableRemoteError("read timeout; gave up after 3 attempt(s)")] * 3

    pushed = bridge.engine.push("fac-tool")

    # One request met the timeout; the other items were not tried (no full timeout each).
    assert len(looked_up) == 1
    assert pushed.stalled is not None and "read timeout" in pushed.stalled
    assert not pushed.ok and pushed.error is None and pushed.retried == 1
    items = _pending(bridge)
    tried = [i for i in items if i.attempts == 1]
    assert len(tried) == 1 and tried[0].last_error is not None
    # The rest wait with it, untried (no attempt counted), none left leased.
    assert all(i.next_attempt_at == tried[0].next_attempt_at for i in items)
    assert all(i.attempts == 0 and i.claimed_by is None for i in items if i is not tried[0])
    assert tried[0].next_attempt_at > utcnow() + timedelta(seconds=20)  # backed off
    assert bridge.tools["fac-tool"].tickets == {}

    # Once it answers again, past the backoff: every write is made, once.
    fac.faults["find"] = []
    bridge.clock.now = tried[0].next_attempt_at + timedelta(seconds=1)
    again = bridge.engine.push("fac-tool")
    assert again.ok and again.stalled is None
    titles = sorted(t["title"] for t in bridge.tools["fac-tool"].tickets.values())
    assert titles == ["Chair for Ann", "Chair for Bob", "Chair for Cem"]


def test_an_answer_with_a_status_is_the_item_s_fault_and_the_push_goes_on(bridge: Bridge) -> None:
    _request(bridge, "Chair for Ann")
    _request(bridge, "Chair for Bob")
    assert bridge.engine.cycle("hr-tool").ok
    bridge.connectors["fac-tool"].faults["create"] = [RetriableRemoteError("busy", status=503)]
    pushed = bridge.engine.push("fac-tool")
    assert pushed.ok and pushed.stalled is None and pushed.retried == 1
    assert len(bridge.tools["fac-tool"].tickets) == 1


def test_a_push_to_a_target_not_in_the_config_is_a_configuration_error(bridge: Bridge) -> None:
    with pytest.raises(ConfigurationError, match="nowhere"):
        bridge.engine.push("nowhere")


def test_an_item_due_again_during_the_drain_is_handed_back_not_left_leased(
    bridge: Bridge,
) -> None:
    """Ann's create, refused for a second, falls due again while the same drain still pushes
    Bob's: the drain does not push it twice, and gives it back due at once (its attempt not
    counted again) instead of leaving it leased for five minutes."""
    _request(bridge, "Chair for Ann")
    assert bridge.engine.cycle("hr-tool").ok
    _request(bridge, "Chair for Bob")
    assert bridge.engine.cycle("hr-tool").ok
    fac = bridge.connectors["fac-tool"]
    fac.faults["find"] = [RetriableRemoteError("busy", status=503)]  # Ann's look-up
    create = fac.create

    def slow_create(draft: RemoteDraft, correlation: str) -> RemoteRef:
        bridge.clock.advance(seconds=10)  # Ann's second of backoff is over meanwhile
        return create(draft, correlation)

    fac.create = slow_create  # type: ignore[method-assign]
    bridge.engine.pusher.backoff_initial = timedelta(seconds=1)
    bridge.engine.pusher.batch = 1  # one item per claim: the drain claims again after each

    pushed = bridge.engine.push("fac-tool")

    assert (pushed.pushed, pushed.retried) == (1, 1)
    assert [t["title"] for t in bridge.tools["fac-tool"].tickets.values()] == ["Chair for Bob"]
    (ann,) = [i for i in _pending(bridge) if i.operation is OutboxOperation.CREATE]
    assert ann.attempts == 1 and ann.claimed_by is None
    assert ann.next_attempt_at <= bridge.clock() + timedelta(seconds=1)  # due, not leased
    assert bridge.engine.push("fac-tool").pushed == 1  # the next push makes it
    assert len(bridge.tools["fac-tool"].tickets) == 2
