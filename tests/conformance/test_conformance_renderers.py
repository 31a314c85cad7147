"""The four built-in formats: JSON against the published schema, JUnit XML a pipeline can gate
on, Markdown, and HTML that keeps hostile ticket text inert."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import jsonschema
import pytest
from conformance_enterprise import HOSTILE_TITLE, HOSTILE_URL
from conformance_reports import report_of

from usm_bridge.conformance.api import Evidence
from usm_bridge.conformance.context import ReportContext, safe_link
from usm_bridge.conformance.engine import build_report
from usm_bridge.conformance.renderers import (
    HtmlRenderer,
    JsonRenderer,
    JunitRenderer,
    MarkdownRenderer,
    markdown_escape,
)
from usm_bridge.conformance.report import (
    ConformanceReport,
    published_schema,
    report_json_schema,
)
from usm_bridge.plugins import PluginHost

HOSTILE_KEY = '"><svg onload=alert(1)>'


def _hostile_report() -> ConformanceReport:
    """A report whose every free text is an attack, built without a store."""
    evidence = [
        Evidence(
            detail=HOSTILE_TITLE, remote_key=HOSTILE_KEY, url=HOSTILE_URL, title=HOSTILE_TITLE
        ),
        Evidence(
            detail="data url", remote_key="K-2", url="data:text/html,<script>alert(1)</script>"
        ),
        Evidence(detail="vb", remote_key="K-3", url=" JaVaScRiPt:alert(1)"),
        Evidence(detail="fine", remote_key="K-4", url="https://tool.example.com/K-4?a=1&b=2"),
        Evidence(detail="a\x00control\x1bchar | pipe [link](https://evil.example)", call_id="c5"),
    ]
    return report_of(
        evidence,
        label="all <time>",
        check_id="acme.hostile",
        title="<b>bold</b> title",
        summary="<script>alert('summary')</script>",
        unit="hr<script>",
        metrics={"<i>m</i>": "<script>x</script>"},
    )


# --- JSON --------------------------------------------------------------------------------------


def test_the_published_schema_is_the_model_schema() -> None:
    assert json.loads(published_schema()) == report_json_schema()
    jsonschema.Draft202012Validator.check_schema(json.loads(published_schema()))


def test_json_validates_against_the_published_schema(context: ReportContext) -> None:
    text = JsonRenderer().render(build_report(context))
    data = json.loads(text)
    jsonschema.Draft202012Validator(json.loads(published_schema())).validate(data)
    assert data["format_version"] == 1
    assert {u["name"] for u in data["units"]} == {"hr", "facilities", "it"}
    assert (
        ConformanceReport.model_validate_json(text).enterprise.score == data["enterprise"]["score"]
    )
    bad = {**data, "enterprise": {**data["enterprise"], "verdict": "maybe"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json.loads(published_schema()))


# --- JUnit -------------------------------------------------------------------------------------


def test_junit_has_a_failure_per_failed_check(context: ReportContext) -> None:
    report = build_report(context)
    root = ET.fromstring(JunitRenderer().render(report).encode())
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(report.outcomes)
    failures = root.findall("./testsuite/testcase/failure")
    assert len(failures) == sum(1 for o in report.outcomes if o.verdict == "fail")
    assert int(root.get("failures", "-1")) == len(failures)
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"conformance.hr", "conformance.facilities", "conformance.it"}
    failed = {
        c.get("name")
        for c in suites["conformance.facilities"].iter("testcase")
        if c.find("failure") is not None
    }
    assert failed == {"data.priority", "data.transitions", "data.supplier-links"}
    # A check with nothing to test in a unit (data.process-flows here, among others) is a
    # skipped case, never a passed one.
    skipped = {c.get("name") for c in suites["conformance.hr"].iter("testcase")
               if c.find("skipped") is not None}  # fmt: skip
    not_applicable = {o.check_id for o in report.outcomes_of("hr") if o.verdict == "n/a"}
    assert "data.process-flows" in skipped
    assert skipped == not_applicable
    assert suites["conformance.hr"].get("skipped") == str(len(not_applicable))
    hr_score = suites["conformance.hr"].find("./properties/property[@name='score']")
    assert hr_score is not None and hr_score.get("value") == str(report.units[0].score.score)


def test_junit_survives_hostile_text() -> None:
    root = ET.fromstring(JunitRenderer().render(_hostile_report()).encode())
    failure = root.find("./testsuite/testcase/failure")
    assert failure is not None and failure.text is not None
    assert HOSTILE_TITLE in failure.text  # kept as text, escaped by the XML writer
    assert "\x00" not in failure.text and "\ufffd" in failure.text


# --- Markdown ----------------------------------------------------------------------------------


def test_markdown_report(context: ReportContext) -> None:
    text = MarkdownRenderer().render(build_report(context))
    assert text.startswith("# USM conformance report\n")
    assert "| hr-to-facilities | hr | facilities | 2 | 1 | 3.0 h |" in text
    assert "[FAC-1](<https://facilities.example.com/browse/FAC-1>)" in text
    assert "## Human Resources" in text and "## Facilities" in text
    # HR-5's link is javascript: - shown as text, its title escaped
    assert '- HR-5 "&lt;script&gt;' in text
    assert "<script" not in text and "javascript:" not in text


def test_markdown_escapes_hostile_text() -> None:
    text = MarkdownRenderer().render(_hostile_report())
    assert "<" not in text.replace("(<https://tool.example.com/K-4?a=1&b=2>)", "")
    assert "](<https://tool.example.com/K-4?a=1&b=2>)" in text
    assert re.findall(r"(?<!\\)\]\(<?\s*([a-z]+):", text, re.IGNORECASE) == ["https"]
    assert "\\[link\\](https://evil.example)" in text
    assert "char \\| pipe" in text
    assert markdown_escape("a|b*c_d`e<f>") == "a\\|b\\*c\\_d\\`e&lt;f&gt;"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://x.example/a", "https://x.example/a"),
        ("http://x.example", "http://x.example"),
        ("javascript:alert(1)", None),
        (" javascript:alert(1)", None),
        ("JAVASCRIPT:alert(1)", None),
        ("data:text/html,x", None),
        ("//evil.example/x", None),
        ("/relative", None),
        ("https://x.example/a b", None),
        ("https:alert(1)", None),
        (None, None),
    ],
)
def test_only_http_urls_become_links(url: str | None, expected: str | None) -> None:
    assert safe_link(url) == expected


# --- HTML --------------------------------------------------------------------------------------


class _Collector(HTMLParser):
    """Tags, attributes and links of a page, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.hrefs: list[str] = []
        self.handlers: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append(f"{tag}.{name}")
            if name == "href" and value is not None and tag == "a":
                self.hrefs.append(value)
            if name in ("src", "href") and tag in ("link", "script", "img", "iframe"):
                self.external.append(f"{tag}.{name}")


