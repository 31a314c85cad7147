"""Every exception's evidence is spooled to disk while the report is built, and the JSON report
is written from the spool piece by piece: the same bytes as the report dumped whole (issue #17:
flat memory over a million calls; the memory itself is measured by
``bench/bench_conformance_scale.py``, not here)."""

from __future__ import annotations

import copy
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conformance_enterprise import Enterprise

from usm_bridge.conformance.api import CheckOutcome, Evidence, ReportWriter
from usm_bridge.conformance.command import ReportRun, write_output
from usm_bridge.conformance.engine import build_report
from usm_bridge.conformance.evidence_spool import EvidenceSpool, SpooledEvidence
from usm_bridge.conformance.exceptions_export import exception_rows
from usm_bridge.conformance.json_stream import report_json_pieces
from usm_bridge.conformance.renderers import JsonRenderer, MarkdownRenderer
from usm_bridge.conformance.report import ConformanceReport


def _items(count: int, detail: str = "finding") -> list[Evidence]:
    return [
        Evidence(
            detail=f"{detail} {n}",
            call_id=f"c{n}",
            remote_key=f"IT-{n}",
            url=f"https://jira.example/browse/IT-{n}",
            title=f'ticket {n}: «é» \u202e\n\t"quoted" \\ {{}}',
            opened=datetime(2026, 1, 1, tzinfo=UTC),
        )
        for n in range(count)
    ]


def _in_memory(report: ConformanceReport) -> ConformanceReport:
    """The report with every spooled list read back into a plain list (today's model)."""
    return report.model_copy(
        update={
            "outcomes": [
                o.model_copy(update={"evidence": list(o.evidence)}) for o in report.outcomes
            ],
            "process_views": [
                v.model_copy(update={"outside_evidence": list(v.outside_evidence)})
                for v in report.process_views
            ],
        }
    )


# -- the spooled list ----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 999, 1000, 1001, 2500])
def test_a_spooled_list_reads_back_every_item_in_order(count: int) -> None:
    items = _items(count)
    spooled = EvidenceSpool().new_list(items)
    assert len(spooled) == count
    assert list(spooled) == items
    assert spooled == items and items == spooled
    assert spooled[:50] == items[:50]
    assert spooled[-3:] == items[-3:]
    assert spooled[count:] == []
    if count:
        assert spooled[0] == items[0] and spooled[-1] == items[-1]
    with pytest.raises(IndexError):
        spooled[count]


def test_a_list_read_between_appends_reads_back_across_its_uneven_batches() -> None:
    # A read writes the items waiting in memory as a short batch: later reads and slices
    # cross from it into the full batches after it.
    items = _items(2300)
    spooled = EvidenceSpool().new_list(items[:5])
    assert spooled[4] == items[4]
    spooled.extend(items[5:1007])
    assert spooled[1006] == items[1006]
    spooled.extend(items[1007:])
    assert list(spooled) == items
    assert spooled[3:1010] == items[3:1010]
    assert spooled[1004:2299] == items[1004:2299]
    assert [spooled[n] for n in (0, 5, 1004, 1005, 1006, 1007, 2005, 2299)] == [
        items[n] for n in (0, 5, 1004, 1005, 1006, 1007, 2005, 2299)
    ]
    assert list(copy.deepcopy(spooled).json_items()) == [
        item.model_dump_json(indent=2) for item in items
    ]
    # The JSON report reads it a batch at a time: each batch whole, as a JSON list joins them.
    rows = list(spooled.json_rows())
    assert [row.count('"detail"') for row in rows] == [5, 1000, 2, 1000, 293]
    assert ",\n".join(rows) == ",\n".join(item.model_dump_json(indent=2) for item in items)
    assert list(EvidenceSpool().new_list().json_rows()) == []


def test_lists_of_one_spool_stay_apart_and_a_deep_copy_is_its_own() -> None:
    spool = EvidenceSpool()
    first, second = spool.new_list(), spool.new_list()
    for a, b in zip(_items(1500, "a"), _items(1500, "b"), strict=True):
        first.append(a)
        second.append(b)
    copied = copy.deepcopy(first)
    copied.append(Evidence(detail="only in the copy"))
    assert [e.detail for e in first] == [f"a {n}" for n in range(1500)]
    assert [e.detail for e in second] == [f"b {n}" for n in range(1500)]
    assert len(copied) == 1501 and copied[-1].detail == "only in the copy"


@pytest.mark.parametrize("count", [3, 1003])
def test_a_closed_spool_says_so_instead_of_listing_less(count: int) -> None:
    # Items still waiting in memory (3) or partly written (1003): never a short list.
    spool = EvidenceSpool()
    spooled = spool.new_list(_items(count))
    spool.close()
    with pytest.raises(ValueError, match="closed"):
        list(spooled)
    with pytest.raises(ValueError, match="closed"):
        spooled.append(Evidence(detail="late"))
        spooled.extend(_items(1000))


