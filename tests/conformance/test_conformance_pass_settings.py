"""The report's snapshot on PostgreSQL plans its cursors to be read whole (``cursor_tuple_fraction``
and ``work_mem`` for its sorts), for its own transaction only: the pooled connection goes back
to the store's other work with the server's settings. On SQLite the pass reads the calls
table whole and sorts it instead of walking the index."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Connection

from usm_bridge.conformance.call_stream import (
    _PASS_ORDER,
    _ROWS_QUERY,
    CallSource,
    _compiled,
    _table_read_whole,
)
from usm_bridge.store import Store


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


def test_on_sqlite_the_pass_reads_the_calls_table_whole_and_sorts_it(tmp_path: Path) -> None:
    # A walk of ix_calls_created_at_id reads each row from a random page of the table: a
    # random read per call of a store too big for the OS's cache.
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store, store.engine.connect() as conn:
        for units in (None, ["it"]):
            source = CallSource(store.engine, units=units)
            query = _compiled(source._only(_ROWS_QUERY).order_by(*_PASS_ORDER), conn)
            assert any("USING INDEX" in step for step in _plan(conn, query))  # as SQLAlchemy has it
            plan = _plan(conn, _table_read_whole(query, conn))
            assert plan[0].startswith("SCAN calls") and "INDEX" not in plan[0], plan
            assert any("TEMP B-TREE FOR ORDER BY" in step for step in plan), plan
        with pytest.raises(RuntimeError, match="reads no calls table"):
            _table_read_whole("SELECT 1", conn)
