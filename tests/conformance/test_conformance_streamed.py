"""A report reads the store's calls page by page, and says exactly what a report that held
every call in memory says (issue #17: flat memory over a million calls)."""

from __future__ import annotations

from contextlib import closing

import pytest
import sqlalchemy as sa
from conformance_enterprise import Enterprise
from whole_context import whole_context

from usm_bridge.conformance.call_stream import CallSource, _RelatedStreams
from usm_bridge.conformance.context import ReportContext
from usm_bridge.conformance.engine import build_report
from usm_bridge.conformance.renderers import JsonRenderer
from usm_bridge.conformance.sampling import SampleRequest
from usm_bridge.store import schema as tables


def _paged(enterprise: Enterprise, size: int) -> ReportContext:
    context = enterprise.context()
    assert context.source is not None  # a store on disk is read page by page
    context.source = CallSource(enterprise.store.engine, page_size=size)
    return context


@pytest.mark.parametrize("page_size", [1, 3, 1000])
def test_a_report_read_page_by_page_says_what_one_over_all_calls_in_memory_says(
    enterprise: Enterprise, page_size: int
) -> None:
    streamed = _paged(enterprise, page_size)
    whole = whole_context(enterprise.store, streamed)
    paged_report, whole_report = build_report(streamed), build_report(whole)
    assert sum(len(o.evidence) for o in whole_report.outcomes) > 0
    assert any(route.volume for route in whole_report.chain.routes)
    assert JsonRenderer().render(paged_report) == JsonRenderer().render(whole_report)


def test_a_sample_drawn_page_by_page_is_the_one_drawn_in_memory(enterprise: Enterprise) -> None:
    streamed = _paged(enterprise, 2)
    streamed.sample = SampleRequest(size=3, seed="s")
    whole = whole_context(enterprise.store, streamed)
    paged_report, whole_report = build_report(streamed), build_report(whole)
    assert any(o.sample for o in whole_report.outcomes)
    assert JsonRenderer().render(paged_report) == JsonRenderer().render(whole_report)


def test_no_page_holds_more_calls_than_its_size(enterprise: Enterprise) -> None:
    context = _paged(enterprise, 2)
    with enterprise.store.begin(readonly=True) as tx:
        stored = [s.id for s in tx.list_calls()]
    pages = [[s.id for s in page.calls] for page in context.pages()]
    assert len(stored) > 4
    assert all(1 <= len(page) <= 2 for page in pages)
    assert [call_id for page in pages for call_id in page] == stored


@pytest.mark.parametrize("rows", [True, False], ids=["rows", "records"])
def test_rows_the_pages_never_take_stop_the_pass_instead_of_going_unjudged(
    enterprise: Enterprise, rows: bool
) -> None:
    # The pass reads each call's identities, change events and chain links as streams in the
    # calls' order; a row no page takes would be a call judged without it.
    with (
        enterprise.store.engine.connect() as conn,
        conn.begin(),
        closing(_RelatedStreams(conn, None, 1000, rows=rows)) as related,
    ):
        assert related.of_page(set()) == ([], [], [])  # a page that names none of them
        with pytest.raises(RuntimeError, match=r"left rows of (audit_log|identities) unread"):
            related.finish()


@pytest.mark.parametrize("page_size", [3, 1000])
def test_each_page_gets_exactly_the_identities_events_and_links_of_its_own_calls(
    enterprise: Enterprise, page_size: int
) -> None:
    context = _paged(enterprise, page_size)
    with enterprise.store.engine.connect() as conn:
        rows = conn.execute(sa.select(tables.identities.c.call_id, tables.identities.c.instance))
        identities = {(call_id, instance) for call_id, instance in rows}
    assert context.source is not None and len(identities) > 3
    seen = set()
    for page in context.source.pages():
        ids = {stored.id for stored in page.calls}
        for call_id, found in page.identities.items():
            assert call_id in ids
            assert [i.id for i in found] == sorted(i.id for i in found)
            seen.update((i.call_id, i.instance) for i in found)
        assert set(page.links) <= ids
        # Each call's events in the order appended.
        assert set(page.audit) <= ids
        assert all([e.id for e in events] == sorted(e.id for e in events)
                   for events in page.audit.values())  # fmt: skip
    assert seen == identities