def test_an_outcome_keeps_its_spooled_list_and_dumps_it_whole() -> None:
    items = _items(1200)
    spooled = EvidenceSpool().new_list(items)
    outcome = CheckOutcome(check_id="c", title="t", verdict="fail", summary="s", evidence=spooled)
    listed = CheckOutcome(check_id="c", title="t", verdict="fail", summary="s", evidence=items)
    assert outcome.evidence is spooled  # validation never reads the spool back
    assert outcome.model_dump_json(indent=2) == listed.model_dump_json(indent=2)
    assert outcome.model_dump() == listed.model_dump()
    assert (
        CheckOutcome(check_id="c", title="t", verdict="pass", summary="s", evidence=()).evidence
        == []
    )


# -- the report ----------------------------------------------------------------------------------


def test_the_built_in_checks_spool_their_evidence(enterprise: Enterprise) -> None:
    report = build_report(enterprise.context())
    spooled = [o for o in report.outcomes if isinstance(o.evidence, SpooledEvidence)]
    assert any(o.evidence for o in spooled)
    assert {o.check_id for o in spooled} >= {"data.classified", "data.service-agreement"}


def test_the_streamed_json_is_byte_for_byte_the_report_dumped_whole(
    enterprise: Enterprise,
) -> None:
    report = build_report(enterprise.context())
    listed = sum(len(o.evidence) for o in report.outcomes)
    assert listed > 0
    expected = _in_memory(report).model_dump_json(indent=2) + "\n"
    out = io.StringIO()
    JsonRenderer().write(report, out)
    assert out.getvalue() == expected
    assert JsonRenderer().render(report) == expected
    parsed = json.loads(out.getvalue())
    assert sum(len(o["evidence"]) for o in parsed["outcomes"]) == listed


def test_ticket_text_shaped_like_a_marker_or_json_changes_nothing() -> None:
    # Evidence that looks like what the writer looks for, in lists long enough to be
    # written in several pieces, beside lists held in memory and an empty spooled one.
    spool = EvidenceSpool()
    hostile = [
        Evidence(detail='"detail": "0:0"\n  },\n  {', title="}\n]", call_id=str(n))
        for n in range(1234)
    ]
    lists = [spool.new_list(hostile), spool.new_list(), hostile[:3], spool.new_list(_items(501))]
    outcomes = [
        CheckOutcome(check_id=f"c{n}", title="C", verdict="fail", summary="s", evidence=items)
        for n, items in enumerate(lists)
    ]
    report = ConformanceReport.model_validate(
        {
            "generated_at": datetime(2026, 3, 1, tzinfo=UTC),
            "period": {"since": None, "until": None, "label": "all"},
            "enterprise": {"score": None},
            "units": [],
            "checks": [],
            "outcomes": outcomes,
            "chain": {"units": [], "routes": []},
        }
    )
    streamed = "".join(report_json_pieces(report))
    assert streamed == _in_memory(report).model_dump_json(indent=2) + "\n"
    parsed = json.loads(streamed)
    assert [len(o["evidence"]) for o in parsed["outcomes"]] == [1234, 0, 3, 501]


def test_the_export_and_markdown_read_the_spool_as_they_read_a_list(
    enterprise: Enterprise,
) -> None:
    report = build_report(enterprise.context())
    whole = _in_memory(report)
    assert list(exception_rows(report)) == list(exception_rows(whole))
    assert MarkdownRenderer().render(report) == MarkdownRenderer().render(whole)


@pytest.mark.parametrize("renderer", [JsonRenderer(), MarkdownRenderer()])
def test_a_run_written_to_a_file_is_its_text(
    enterprise: Enterprise, tmp_path: Path, renderer: JsonRenderer | MarkdownRenderer
) -> None:
    # JSON is streamed (a ReportWriter), Markdown written as its text: the same bytes.
    run = ReportRun(build_report(enterprise.context()), renderer, renderer.format, False)
    assert isinstance(renderer, ReportWriter) == (renderer.format == "json")
    write_output(tmp_path / "out" / "report", run)
    assert (tmp_path / "out" / "report").read_text(encoding="utf-8") == run.text
    assert run.text == renderer.render(_in_memory(run.report))


def test_each_data_check_counts_its_population_as_it_lists_it(enterprise: Enterprise) -> None:
    # Without a sample a check counts its population instead of listing it: the same size.
    from usm_bridge.conformance.checks import BUILTIN_CHECKS, _DataCheck

    context = enterprise.context()
    checks = [check for check in BUILTIN_CHECKS() if isinstance(check, _DataCheck)]
    assert len(checks) >= 7
    sizes = {check.id: 0 for check in checks}
    for _ in context.pages():
        for check in checks:
            for calls in context.page_calls().values():
                listed = len(check.population(context, calls))
                assert check.population_size(context, calls) == listed, check.id
                sizes[check.id] += listed
    assert sizes["data.transitions"] > 0 and sizes["data.classified"] > 0