def test_html_escapes_hostile_text_and_links_only_http() -> None:
    html = HtmlRenderer().render(_hostile_report())
    page = _Collector()
    page.feed(html)
    assert "script" not in page.tags and "svg" not in page.tags[: page.tags.index("body")]
    assert page.handlers == []
    assert page.external == []
    assert page.hrefs == ["https://tool.example.com/K-4?a=1&b=2"]
    assert "&lt;script&gt;alert(&#39;summary&#39;)&lt;/script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt; title" in html
    assert "<b>" not in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html


def test_html_report_is_self_contained_with_scores_and_chain(context: ReportContext) -> None:
    report = build_report(context)
    html = HtmlRenderer().render(report)
    page = _Collector()
    page.feed(html)
    assert page.external == [] and "script" not in page.tags
    # nothing is loaded from elsewhere: no URL outside the evidence links
    outside_links = set(re.findall(r"(?:src|href)=\"([^\"#]+)\"", html)) - set(page.hrefs)
    assert outside_links == set()
    assert f'data-score="{report.enterprise.score}"' in html
    assert '<svg id="chain-diagram"' in html
    assert html.count('class="route"') == 2 and html.count('class="chain-unit"') == 3
    assert "2 calls · median 3.0 h" in html and "1 call · median 30 min" in html
    assert "@media print" in html
    assert "https://facilities.example.com/browse/FAC-1" in page.hrefs
    assert not any(h.startswith("javascript") for h in page.hrefs)


def test_every_builtin_format_renders_through_the_plugin_host(context: ReportContext) -> None:
    renderers = PluginHost().report_renderers()
    assert set(renderers) >= {"html", "json", "markdown", "junit"}
    report = build_report(context)
    for renderer in renderers.values():
        assert renderer.render(report).strip()
