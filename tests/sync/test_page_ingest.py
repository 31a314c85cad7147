"""A page of records stored in one unit of work: one outcome per record, in order, the same as
record by record, and a number of statements that does not grow with the page."""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sync.memory_tool import Bridge, make_config, running_bridge
from sync.statement_count import counting as _counting
from usm_bridge.config import BridgeConfig
from usm_bridge.connector import RawRecord
from usm_bridge.errors import RetriableRemoteError
from usm_bridge.model import Status
from usm_bridge.store import (
    DeadLetterStage,
    OutboxOperation,
    Store,
    StoreConflictError,
    Transaction,
)
from usm_bridge.store import schema as t
from usm_bridge.store.batch_writes import PageWrites
from usm_bridge.store.page_state import lock_page_chains
from usm_bridge.store.page_transaction import PageTransaction
from usm_bridge.sync.calls import draft_hash
from usm_bridge.sync.engine import PAGE_SIZE
from usm_bridge.sync.ingest import Outcome, RecordOutcome
from usm_bridge.sync.page_ingest import PageEnd

HR = "hr-tool"


def _ingest(bridge: Bridge, records: list[RawRecord]) -> list[RecordOutcome]:
    told: list[RecordOutcome] = []
    outcomes = bridge.engine.ingest.ingest_page(HR, records, each=told.append)
    assert told == outcomes
    return outcomes


def test_a_page_gives_one_outcome_per_record_in_order(bridge: Bridge) -> None:
    hr = bridge.tools[HR]
    ids = [hr.add(title=f"Incident {n}", kind="incident") for n in range(12)]
    order = [*ids[6:], *ids[:6]]
    outcomes = _ingest(bridge, bridge.records(HR, *order))
    assert [o.record.remote_id for o in outcomes] == order
    assert [o.outcome for o in outcomes] == [Outcome.ROUTED] * 12
    again = _ingest(bridge, bridge.records(HR, *order))
    assert [(o.record.remote_id, o.outcome) for o in again] == [
        (i, Outcome.UNCHANGED) for i in order
    ]
    with bridge.store.begin(readonly=True) as tx:
        for outcome in outcomes:
            stored = tx.find_call(HR, outcome.record.remote_id)
            assert stored is not None and stored.call.id == outcome.call_id
            assert stored.call.title == f"Incident {ids.index(outcome.record.remote_id)}"


@pytest.mark.parametrize("with_bug", [False, True], ids=["together", "one-by-one"])
def test_a_mixed_page_gives_each_record_its_outcome_and_stores_the_good_ones(
    bridge: Bridge,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    with_bug: bool,
) -> None:
    """New, unchanged, changed, echo, a record whose routing raises (``with_bug``: the page is
    then stored again record by record) and one that opens a supplier call."""
    hr = bridge.tools[HR]
    same = hr.add(title="Unchanged", kind="incident")
    changed = hr.add(title="Before", kind="incident")
    echoed = hr.add(title="Written by the bridge", kind="incident")
    assert [o.outcome for o in _ingest(bridge, bridge.records(HR, same, changed, echoed))] == [
        Outcome.ROUTED
    ] * 3
    hr.edit(changed, title="After")
    hr.edit(echoed, title="Written by the bridge, again")
    (echo_record,) = bridge.records(HR, echoed)
    stage = bridge.engine.ingest
    mapping, context = stage._mapping(HR), stage._context(HR)
    echo_call = bridge.host.map_inbound(mapping, echo_record, context)
    draft = bridge.host.map_outbound(mapping, echo_call, context)
    with bridge.store.begin() as tx:
        found = tx.find_call(HR, echoed)
        assert found is not None
        # What the bridge wrote last: reading exactly that back is its own write, an echo.
        tx.record_pushed_hash(found.call.id, HR, draft_hash(draft))
    new = hr.add(title="New", kind="incident")
    broken = hr.add(title="Broken", kind="incident")
    request = hr.add(title="Chair for Ann", kind="request")  # opens a supplier call in fac
    route = stage.router.route

    def buggy_route(tx: Any, call_id: str, **kwargs: Any) -> Any:
        stored = tx.get_call(call_id)
        if with_bug and stored is not None and stored.call.title == "Broken":
            raise RuntimeError("a bug in a routing hook")
        return route(tx, call_id, **kwargs)

    monkeypatch.setattr(stage.router, "route", buggy_route)
    # After the supplier call is opened, the page goes on with what it read before.
    order = [new, request, same, changed, echoed, broken]
    caplog.set_level(logging.INFO, logger="usm_bridge.sync.page_ingest")
    outcomes = _ingest(bridge, bridge.records(HR, *order))

    assert [o.record.remote_id for o in outcomes] == order
    assert [o.outcome for o in outcomes] == [
        Outcome.ROUTED, Outcome.ROUTED, Outcome.UNCHANGED, Outcome.ROUTED, Outcome.ECHO,
        Outcome.DEAD_LETTER if with_bug else Outcome.ROUTED,
    ]  # fmt: skip
    assert ("one by one" in caplog.text) is with_bug
    if with_bug:
        dead = outcomes[5]
        assert dead.stage is DeadLetterStage.STORE and "a bug in a routing hook" in str(dead.reason)
    # The supplier call's create for fac, and hr's call now waits on it.
    assert outcomes[1].targets == frozenset({"fac-tool", "hr-tool"})
    with bridge.store.begin(readonly=True) as tx:
        titles = {}
        for ticket in (new, same, changed, echoed, request):
            stored = tx.find_call(HR, ticket)
            assert stored is not None
            titles[ticket] = stored.call.title
        assert titles == {
            new: "New", same: "Unchanged", changed: "After",
            echoed: "Written by the bridge, again", request: "Chair for Ann",
        }  # fmt: skip
        assert (tx.find_call(HR, broken) is None) is with_bug
        supplier = tx.find_call(HR, request)
        assert supplier is not None
        (link,) = tx.suppliers_of(supplier.call.id)
        creates = [
            item
            for item in tx.list_outbox(call_id=link.supplier_call_id)
            if item.operation is OutboxOperation.CREATE
        ]
        assert len(creates) == 1 and creates[0].target_instance == "fac-tool"
        identity = tx.find_identity(HR, changed)
        assert identity is not None and identity.pushed_hash is not None


