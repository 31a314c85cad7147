"""Revision 0013: ``ix_calls_created_at_id`` holds every call in the order a conformance report
reads them (oldest first), so the database streams them without sorting the table; it
downgrades without it, and the report's query reads the same calls in the same order."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from store.store_revisions import downgrade, index_names, upgraded_keeping

from usm_bridge.conformance.call_stream import CallSource
from usm_bridge.model import Call
from usm_bridge.store import Store

MakeCall = Callable[..., Call]
INDEX = "ix_calls_created_at_id"


def test_revision_0013_adds_the_index_and_downgrades_without_it(
    store_url: str, make_call: MakeCall
) -> None:
    call = make_call("HR-1")
    with Store.open(store_url) as store:
        assert ("calls", INDEX) in index_names(store, "calls")
        with store.begin() as tx:
            tx.upsert_call(call, instance="hr-jira")
        downgrade(store, "0012")
        assert ("calls", INDEX) not in index_names(store, "calls")
    with upgraded_keeping(store_url, call) as store:
        assert ("calls", INDEX) in index_names(store, "calls")


def test_the_report_reads_the_calls_oldest_first_through_the_index(
    store_url: str, make_call: MakeCall
) -> None:
    first = make_call("HR-1")
    calls = [
        make_call(
            f"HR-{n}",
            created=first.created + timedelta(hours=n % 3),
            updated=first.updated + timedelta(hours=3),
        )
        for n in range(2, 9)
    ]
    with Store.open(store_url) as store:
        with store.begin() as tx:
            for call in [first, *calls]:
                tx.upsert_call(call, instance="hr-jira")
        with store.begin(readonly=True) as tx:
            expected = [stored.id for stored in tx.list_calls()]
        pages = CallSource(store.engine, page_size=3).pages()
        assert [stored.id for page in pages for stored in page.calls] == expected
        if store.engine.dialect.name == "sqlite":
            with store.engine.connect() as conn:
                plan = conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT * FROM calls ORDER BY created_at, id"
                ).all()
            steps = " | ".join(str(row[-1]) for row in plan)
            assert INDEX in steps and "TEMP B-TREE" not in steps
