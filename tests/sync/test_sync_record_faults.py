"""Nothing fails a cycle: a fault of one record or one outbox item is that item's alone.

Each test feeds three records (or three writes), one of which meets a fault (a plugin's bug, a
constraint the store enforces, a bug in the router, a tool refusing, a store refusing to
settle), and asserts three outcomes: the cycle completes, the other two go through, and the
faulty one is a dead letter carrying the error text (or, for a write the store would not
settle, an item deferred with it, to be made once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sync.memory_tool import Bridge, BuggyInbound, write_mapping
from usm_bridge.connector import RawRecord, RemoteDraft
from usm_bridge.dead_letters import retry_dead_letters
from usm_bridge.errors import PermanentRemoteError, StoreError
from usm_bridge.hookspecs import hookimpl
from usm_bridge.model import utcnow
from usm_bridge.store import DeadLetterStage, OutboxStatus, Transaction
from usm_bridge.store import schema as t
from usm_bridge.sync import ingest
from usm_bridge.sync.ingest import Outcome
from usm_bridge.sync.router import Router

BAD = "Broken one"


def _three(bridge: Bridge) -> list[str]:
    """Three requests in hr, the middle one titled ``BAD``; their ids."""
    hr = bridge.tools["hr-tool"]
    return [hr.add(title=title, service="chair") for title in ("First", BAD, "Third")]


def _records(bridge: Bridge, ids: list[str]) -> list[RawRecord]:
    items = bridge.connectors["hr-tool"].read_changes(None)
    records = [item for item in items if isinstance(item, RawRecord)]
    return sorted(records, key=lambda record: ids.index(record.remote_id))


def _assert_one_dead_of_three(bridge: Bridge, ids: list[str], stage: str, text: str) -> None:
    read_up_to = bridge.tools["hr-tool"].version  # the bridge's writes to hr come after
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok, summary.error
    assert (summary.read, summary.stored, summary.dead_letters) == (3, 2, 1)
    with bridge.store.begin(readonly=True) as tx:
        (letter,) = tx.list_dead_letters()
        assert letter.stage.value == stage and text in letter.reason
        assert letter.payload["remote_id"] == ids[1]  # type: ignore[index]
        assert tx.find_call("hr-tool", ids[1]) is None  # nothing of it half-stored
        assert all(tx.find_call("hr-tool", i) is not None for i in (ids[0], ids[2]))
        assert tx.get_cursor("hr-tool") == str(read_up_to)  # the read went on past it
    # The two good ones reached fac in the same cycle.
    assert sorted(t["title"] for t in bridge.tools["fac-tool"].tickets.values()) == [
        "First",
        "Third",
    ]


def test_a_mapping_plugin_raising_on_one_record_of_three(bridge: Bridge) -> None:
    bridge.host.register(BuggyInbound(BAD, KeyError("priority")))
    ids = _three(bridge)
    _assert_one_dead_of_three(bridge, ids, "map", "KeyError: 'priority'")


def _unique_violation_on(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Storing ``bad`` runs into a real UNIQUE constraint of the database, as a store whose
    rows disagree with what a record brings (a repeated comment id, say) does: in the record's
    unit of work, whether that is the page's or its own."""
    reading = ingest.base_of

    def base_of(tx: Transaction, instance: str, remote_id: str) -> RemoteDraft | None:
        if remote_id == bad:
            row = {"instance": "twice", "cursor": "1", "updated_at": utcnow()}
            tx.connection.execute(sa.insert(t.cursors).values(**row))
            tx.connection.execute(sa.insert(t.cursors).values(**row))
        return reading(tx, instance, remote_id)

    monkeypatch.setattr(ingest, "base_of", base_of)


