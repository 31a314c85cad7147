"""A report reads the store's calls page by page, and says exactly what a report that held
every call in memory says (issue #17: flat memory over a million calls)."""

from __future__ import annotations

import pytest
from conformance_enterprise import Enterprise
from whole_context import whole_context

from usm_bridge.conformance.call_stream import CallSource
from usm_bridge.conformance.context import ReportContext
from usm_bridge.conformance.engine import build_report
from usm_bridge.conformance.renderers import JsonRenderer
from usm_bridge.conformance.sampling import SampleRequest


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
