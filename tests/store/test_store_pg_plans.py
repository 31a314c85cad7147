"""The plans of the store's PostgreSQL sessions: custom plans on every pooled connection, and
statistics that keep up with a backfill, so a page's lookup of its records uses the index of
``(instance, remote_id)`` instead of reading every identity of the instance."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from usm_bridge.model import Call
from usm_bridge.store import Store
from usm_bridge.store import planner_statistics as statistics
from usm_bridge.store.page_state import load_page_state
from usm_bridge.store.page_transaction import PageTransaction
from usm_bridge.store.pg_session import PLAN_CACHE_MODE

MakeCall = Callable[..., Call]
INSTANCE = "hr-jira"


def _plan_cache_mode(conn: sa.Connection) -> str:
    return str(conn.exec_driver_sql("SHOW plan_cache_mode").scalar())


def test_every_pooled_connection_plans_for_its_values(pg_store: Store) -> None:
    engine = pg_store.engine
    with engine.connect() as first, engine.connect() as second, engine.connect() as third:
        assert {_plan_cache_mode(c) for c in (first, second, third)} == {PLAN_CACHE_MODE}
    # A unit of work that fails is rolled back: the session's setting is not undone with it.
    with pytest.raises(RuntimeError), pg_store.begin() as tx:
        tx.connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        raise RuntimeError("the page failed")
    for _ in range(3):  # the connections the failed unit of work used, back from the pool
        with pg_store.begin(readonly=True) as tx:
            assert _plan_cache_mode(tx.connection) == PLAN_CACHE_MODE
    engine.dispose()  # new connections, made after a server restart or a reaper
    with engine.connect() as conn:
        assert _plan_cache_mode(conn) == PLAN_CACHE_MODE


def _store_page(store: Store, calls: list[Call]) -> None:
    remote_ids = [call.source.remote_id for call in calls if call.source is not None]
    with store.begin() as tx:
        page = PageTransaction.begin(tx, INSTANCE, remote_ids)
        for call in calls:
            page._store_mapped_call(call, instance=INSTANCE)
        page.flush()


def _last_analyzed(store: Store) -> dict[str, Any]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT relname, reltuples FROM pg_class WHERE relname IN :names").bindparams(
                sa.bindparam("names", expanding=True)
            ),
            {"names": list(statistics.ANALYZED_TABLES)},
        )
        return {str(name): float(tuples) for name, tuples in rows}


def test_pages_of_new_calls_analyze_the_tables_as_they_grow(
    fresh_postgres_url: str, make_call: MakeCall, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statistics, "FIRST_ANALYZE_CALLS", 4)
    calls = [make_call(f"HR-{n}", instance=INSTANCE, title=f"Call {n}") for n in range(12)]
    with Store.open(fresh_postgres_url) as store:
        never = _last_analyzed(store)
        assert set(never.values()) == {-1.0}  # new tables: no statistics at all
        _store_page(store, calls[:3])
        assert _last_analyzed(store) == never  # 3 new calls: not yet
        _store_page(store, calls[3:5])
        # 5 >= 4: analyzed after the commit; a call, its identity, remote state, two events
        assert _last_analyzed(store) == {
            "calls": 5.0, "identities": 5.0, "remote_states": 0.0, "audit_log": 10.0
        }  # fmt: skip
        _store_page(store, calls[5:9])
        assert _last_analyzed(store)["calls"] == 5.0  # 9 < 10, twice the count analyzed at
        _store_page(store, calls[9:])
        assert _last_analyzed(store)["calls"] == 12.0


def test_a_failed_analyze_is_logged_and_the_sync_goes_on(
    pg_store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    keeper = statistics.StatisticsKeeper()
    keeper.note_inserted(statistics.FIRST_ANALYZE_CALLS)
    monkeypatch.setattr(statistics, "ANALYZED_TABLES", ("calls", "no_such_table"))
    keeper.analyze_if_due(pg_store.engine)
    assert "analyzing the store's tables failed: ProgrammingError" in caplog.text
    assert not keeper.take_due()  # not tried again at once


def test_a_page_lookup_uses_the_index_of_its_records(pg_store: Store, make_call: MakeCall) -> None:
    # Enough identities for a scan of the whole instance to cost more than the index, and
    # calls the size of a ticket's (1.5 kB of JSON).
    engine = pg_store.engine
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO calls (id, unit, call_type, status, canonical, version, content_hash,"
            " created_at, updated_at) SELECT 'call_' || n, 'hr', 'incident', 'registered',"
            " json_build_object('d', repeat('x', 1500)), 1, '', now(), now()"
            " FROM generate_series(1, 20000) AS n"
        )
        conn.exec_driver_sql(
            "INSERT INTO identities (call_id, instance, remote_id, remote_key, created_at,"
            " updated_at) SELECT 'call_' || n, 'hr-jira', n::text, 'HR-' || n, now(), now()"
            " FROM generate_series(1, 20000) AS n"
        )
    keeper = statistics.StatisticsKeeper()
    keeper.note_inserted(statistics.FIRST_ANALYZE_CALLS)
    keeper.analyze_if_due(engine)
    page = [str(n) for n in range(5000, 5100)]
    plans: list[str] = []

    def explain(conn: sa.Connection, cursor: Any, statement: str, *_: Any) -> tuple[str, Any]:
        if statement.startswith("SELECT calls.id, calls.unit"):
            cursor.execute("EXPLAIN (FORMAT JSON) " + statement, _[0])
            plans.append(json.dumps(cursor.fetchone()[0]))
        return statement, _[0]

    sa.event.listen(engine, "before_cursor_execute", explain, retval=True)
    try:
        # More than five times: psycopg prepares the statement, and the plan stays custom.
        for _ in range(8):
            with pg_store.begin(readonly=True) as tx:
                state = load_page_state(tx.connection, INSTANCE, page)
                assert len(state.identities) == 100
    finally:
        sa.event.remove(engine, "before_cursor_execute", explain)
    assert len(plans) == 8
    for plan in plans:
        assert "uq_identities_instance_remote_id" in plan
        assert "remote_id" in plan.split("uq_identities_instance_remote_id")[1][:400]
        assert "Seq Scan" not in plan