def test_a_unique_violation_storing_one_record_of_three(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _three(bridge)
    _unique_violation_on(ids[1], monkeypatch)
    _assert_one_dead_of_three(bridge, ids, "store", "cursors")
    with bridge.store.begin(readonly=True) as tx:
        assert tx.get_cursor("twice") is None  # the failed unit of work kept nothing


def test_a_router_bug_on_one_record_of_three(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    routing = Router.route

    def route(self: Router, tx: Transaction, call_id: str, **kwargs: Any) -> Any:
        stored = tx.get_call(call_id)
        if stored is not None and stored.call.title == BAD:
            raise ZeroDivisionError("the router's bug")
        return routing(self, tx, call_id, **kwargs)

    monkeypatch.setattr(Router, "route", route)
    ids = _three(bridge)
    _assert_one_dead_of_three(bridge, ids, "store", "ZeroDivisionError: the router's bug")


def test_a_dead_letter_watcher_raising_does_not_end_the_cycle(bridge: Bridge) -> None:
    class BrokenWatcher:
        @hookimpl
        def usm_bridge_dead_letter(
            self, instance: str, stage: str, reason: str, payload: Any
        ) -> None:
            raise RuntimeError("the watcher's bug")

    bridge.host.register(BrokenWatcher())
    bridge.host.register(BuggyInbound(BAD, ValueError("bad value")))
    ids = _three(bridge)
    _assert_one_dead_of_three(bridge, ids, "map", "ValueError: bad value")


def test_the_ingest_stage_gives_one_outcome_per_record_whatever_fails(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _three(bridge)
    ids.append(bridge.tools["hr-tool"].add(title="Fourth", service="chair"))
    bridge.host.register(BuggyInbound(BAD, KeyError("priority")))
    _unique_violation_on(ids[3], monkeypatch)
    records = _records(bridge, ids)
    outcomes = bridge.engine.ingest.ingest_page("hr-tool", records)
    assert [o.record.remote_id for o in outcomes] == ids
    assert [o.outcome for o in outcomes] == [
        Outcome.ROUTED,
        Outcome.DEAD_LETTER,
        Outcome.ROUTED,
        Outcome.DEAD_LETTER,
    ]
    assert [o.stage for o in outcomes] == [None, DeadLetterStage.MAP, None, DeadLetterStage.STORE]
    assert "KeyError" in (outcomes[1].reason or "") and "cursors" in (outcomes[3].reason or "")
    assert "fac-tool" in outcomes[0].targets and "fac-tool" in outcomes[2].targets
    # Read again unchanged: one outcome each still, nothing stored twice.
    again = bridge.engine.ingest.ingest_page("hr-tool", [records[0], records[2]])
    assert [o.outcome for o in again] == [Outcome.UNCHANGED, Outcome.UNCHANGED]


def test_a_tool_refusing_one_write_of_three(bridge: Bridge) -> None:
    _three(bridge)
    bridge.connectors["fac-tool"].faults["create"] = [
        PermanentRemoteError("HTTP 400: the chair service is closed", status=400)
    ]
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok, summary.error
    assert (summary.read, summary.routed, summary.dead_letters) == (3, 3, 1)
    with bridge.store.begin(readonly=True) as tx:
        (letter,) = tx.list_dead_letters()
        assert letter.stage is DeadLetterStage.PUSH and "chair service is closed" in letter.reason
        assert letter.call_id is not None and letter.outbox_id is not None
    assert len(bridge.tools["fac-tool"].tickets) == 2


def test_a_write_the_store_refuses_to_settle_is_deferred_and_made_once(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    linking = Transaction.link_identity
    refusals = [StoreError("UNIQUE constraint failed: identities.instance, identities.remote_id")]

    def link_identity(tx: Transaction, *args: Any, **kwargs: Any) -> Any:
        if refusals:
            raise refusals.pop()
        return linking(tx, *args, **kwargs)

    monkeypatch.setattr(Transaction, "link_identity", link_identity)
    _three(bridge)
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok, summary.error
    assert (summary.read, summary.routed, summary.dead_letters) == (3, 3, 0)
    with bridge.store.begin(readonly=True) as tx:
        (waiting,) = tx.list_outbox(status=OutboxStatus.PENDING)
        assert "UNIQUE constraint failed" in (waiting.last_error or "")
    fac = bridge.tools["fac-tool"]
    assert len(fac.tickets) == 3  # the refused one was made in the tool: not to be made again

    bridge.clock.advance(minutes=5)
    bridge.cycle("fac-tool")
    with bridge.store.begin(readonly=True) as tx:
        assert tx.list_outbox(status=OutboxStatus.PENDING) == []
        assert all(tx.find_call("fac-tool", ticket) is not None for ticket in fac.tickets)
    assert len(fac.tickets) == 3 and [op for op, _ in fac.writes].count("create") == 3


def test_a_retry_of_three_letters_resolves_two_and_keeps_the_third_with_its_error(
    bridge: Bridge, tmp_path: Path
) -> None:
    hr = bridge.tools["hr-tool"]
    ids = [
        hr.add(title="First", service="chair", status="weird"),
        hr.add(title=BAD, service="chair"),
        hr.add(title="Third", service="chair", status="weird"),
    ]
    bridge.host.register(BuggyInbound(BAD, KeyError("priority")))
    assert bridge.engine.run_cycle("hr-tool").dead_letters == 3
    write_mapping(tmp_path / "memory.yaml", knows_weird=True)  # fixes two of them

    outcome = retry_dead_letters(bridge.engine)
    assert len(outcome.resolved) + len(outcome.failed) == 3 and not outcome.skipped
    ((failed_id, reason),) = outcome.failed
    assert "KeyError: 'priority'" in reason
    with bridge.store.begin(readonly=True) as tx:
        (still,) = tx.list_dead_letters()
        assert still.id == failed_id and still.attempts == 2 and "priority" in still.reason
        assert still.payload["remote_id"] == ids[1]  # type: ignore[index]
        for remote_id in (ids[0], ids[2]):
            found = tx.find_call("hr-tool", remote_id)
            assert found is not None and len(tx.suppliers_of(found.id)) == 1  # routed
