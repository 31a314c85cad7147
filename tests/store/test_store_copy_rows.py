"""A page's new rows through ``copy_rows.insert_rows``: ``COPY`` on PostgreSQL, ``executemany``
on SQLite and for a row or two; every value reads back exactly as the plain insert stores it,
and a ``COPY`` that fails rolls its page back, which is then stored record by record."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sync.memory_tool import make_config, running_bridge

from usm_bridge.connector import RawRecord
from usm_bridge.errors import StoreError
from usm_bridge.store import Store, batch_writes, copy_rows
from usm_bridge.store import schema as t
from usm_bridge.store.call_facts import FACT_COLUMNS
from usm_bridge.sync.ingest import Outcome

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
#: Text COPY's own syntax would misread if the values were not escaped, and text that is not
#: ASCII (PostgreSQL text holds no NUL, so there is none).
AWKWARD = [
    "tab\there",
    "line\nbreak\r\nand carriage return\r",
    "back\\slash \\N \\t \\\\ and a lone \\",
    "\\N",
    "ünïcödé ✓ 漢字 🎫 \u2028 \u00a0",
    "",
    "quote \" ' and comma , semicolon ;",
]


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The ``COPY`` statements psycopg is asked to run."""
    statements: list[str] = []
    copy = psycopg.Cursor.copy

    def spied(self: psycopg.Cursor[Any], statement: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(str(statement))
        return copy(self, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "copy", spied)
    yield statements


def _calls(prefix: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}{n}", "unit": "hr", "call_type": "incident",
            "status": "registered",
            "canonical": {"title": AWKWARD[n % len(AWKWARD)], "n": n, "nested": {
                "list": [1, 2.5, None, True, AWKWARD[(n + 1) % len(AWKWARD)]], "empty": {}}},
            "facts": None if n % 4 == 0 else AWKWARD[(n + 2) % len(AWKWARD)],
            "version": 1, "content_hash": "h" * 64, "created_at": T0 + timedelta(seconds=n),
            "updated_at": T0 + timedelta(microseconds=n), "vanished_at": None,
            "open_forks": n % 2 == 0,
            # Revision 0016's fact columns: awkward text (within the shortest's 16
            # characters) or NULL, each its own.
            **{name: None if (n + i) % 3 == 0 else AWKWARD[(n + i) % len(AWKWARD)][:16]
               for i, name in enumerate(FACT_COLUMNS)},
        }
        for n in range(count)
    ]  # fmt: skip


def _audits(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "at": call["created_at"], "call_id": call["id"],
            "instance": None if n % 3 == 0 else "hr-jira", "kind": "call_created",
            "actor": AWKWARD[n % len(AWKWARD)], "before": None,
            "after": call["canonical"], "detail": None if n % 2 else {"why": AWKWARD},
        }
        for n, call in enumerate(calls)
    ]  # fmt: skip


def _read(conn: sa.Connection, table: sa.Table, order: sa.ColumnElement[Any]) -> list[Any]:
    return [dict(row) for row in conn.execute(sa.select(table).order_by(order)).mappings()]


def test_copied_rows_read_back_exactly_as_inserted_ones(store: Store, copies: list[str]) -> None:
    copied, inserted = _calls("copied_", 20), _calls("inserted_", 20)
    with store.begin() as tx:
        conn = tx.connection
        copy_rows.insert_rows(conn, t.calls, copied)
        conn.execute(t.calls.insert(), inserted)
        copy_rows.insert_rows(conn, t.audit_log, _audits(copied))
    assert len(copies) == (2 if store.dialect == "postgresql" else 0)
    with store.begin(readonly=True) as tx:
        rows = _read(tx.connection, t.calls, t.calls.c.id)
        events = _read(tx.connection, t.audit_log, t.audit_log.c.id)
    by_id = {row["id"]: row for row in rows}
    for n, row in enumerate(copied):
        assert by_id[row["id"]] == row
        twin = dict(by_id[f"inserted_{n}"], id=row["id"])
        assert twin == by_id[row["id"]]  # the plain insert stored the same values
    assert [{k: v for k, v in e.items() if k != "id"} for e in events] == _audits(copied)
    with store.begin(readonly=True) as tx:  # SQL NULL, not the JSON text null
        nulls = tx.connection.execute(
            sa.select(sa.func.count()).where(t.audit_log.c.before.is_(None))
        ).scalar()
    assert nulls == 20


def test_timestamps_the_rows_share_read_back_as_a_plain_insert_stores_them(store: Store) -> None:
    # A statement converts each timestamp once per value: rows and columns share one moment
    # (also as the same instant in another zone, which compares equal), or differ by 1 us.
    zoned = T0.astimezone(timezone(timedelta(hours=-5)))
    moments = [T0, zoned, T0 + timedelta(microseconds=1), None]
    copied, inserted = _calls("shared_", 12), _calls("plain_", 12)
    for n, (row, twin) in enumerate(zip(copied, inserted, strict=True)):
        for one in (row, twin):
            one.update(created_at=moments[n % 3], updated_at=moments[(n + 1) % 3],
                       vanished_at=moments[n % 4])  # fmt: skip
    shared: copy_rows.Converted = {}  # as a page's writes share theirs between statements
    with store.begin() as tx:
        copy_rows.insert_rows(tx.connection, t.calls, copied, converted=shared)
        copy_rows.insert_rows(tx.connection, t.audit_log, _audits(copied), converted=shared)
        tx.connection.execute(t.calls.insert(), inserted)
    with store.begin(readonly=True) as tx:
        by_id = {row["id"]: row for row in _read(tx.connection, t.calls, t.calls.c.id)}
        events = _read(tx.connection, t.audit_log, t.audit_log.c.id)
    for n, row in enumerate(copied):
        assert by_id[row["id"]] == dict(by_id[f"plain_{n}"], id=row["id"])
        assert by_id[row["id"]]["created_at"] == moments[n % 3]
    assert [event["at"] for event in events] == [row["created_at"] for row in copied]


