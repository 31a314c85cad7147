"""The report's snapshot on PostgreSQL plans its cursors to be read whole (``cursor_tuple_fraction``
and ``work_mem`` for its sorts), for its own transaction only: the pooled connection goes back
to the store's other work with the server's settings. On SQLite the pass reads an index
holding its columns (revision 0017), not the calls' rows, and the related streams walk the calls
in its order."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from store.store_revisions import downgrade

from usm_bridge.conformance.call_stream import (
    CallSource,
    _calls_first,
    _compiled,
    _in_pass_order,
    _PassPlan,
)
from usm_bridge.store import Store
from usm_bridge.store import schema as tables


def _session(conn: Connection) -> tuple[object, ...]:
    return tuple(
        conn.exec_driver_sql(query).scalar()
        for query in ("SELECT pg_backend_pid()", "SHOW cursor_tuple_fraction", "SHOW work_mem")
    )


def test_the_pass_reads_whole_cursors_in_its_snapshot_and_leaves_the_session_as_it_was(
    pg_store: Store,
) -> None:
    with pg_store.engine.connect() as conn:
        backend, fraction, work_mem = _session(conn)
    assert (fraction, work_mem) != ("1", "64MB")
    with CallSource(pg_store.engine)._snapshot() as conn:
        assert _session(conn) == (backend, "1", "64MB")  # the same pooled session
    with pg_store.engine.connect() as conn:
        assert _session(conn) == (backend, fraction, work_mem)


def _plan(conn: Connection, sql: str) -> list[str]:
    return [str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]


def _related(conn: Connection, plan: _PassPlan, units: list[str] | None) -> list[list[str]]:
    """The plans of the identities' and the chain links' streams as the row pass runs them."""
    index = plan.calls_index(units)
    assert index is not None
    return [
        _plan(conn, _calls_first(_compiled(_in_pass_order(table, column, units), conn), index))
        for table, column in (
            (tables.identities, tables.identities.c.call_id),
            (tables.chain_links, tables.chain_links.c.supplier_call_id),
        )
    ]


def test_on_sqlite_the_pass_reads_its_index_not_the_calls_table(tmp_path: Path) -> None:
    # The table holds each call's document (a page a call): read whole it was 4 GB and a sort
    # at a million calls; walked through ix_calls_created_at_id, a random read per call.
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Store.open(url) as store, store.engine.connect() as conn:
        only = {units: CallSource(store.engine, units=units)._only for units in (None, ("it",))}
        plan = _PassPlan.of(conn)
        assert (plan.indexed, plan.any_missing) == (True, False)
        for units, of_units in only.items():
            steps = _plan(conn, plan.sql(of_units, conn))
            assert steps == ["SCAN calls USING COVERING INDEX ix_calls_pass_rows"], steps
            # The related streams walk the calls in the pass's order, never the calls' rows.
            for steps in _related(conn, plan, None if units is None else list(units)):
                assert steps[0].startswith("SCAN calls USING COVERING INDEX"), steps
                assert not any("FOR ORDER BY" in step for step in steps), steps
        with pytest.raises(RuntimeError, match="joins no calls"):
            _calls_first("SELECT 1", "ix_calls_created_at_id")
    # A store without revision 0017's indexes (read as found) has its table read whole and
    # sorted, as before them.
    with Store.open(url) as store:
        downgrade(store, "0016")
        with store.engine.connect() as conn:
            plan = _PassPlan.of(conn)
            assert not plan.indexed
            steps = _plan(conn, plan.sql(only[None], conn))
            assert steps[0].startswith("SCAN calls") and "INDEX" not in steps[0], steps
            assert any("TEMP B-TREE FOR ORDER BY" in step for step in steps), steps
            with pytest.raises(RuntimeError, match="reads no calls table"):
                replace(plan, hint="NOT INDEXED").sql(lambda query: sa.select(1), conn)


def test_on_sqlite_the_pass_reads_what_its_streams_look_up_in_file_order_then_by_call(
    tmp_path: Path,
) -> None:
    # Looked up call by call, the identities (and links) are random reads of a cold file; read
    # once in the file's order first, they are in the OS's cache. An index's name is the
    # store's: quoted, whatever it holds.
    ran: list[str] = []
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        with store.engine.begin() as conn:
            conn.exec_driver_sql('CREATE INDEX "odd""name" ON identities (call_id, id)')

        @sa.event.listens_for(store.engine, "checkout")
        def _trace(driver: sqlite3.Connection, *args: object) -> None:
            # What SQLite runs, the pass's plain cursors' statements included.
            driver.set_trace_callback(ran.append)

        for units in (None, ["it"]):
            assert list(CallSource(store.engine, units=units).pages()) == []
    counted = [sql.removeprefix("SELECT count(*) FROM ") for sql in ran if "count(*)" in sql]
    # And the streams then look them up call by call, in the pass's order.
    for table in ("identities", "chain_links"):
        walked = [sql for sql in ran if f"CROSS JOIN {table} ON" in sql]
        assert [sql.split("\n")[1].split(" CROSS")[0] for sql in walked] == [
            "FROM calls INDEXED BY ix_calls_created_at_id",
            "FROM calls INDEXED BY ix_calls_pass_rows",
        ], walked
    looked_up = [
        "identities NOT INDEXED",
        'identities INDEXED BY "sqlite_autoindex_identities_2"',
        'identities INDEXED BY "odd""name"',
        "chain_links NOT INDEXED",
        'chain_links INDEXED BY "sqlite_autoindex_chain_links_1"',
    ]
    # The calls by the index the streams walk them by (with some units', the one with unit).
    assert sorted(counted) == sorted(
        [
            *looked_up,
            'calls INDEXED BY "ix_calls_created_at_id"',
            *looked_up,
            'calls INDEXED BY "ix_calls_pass_rows"',
        ]
    )
    assert counted.index('calls INDEXED BY "ix_calls_pass_rows"') > len(counted) // 2
