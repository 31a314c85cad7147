"""The report's pass reads its rows through the driver (``driver_rows``): each must be the row
SQLAlchemy gives, value for value, on both back ends, and a bad stored value must fail as it
did."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from usm_bridge.conformance.call_stream import _in_pass_order, _KeyedQueries
from usm_bridge.conformance.driver_rows import DriverQuery
from usm_bridge.conformance.stored_rows import stored_facts_query
from usm_bridge.store import Store
from usm_bridge.store import schema as tables

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

from fill_store import fill_store

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_driver_rows_are_the_rows_sqlalchemy_gives_on_each_back_end(store_url: str) -> None:
    fill_store(store_url, 300, seed=17, now=NOW)
    calls = tables.calls
    with Store.open(store_url) as store, store.engine.connect() as conn:
        for units in (None, ("hr", "it")):
            query = stored_facts_query().order_by(calls.c.created_at, calls.c.id)
            if units is not None:
                query = query.where(calls.c.unit.in_(units))
            expected = [dict(row) for row in conn.execute(query).mappings()]
            driver = DriverQuery.of(query, conn.dialect)
            pages = list(driver.pages(conn, 70))
            assert [len(page) for page in pages][:-1] == [70] * (len(pages) - 1)
            got = [row for page in pages for row in page]
            assert got == expected and len(got) > 100
            # The timestamps are UTCDateTime's: aware, UTC.
            assert all(row["created_at"].tzinfo is UTC for row in got)

            # The pass's streams of related rows (joined to calls, a unit filter expanded).
            for table, call_id in (
                (tables.audit_log, tables.audit_log.c.call_id),
                (tables.identities, tables.identities.c.call_id),
                (tables.chain_links, tables.chain_links.c.supplier_call_id),
            ):
                stream = _in_pass_order(table, call_id, units)
                rows = [dict(row) for row in conn.execute(stream).mappings()]
                assert [
                    r for p in DriverQuery.of(stream, conn.dialect).pages(conn, 50) for r in p
                ] == rows
                assert rows, table.name

            keyed = _KeyedQueries.of(units, conn.dialect.name)
            window = expected[40:140]  # a page's range, its bounds given as parameters
            parameters = keyed.parameters(window)
            assert parameters is not None
            for query_of_page in (keyed.audit, keyed.changes, keyed.identities, keyed.links):
                rows = [dict(row) for row in conn.execute(query_of_page, parameters).mappings()]
                # Bound values (the page's range: UTCDateTime's bind processor) as well.
                assert DriverQuery.of(query_of_page, conn.dialect).all(conn, parameters) == rows
                if query_of_page is not keyed.changes:
                    assert rows, query_of_page  # the store holds some of each
            identities = DriverQuery.of(keyed.identities, conn.dialect).all(conn, parameters)
            assert {row["call_id"] for row in identities} == {row["id"] for row in window}


def test_a_timestamp_column_holding_no_timestamp_fails_as_it_did(tmp_path: Path) -> None:
    """A hand-edited SQLite row whose ``created_at`` is not a timestamp: the driver's rows
    raise SQLAlchemy's own error, as ``Connection.execute`` did (never a wrong value)."""
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    fill_store(url, 20, seed=17, now=NOW)
    calls = tables.calls
    with Store.open(url) as store, store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE calls SET created_at = 'yesterday' WHERE rowid = 3"))
        query = stored_facts_query().order_by(calls.c.id)
        with pytest.raises(ValueError) as before:
            list(conn.execute(query).mappings())
        with pytest.raises(ValueError) as now:
            list(DriverQuery.of(query, conn.dialect).pages(conn, 10))
        assert str(now.value) == str(before.value)