def test_a_row_or_two_go_out_as_a_plain_insert(store: Store, copies: list[str]) -> None:
    with store.begin() as tx:
        copy_rows.insert_rows(tx.connection, t.calls, _calls("few_", copy_rows.COPY_FROM - 1))
        copy_rows.insert_rows(tx.connection, t.calls, [])
    assert copies == []
    with store.begin(readonly=True) as tx:
        assert len(_read(tx.connection, t.calls, t.calls.c.id)) == copy_rows.COPY_FROM - 1


def test_a_failing_copy_raises_the_inserts_error_and_rolls_the_unit_of_work_back(
    store: Store,
) -> None:
    calls = _calls("call_", 10)
    orphans = _audits(_calls("missing_", 10))  # name calls the store does not hold
    with pytest.raises(StoreError, match="unit of work failed") as failed, store.begin() as tx:
        copy_rows.insert_rows(tx.connection, t.calls, calls)
        copy_rows.insert_rows(tx.connection, t.audit_log, orphans)
    assert isinstance(failed.value.__cause__, sa.exc.IntegrityError)
    assert "fk_audit_log_call_id_calls" in str(failed.value) or store.dialect == "sqlite"
    with store.begin(readonly=True) as tx:
        assert _read(tx.connection, t.calls, t.calls.c.id) == []


def test_a_page_whose_copy_fails_is_stored_record_by_record_and_nothing_is_lost(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[int] = []
    insert_rows = copy_rows.insert_rows

    def failing_once(
        conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], **options: Any
    ) -> None:
        if table is t.audit_log and not failures:
            failures.append(len(rows))
            # A real failure of the server: the last event names a call that does not exist.
            rows = [*rows[:-1], dict(rows[-1], call_id="call_that_is_not_there")]
        insert_rows(conn, table, rows, **options)

    monkeypatch.setattr(batch_writes, "insert_rows", failing_once)
    caplog.set_level(logging.INFO, logger="usm_bridge.sync.page_ingest")
    with running_bridge(store, make_config(tmp_path)) as bridge:
        hr = bridge.tools["hr-tool"]
        ids = [hr.add(title=f"Incident {n}\tfrom\\the\ntool ✓", kind="incident") for n in range(8)]
        records = [
            item
            for item in bridge.connectors["hr-tool"].read_changes(None)
            if isinstance(item, RawRecord)
        ]
        outcomes = bridge.engine.ingest.ingest_page("hr-tool", records)
        assert failures == [16]  # the page's two events per new call, in one batch
        assert "one by one" in caplog.text
        assert [o.outcome for o in outcomes] == [Outcome.ROUTED] * 8
        with store.begin(readonly=True) as tx:
            for n, ticket in enumerate(ids):
                stored = tx.find_call("hr-tool", ticket)
                assert stored is not None
                assert stored.call.title == f"Incident {n}\tfrom\\the\ntool ✓"
                assert [e.kind for e in tx.list_audit(call_id=stored.id)].count("call_created") == 1
            total = tx.connection.execute(sa.select(sa.func.count()).select_from(t.calls))
            assert total.scalar() == 8


def test_sqlite_rows_go_to_the_driver_as_tuples_of_one_compiled_insert(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'tuples.db'}")
    sent: list[tuple[str, Any, bool]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def spy(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        sent.append((statement, parameters, many))

    t.metadata.create_all(engine, tables=[t.calls])
    rows = _calls("tuple_", 5)
    try:
        with engine.begin() as conn:
            copy_rows.insert_rows(conn, t.calls, rows)
            copy_rows.insert_rows(conn, t.calls, _calls("again_", 3))
            stored = _read(conn, t.calls, t.calls.c.id)
    finally:
        engine.dispose()
    inserts = [item for item in sent if item[0].startswith("INSERT")]
    assert [len(parameters) for _, parameters, _ in inserts] == [5, 3]
    assert all(many for _, _, many in inserts)
    assert (
        inserts[0][0]
        == inserts[1][0]
        == str(t.calls.insert().compile(dialect=engine.dialect, column_keys=list(rows[0])))
    )
    assert all(type(row) is tuple for _, parameters, _ in inserts for row in parameters)
    by_id = {row["id"]: row for row in stored}
    assert len(by_id) == 8
    for row in rows:  # converted as the insert converts them: read back equal
        assert by_id[row["id"]] == row


def test_an_insert_with_a_python_side_default_is_left_to_sqlalchemy(tmp_path: Path) -> None:
    table = sa.Table(
        "defaulted", sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False, default="computed"),
    )  # fmt: skip
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'defaults.db'}")
    table.metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            copy_rows.insert_rows(conn, table, [{"id": n, "name": f"n{n}"} for n in range(4)])
            stored = conn.execute(sa.select(table).order_by(table.c.id)).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in stored] == [(n, f"n{n}", "computed") for n in range(4)]
