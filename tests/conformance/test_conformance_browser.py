"""The HTML report in a real headless Chromium (Debian's ``chromium`` package).

The page is loaded from a file with the browser's console logged to stderr; the rendered DOM
is dumped, a screenshot and a PDF are saved under ``test-artifacts/``. The report contains a
call whose title is a script and whose link is ``javascript:``: nothing of it may run.

Chromium missing skips these tests, except under ``CI=true`` where it fails them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from conformance_enterprise import make_enterprise
from conformance_reports import report_of
from headless_chromium import browse as _browse

from usm_bridge.conformance.engine import build_report
from usm_bridge.conformance.renderers import HtmlRenderer
from usm_bridge.conformance.report import ConformanceReport

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConformanceReport]:
    root = tmp_path_factory.mktemp("enterprise")
    enterprise = make_enterprise(f"sqlite:///{root / 'store.db'}", root)
    try:
        yield build_report(enterprise.context())
    finally:
        enterprise.store.close()


def test_the_console_capture_sees_errors(tmp_path: Path) -> None:
    """The harness itself: a page that logs an error and throws is caught."""
    page = tmp_path / "probe.html"
    page.write_text(
        "<!DOCTYPE html><title>p</title><script>console.error('probe-error');"
        "document.title='ran'; missing();</script>"
    )
    dom, console = _browse(page, tmp_path / "profile", "--dump-dom")
    assert "<title>ran</title>" in dom
    assert any("probe-error" in message for message in console)
    assert any("missing is not defined" in message for message in console)


def test_the_report_renders_in_chromium_with_nothing_from_tickets_running(
    report: ConformanceReport, tmp_path: Path
) -> None:
    page = tmp_path / "conformance.html"
    page.write_text(HtmlRenderer().render(report), encoding="utf-8")
    dom, console = _browse(page, tmp_path / "profile", "--dump-dom")
    assert console == []
    # the hostile title is in the page as text, and did nothing
    assert "document.body.setAttribute('data-pwned','1')" in dom.replace("&#39;", "'")
    assert "data-pwned=" not in dom
    assert re.search(r"<title>USM conformance report · last 30d</title>", dom)
    assert "<script" not in dom and "<img" not in dom
    assert 'href="javascript' not in dom.lower()
    # scores and the chain diagram are in the rendered DOM
    assert f'id="enterprise-score" data-score="{report.enterprise.score}"' in dom
    for unit in report.units:
        assert f'<tr class="unit-score" data-unit="{unit.name}">' in dom
    assert '<svg id="chain-diagram"' in dom
    assert dom.count('class="chain-unit"') == 3 and dom.count('class="route"') == 2
    assert "2 calls · median 3.0 h" in dom


def test_screenshot_and_pdf_are_saved_as_artefacts(
    report: ConformanceReport, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = ARTIFACTS / "conformance-report.html"
    page.write_text(HtmlRenderer().render(report), encoding="utf-8")
    shot = ARTIFACTS / "conformance-report.png"
    pdf = ARTIFACTS / "conformance-report.pdf"
    shot.unlink(missing_ok=True)
    pdf.unlink(missing_ok=True)
    _, console = _browse(
        page,
        tmp_path / "p1",
        f"--screenshot={shot}",
        "--window-size=1280,2200",
        "--hide-scrollbars",
    )
    assert console == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    _, console = _browse(page, tmp_path / "p2", f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    assert console == []
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    # one page for the summary and chain, then one per unit (the print style breaks there)
    assert len(re.findall(rb"/Type\s*/Page[^s]", data)) >= 1 + len(report.units)


# --- bidirectional text ------------------------------------------------------------------------

SENTENCE = "closed without a customer confirmation"

#: Measures, in the rendered page, where each character of the first evidence item's detail
#: and the title before it were laid out; the report itself runs no script, this copy does.
_PROBE = """<script>
(function () {
  function lefts(element) {
    var found = [], walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT), node;
    while ((node = walker.nextNode())) {
      for (var i = 0; i < node.data.length; i++) {
        if (node.data[i] === " ") continue;
        var range = document.createRange();
        range.setStart(node, i);
        range.setEnd(node, i + 1);
        found.push(range.getBoundingClientRect().left);
      }
    }
    return found;
  }
  var item = document.querySelector("ul.evidence li");
  var title = item.querySelector("q"), detail = item.querySelector(".detail");
  document.body.setAttribute("data-probe", JSON.stringify({
    detail: lefts(detail),
    titleRight: title.getBoundingClientRect().right,
    detailLeft: detail.getBoundingClientRect().left,
    detailText: detail.textContent
  }));
})();
</script>"""


def _bidi_report() -> ConformanceReport:
    """One finding on a call whose title holds an unclosed right-to-left override."""
    from usm_bridge.conformance.api import Evidence

    finding = Evidence(
        detail=SENTENCE,
        remote_key="INC0001",
        url="https://it.example.com/INC0001",
        title="Printer \u202eon fire",
    )
    return report_of([finding], check_id="data.incident-confirmation", category="data")


def _layout(html: str, tmp_path: Path, name: str) -> dict[str, object]:
    """Where Chromium laid out the first evidence item: ``html`` without its no-script policy,
    with the probe appended."""
    import html as html_lib
    import json

    probed = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    assert probed != html
    page = tmp_path / f"{name}.html"
    page.write_text(probed.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom, console = _browse(page, tmp_path / f"profile-{name}", "--dump-dom")
    assert console == []
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found is not None, "the probe did not run"
    return json.loads(html_lib.unescape(found.group(1)))  # type: ignore[no-any-return]


def test_an_unclosed_rtl_override_in_a_title_leaves_the_reports_sentence_alone(
    tmp_path: Path,
) -> None:
    html = HtmlRenderer().render(_bidi_report())
    assert "<bdi>Printer \u202eon fire</bdi>" in html  # shown as the tool holds it
    layout = _layout(html, tmp_path, "isolated")
    lefts = layout["detail"]
    assert isinstance(lefts, list) and len(lefts) == len(SENTENCE.replace(" ", ""))
    assert layout["detailText"] == SENTENCE
    # The sentence reads left to right, and after the title, not inside it.
    assert all(a < b for a, b in pairwise(lefts)), lefts
    assert layout["titleRight"] <= layout["detailLeft"]  # type: ignore[operator]

    # The same page without the isolation: the probe sees the sentence reversed and pulled
    # into the title, so the assertions above can fail.
    bare = html.replace("<bdi>", "<span>").replace("</bdi>", "</span>")
    layout = _layout(bare, tmp_path, "bare")
    lefts = layout["detail"]
    assert isinstance(lefts, list) and all(a > b for a, b in pairwise(lefts)), lefts
    assert layout["titleRight"] > layout["detailLeft"]  # type: ignore[operator]


# --- populations, scores and samples -----------------------------------------------------------


def test_populations_weights_and_samples_render(tmp_path: Path) -> None:
    from usm_bridge.conformance.sampling import SampleRequest

    enterprise = make_enterprise(f"sqlite:///{tmp_path / 'store.db'}", tmp_path)
    try:
        context = enterprise.context()
        context.sample = SampleRequest(size=2, seed="audit")
        sampled = build_report(context)
    finally:
        enterprise.store.close()
    ARTIFACTS.mkdir(exist_ok=True)
    page = ARTIFACTS / "conformance-report-sampled.html"
    page.write_text(HtmlRenderer().render(sampled), encoding="utf-8")
    dom, console = _browse(page, tmp_path / "profile", "--dump-dom")
    assert console == []
    assert '<p id="scoring-rule" class="meta">' in dom and '<p id="sampling-rule"' in dom
    for outcome in sampled.outcomes:
        assert outcome.population is not None, outcome.check_id
        if outcome.sample:
            assert outcome.population is not None
            drawn = f'data-drawn="{len(outcome.sample)}" data-size="{outcome.population.size}"'
            assert drawn in dom, outcome.check_id
    assert dom.count('class="population"') == len(sampled.outcomes)
    assert dom.count('class="weighing"') == len(sampled.outcomes)
    samples = sum(len(o.sample) for o in sampled.outcomes)
    assert samples and dom.count('<ul class="sample">') == sum(
        1 for o in sampled.outcomes if o.sample
    )
    shot = ARTIFACTS / "conformance-report-sampled.png"
    shot.unlink(missing_ok=True)
    _, console = _browse(page, tmp_path / "p1", f"--screenshot={shot}", "--window-size=1280,2600")
    assert console == [] and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
