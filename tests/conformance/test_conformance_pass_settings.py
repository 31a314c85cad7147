"""The report's snapshot on PostgreSQL plans its cursors to be read whole (``cursor_tuple_fraction``
and ``work_mem`` for its sorts), for its own transaction only: the pooled connection goes back
to the store's other work with the server's settings."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from usm_bridge.conformance.call_stream import CallSource
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