@pytest.mark.parametrize("phase", ["backfill", "re-read", "changed"])
def test_the_statements_of_a_page_do_not_grow_with_its_records(bridge: Bridge, phase: str) -> None:
    hr = bridge.tools[HR]
    counts = []
    for size in (10, 100):
        ids = [hr.add(title=f"Incident {n}", kind="incident") for n in range(size)]
        if phase != "backfill":
            routed = _ingest(bridge, bridge.records(HR, *ids))
            assert {o.outcome for o in routed} == {Outcome.ROUTED}
        if phase == "changed":
            for ticket in ids:
                hr.edit(ticket, title=f"{ticket} changed")
        records = bridge.records(HR, *ids)
        with _counting(bridge.store) as statements:
            outcomes = _ingest(bridge, records)
        expected = Outcome.UNCHANGED if phase == "re-read" else Outcome.ROUTED
        assert [o.outcome for o in outcomes] == [expected] * size
        counts.append(len(statements))
    assert counts[0] == counts[1], counts
    assert counts[1] <= 20, counts


def test_a_page_of_calls_in_a_chain_is_stored_as_one_page(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    """Calls that already have chain links (requests with a supplier call) are read back with
    their links, and their supplier calls with them, by the page's few queries: neither stored
    again record by record nor read and written supplier by supplier. The title each request
    changed is copied down to its supplier call, whose update for fac is queued once; the
    comment each request had, copied when the supplier call was opened, is not copied again."""
    hr = bridge.tools[HR]
    counts = []
    for size in (10, 100):
        ids = [hr.add(title=f"Chair {n}", kind="request") for n in range(size)]
        for ticket in ids:
            hr.comment(ticket, f"Please hurry with {ticket}")
        routed = _ingest(bridge, bridge.records(HR, *ids))
        assert {o.outcome for o in routed} == {Outcome.ROUTED}
        for ticket in ids:
            hr.edit(ticket, title=f"{ticket} changed")
        records = bridge.records(HR, *ids)
        caplog.clear()
        with caplog.at_level(logging.INFO), _counting(bridge.store) as statements:
            outcomes = _ingest(bridge, records)
        counts.append(len(statements))
        assert [o.outcome for o in outcomes] == [Outcome.ROUTED] * size
        assert {o.targets for o in outcomes} == {frozenset({"fac-tool"})}
        assert not [r for r in caplog.records if "together failed" in r.getMessage()]
        with bridge.store.begin(readonly=True) as tx:
            for ticket in ids:
                stored = tx.find_call(HR, ticket)
                assert stored is not None and stored.call.title == f"{ticket} changed"
                (link,) = tx.suppliers_of(stored.call.id)
                supplier = tx.get_call(link.supplier_call_id)
                assert supplier is not None and supplier.call.title == f"{ticket} changed"
                items = tx.list_outbox(call_id=supplier.id)
                assert [(i.operation, i.target_instance, i.idempotency_key) for i in items] == [
                    (OutboxOperation.CREATE, "fac-tool", f"{supplier.id}:fac-tool:create"),
                    (OutboxOperation.COMMENT, "fac-tool", items[1].idempotency_key),
                    (OutboxOperation.UPDATE, "fac-tool",
                     f"{supplier.id}:fac-tool:update:v{supplier.version}"),
                ]  # fmt: skip
                updated = tx.list_audit(call_id=supplier.id, kind="call_updated")
                assert [e.actor for e in updated][-1:] == ["router"]
    assert counts[0] == counts[1], counts
    assert counts[1] <= 20, counts


def test_a_backfill_page_that_opens_supplier_calls_costs_the_same_statements(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    """A page of requests never seen, each with a comment: the route opens a supplier call in
    fac for each (the call, its chain link, its create and the comment's copy queued for fac,
    the request's own update to waiting queued for hr), all held with the page's writes. A
    page of 10 and one of 100 cost the same statements, and every record gets all of it once."""
    hr = bridge.tools[HR]
    counts = []
    for size in (10, 100):
        ids = [hr.add(title=f"Desk {size}-{n}", kind="request") for n in range(size)]
        for ticket in ids:
            hr.comment(ticket, f"Needed by Monday: {ticket}")
        records = bridge.records(HR, *ids)
        caplog.clear()
        with caplog.at_level(logging.INFO), _counting(bridge.store) as statements:
            outcomes = _ingest(bridge, records)
        counts.append(len(statements))
        assert [o.outcome for o in outcomes] == [Outcome.ROUTED] * size
        assert {o.targets for o in outcomes} == {frozenset({"fac-tool", "hr-tool"})}
        assert not [r for r in caplog.records if "together failed" in r.getMessage()]
        assert sum("opened supplier call" in r.getMessage() for r in caplog.records) == size
        with bridge.store.begin(readonly=True) as tx:
            for ticket in ids:
                stored = tx.find_call(HR, ticket)
                assert stored is not None and stored.call.status is Status.WAITING
                (link,) = tx.suppliers_of(stored.call.id)
                assert stored.call.chain.suppliers == [link.supplier_call_id]
                supplier = tx.get_call(link.supplier_call_id)
                assert supplier is not None and supplier.call.title == stored.call.title
                assert tx.upstream_of(supplier.id) == link
                (copy,) = tx.comment_links_of(supplier.id, "fac-tool")
                items = tx.list_outbox(call_id=supplier.id)
                assert [(i.operation, i.target_instance, i.idempotency_key) for i in items] == [
                    (OutboxOperation.CREATE, "fac-tool", f"{supplier.id}:fac-tool:create"),
                    (OutboxOperation.COMMENT, "fac-tool",
                     f"{supplier.id}:fac-tool:comment:{copy.comment_id}"),
                ]  # fmt: skip
                # The create comes before the comment it carries, as record by record.
                assert items[0].id < items[1].id
                (own,) = tx.list_outbox(call_id=stored.call.id)
                assert (own.operation, own.target_instance) == (OutboxOperation.UPDATE, HR)
                kinds = [e.kind for e in tx.list_audit(call_id=stored.call.id)]
                assert kinds == ["call_created", "identity_linked", "chain_linked", "call_updated"]
                assert [e.kind for e in tx.list_audit(call_id=supplier.id)] == ["call_created"]
    assert counts[0] == counts[1], counts
    assert counts[1] <= 20, counts


def test_a_chained_write_whose_key_is_taken_stores_the_page_record_by_record(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    """The page queues a supplier call's write on what it read of that call's outbox; a key
    another call's item holds breaks the outbox's constraint when the page's writes go out:
    the page is stored again record by record, where the store tells it, and nothing is
    queued twice."""
    hr = bridge.tools[HR]
    ids = [hr.add(title=f"Desk {n}", kind="request") for n in range(3)]
    _ingest(bridge, bridge.records(HR, *ids))
    with bridge.store.begin() as tx:
        stored = tx.find_call(HR, ids[1])
        assert stored is not None
        (link,) = tx.suppliers_of(stored.call.id)
        supplier = tx.get_call(link.supplier_call_id)
        assert supplier is not None
        # The key the router will give the supplier's next update, taken by another call.
        taken = f"{supplier.id}:fac-tool:update:v{supplier.version + 1}"
        tx.enqueue("hr-tool", stored.call.id, OutboxOperation.COMMENT, {}, taken)
    for ticket in ids:
        hr.edit(ticket, title=f"{ticket} changed")
    caplog.set_level(logging.INFO, logger="usm_bridge.sync.page_ingest")
    outcomes = _ingest(bridge, bridge.records(HR, *ids))
    assert "together failed" in caplog.text
    assert [o.outcome for o in outcomes] == [
        Outcome.ROUTED, Outcome.DEAD_LETTER, Outcome.ROUTED,
    ]  # fmt: skip
    assert "already used" in str(outcomes[1].reason)
    with bridge.store.begin(readonly=True) as tx:
        for ticket in (ids[0], ids[2]):
            found = tx.find_call(HR, ticket)
            assert found is not None and found.call.title == f"{ticket} changed"
        keys = [i.idempotency_key for i in tx.list_outbox()]
    assert len(keys) == len(set(keys))


def test_an_unknown_service_is_told_once_per_call_and_costs_no_statement_per_record(
    store: Store, tmp_path: Path
) -> None:
    config = make_config(tmp_path).model_dump(mode="json")
    config["services"] = {"payroll": {"id": "payroll", "provider": "hr"}}
    with running_bridge(store, BridgeConfig.model_validate(config)) as bridge:
        _tell_once(bridge)


def _tell_once(bridge: Bridge) -> None:
    hr = bridge.tools[HR]
    counts = []
    for size in (10, 100):
        ids = [
            hr.add(title=f"Incident {n}", kind="incident", service="nowhere") for n in range(size)
        ]
        with _counting(bridge.store) as statements:
            routed = _ingest(bridge, bridge.records(HR, *ids))
            assert {o.outcome for o in routed} == {Outcome.ROUTED}
        counts.append(len(statements))
        for ticket in ids:
            hr.edit(ticket, title=f"{ticket} changed")
        with _counting(bridge.store) as statements:
            routed = _ingest(bridge, bridge.records(HR, *ids))
            assert {o.outcome for o in routed} == {Outcome.ROUTED}
        counts.append(len(statements))
        with bridge.store.begin(readonly=True) as tx:
            for ticket in ids:
                stored = tx.find_call(HR, ticket)
                assert stored is not None
                told = tx.list_audit(call_id=stored.call.id, kind="unknown_reference")
                assert [(e.detail or {}).get("value") for e in told] == ["nowhere"]  # type: ignore[union-attr]
    assert counts[:2] == counts[2:], counts


def test_a_page_locks_every_call_of_its_chains_on_postgresql(bridge: Bridge) -> None:
    hr = bridge.tools[HR]
    request = hr.add(title="Chair for Ann", kind="request")  # opens a supplier call in fac
    alone = hr.add(title="Incident", kind="incident")
    _ingest(bridge, bridge.records(HR, request, alone))
    with bridge.store.begin(readonly=True) as tx:
        upstream = tx.find_call(HR, request)
        other = tx.find_call(HR, alone)
        assert upstream is not None and other is not None
        (link,) = tx.suppliers_of(upstream.call.id)
    chain = sorted([upstream.call.id, link.supplier_call_id, other.call.id])
    pg = bridge.store.dialect == "postgresql"
    with bridge.store.begin() as tx:
        locked = lock_page_chains(tx.connection, HR, [request, alone, "never-seen"])
        assert locked == (chain if pg else [])  # SQLite: one writer at a time, nothing to lock
        if pg:
            with bridge.store.engine.connect() as other_conn:
                other_conn.exec_driver_sql("SET lock_timeout = '200ms'")
                with pytest.raises(sa.exc.OperationalError, match="lock"):
                    other_conn.execute(
                        sa.select(t.calls.c.id)
                        .where(t.calls.c.id == link.supplier_call_id)
                        .with_for_update()
                    ).all()


@pytest.mark.parametrize("conflicts", [1, 99], ids=["once", "every-time"])
def test_a_page_that_meets_another_cycle_is_stored_again_once(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch, conflicts: int
) -> None:
    """A conflict when the page's writes go out rolls the page back: it is stored again, and
    after ``STORE_ATTEMPTS`` conflicts record by record; either way each record once."""
    hr = bridge.tools[HR]
    ids = [hr.add(title=f"Leak {n}", kind="incident") for n in range(5)]
    real_flush = PageWrites.flush
    met = []

    def flush(self: PageWrites, conn: Any) -> None:
        if self and len(met) < conflicts:
            met.append(1)
            raise StoreConflictError("a call of the page was changed concurrently")
        real_flush(self, conn)

    monkeypatch.setattr(PageWrites, "flush", flush)
    outcomes = _ingest(bridge, bridge.records(HR, *ids))
    assert [(o.record.remote_id, o.outcome) for o in outcomes] == [(i, Outcome.ROUTED) for i in ids]
    assert met  # the conflict did happen
    with bridge.store.begin(readonly=True) as tx:
        stored = [tx.find_call(HR, i) for i in ids]
        rows = tx.connection.execute(sa.select(sa.func.count()).select_from(t.calls)).scalar()
        created = tx.list_audit(kind="call_created")
    assert all(s is not None for s in stored)
    assert rows == len({s.id for s in stored if s is not None}) == 5
    assert len(created) == 5


@pytest.mark.parametrize(
    "page",
    ["stored", "conflict once", "map dead letter", "store dead letter", "stopped", "read ends"],
)
def test_a_page_saves_its_checkpoint_in_its_unit_of_work_only_when_all_is_stored_there(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch, page: str
) -> None:
    """The cursor a page ends at goes out with the page's records (one commit, not two) when
    every record was mapped and stored together; else it is left to the engine, saved after
    the dead letters (a record not yet told would be lost past the cursor)."""
    hr = bridge.tools[HR]
    ids = [hr.add(title=f"Page {n}", kind="incident") for n in range(3)]
    if page == "map dead letter":
        ids.append(hr.add(title="Desk please", status="weird"))
    stage = bridge.engine.ingest
    if page == "store dead letter":
        route = stage.router.route

        def buggy_route(tx: Any, call_id: str, **kwargs: Any) -> Any:
            stored = tx.get_call(call_id)
            if stored is not None and stored.call.title == "Page 1":
                raise RuntimeError("a bug in a routing hook")
            return route(tx, call_id, **kwargs)

        monkeypatch.setattr(stage.router, "route", buggy_route)
    if page == "conflict once":
        real_flush = PageWrites.flush
        met: list[int] = []

        def flush(self: PageWrites, conn: Any) -> None:
            if self and not met:
                met.append(1)
                raise StoreConflictError("a call of the page was changed concurrently")
            real_flush(self, conn)

        monkeypatch.setattr(PageWrites, "flush", flush)
    if page == "read ends":
        real_map = stage._map

        def map_until_unreachable(instance: str, record: RawRecord) -> Any:
            if record.remote_id == ids[2]:
                raise RetriableRemoteError("the mapping plugin's lookup is unreachable")
            return real_map(instance, record)

        monkeypatch.setattr(stage, "_map", map_until_unreachable)
    stop = threading.Event()
    if page == "stopped":
        stop.set()
    end = PageEnd(HR, "cursor-after-the-page")
    told: list[RecordOutcome] = []
    with contextlib.suppress(RetriableRemoteError):
        stage.ingest_page(HR, bridge.records(HR, *ids), stop=stop, end=end, each=told.append)
    together = page in ("stored", "conflict once")
    assert end.stored is together
    with bridge.store.begin(readonly=True) as tx:
        assert tx.get_cursor(HR) == ("cursor-after-the-page" if together else None)
    assert len(told) == {"stopped": 1, "read ends": 2}.get(page, len(ids))


@pytest.mark.parametrize("page", [3, PAGE_SIZE], ids=["short pages", "pages of PAGE_SIZE"])
def test_a_cycle_saves_each_checkpoint_with_its_page(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch, page: int
) -> None:
    """Every cursor of a backfill goes out in the unit of work of the page it ends, a page of
    exactly ``PAGE_SIZE`` records too (not ingested before its checkpoint is seen)."""
    hr = bridge.tools[HR]
    for n in range(2 * page + 1):
        hr.add(title=f"Backfill {n}", kind="incident")
    bridge.connectors[HR].page = page
    pages: list[Any] = []
    begin = PageTransaction.begin.__func__  # type: ignore[attr-defined]

    def recording(cls: Any, tx: Any, *args: Any, **kwargs: Any) -> Any:
        pages.append(tx)
        return begin(cls, tx, *args, **kwargs)

    monkeypatch.setattr(PageTransaction, "begin", classmethod(recording))
    saved_in: list[Any] = []
    set_cursor = Transaction.set_cursor

    def recording_cursor(self: Any, instance: str, cursor: str) -> Any:
        saved_in.append(self)
        return set_cursor(self, instance, cursor)

    monkeypatch.setattr(Transaction, "set_cursor", recording_cursor)
    summary = bridge.engine.run_cycle(HR)
    assert summary.ok and summary.stored == 2 * page + 1
    assert len(pages) == 3
    # Three pages (the last of one record), three checkpoints: each saved in its page's unit
    # of work, none in one of its own.
    assert saved_in == pages
