"""The built-in report renderers: HTML, JSON, Markdown and JUnit XML.

Registered through the ``usm_bridge`` entry point group as ``builtin_report_renderers``. Ticket
text is untrusted everywhere: HTML goes through Jinja2 with autoescape (and a Content Security
Policy that allows no script at all), Markdown escapes every value it prints, JUnit XML is
built with an XML library and stripped of characters XML cannot hold, and only ``http``/``https``
URLs ever become links. Ticket text cannot rearrange the text around it either
(:mod:`usm_bridge.conformance.inert_text`): HTML isolates it in ``<bdi>``, Markdown and JUnit
show its bidirectional controls as code points.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any, ClassVar, TextIO

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from ..hookspecs import hookimpl
from .api import CheckOutcome, ReportRenderer
from .context import safe_link
from .inert_text import bdi, neutralise_bidi
from .json_stream import report_json_pieces, write_report_json
from .process_views import within_text
from .report import ConformanceReport
from .svg import chain_drawing, format_duration, score_bars
from .trend_drawing import trend_charts

__all__ = [
    "HtmlRenderer",
    "JsonRenderer",
    "JunitRenderer",
    "MarkdownRenderer",
    "markdown_escape",
    "usm_bridge_report_renderers",
]

#: Evidence items shown per outcome in the HTML and Markdown reports; the JSON report and the
#: exceptions export (``--exceptions FILE``) list them all.
SHOWN_EVIDENCE = 50

# Backslashed wherever they appear: emphasis, code, links/images (brackets) and table cells.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def markdown_escape(value: Any) -> str:
    """Text that Markdown shows literally: specials backslashed, HTML as entities, one line."""
    text = neutralise_bidi("" if value is None else str(value))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return " ".join(text.split())


def _md_link(text: Any, url: str | None) -> Markup:
    shown = markdown_escape(text)
    href = safe_link(url)
    if href is None:
        return Markup(shown)  # noqa: S704 - escaped above
    quoted = href.replace("(", "%28").replace(")", "%29").replace(" ", "%20")
    return Markup(f"[{shown}](<{quoted.replace('<', '%3C').replace('>', '%3E')}>)")  # noqa: S704


def _md_finalize(value: Any) -> Any:
    return value if isinstance(value, Markup) else markdown_escape(value)


def _xml_text(value: Any) -> str:
    return _XML_ILLEGAL.sub("\ufffd", neutralise_bidi("" if value is None else str(value)))


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def _percent(rate: float | None) -> str:
    """An exception rate as a percentage with two decimals (``n/a`` when nothing was tested)."""
    return "n/a" if rate is None else f"{100 * rate:.2f}%"


def _change(value: float | None) -> str:
    """A change in points, signed: ``+2.5``, ``-10``, ``0``; ``-`` when unknown."""
    if value is None:
        return "-"
    return f"{value:+g}" if value else "0"


def _verdict_class(verdict: str) -> str:
    """The verdict as a CSS class name (``n/a`` has a slash, which a class cannot hold)."""
    return "na" if verdict == "n/a" else verdict


def _band(value: float | None) -> str:
    """The colour class of a score: green from 90, amber from 70, red below (or unknown)."""
    if value is None:
        return "warn"
    return "pass" if value >= 90 else "warn" if value >= 70 else "fail"


def _environment(*, html: bool) -> Environment:
    env = Environment(
        loader=PackageLoader("usm_bridge", "templates"),
        # HTML templates are always escaped; Markdown escapes through finalize instead.
        autoescape=select_autoescape(
            enabled_extensions=("html", "html.j2", "xml", "svg"),
            disabled_extensions=("md.j2",),
            default=True,
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=None if html else _md_finalize,
    )
    env.filters["href"] = safe_link
    env.filters["duration"] = format_duration
    env.filters["score"] = _score
    env.filters["band"] = _band
    env.filters["percent"] = _percent
    env.filters["mdlink"] = _md_link
    env.filters["bdi"] = bdi
    env.filters["change"] = _change
    env.filters["within"] = within_text
    env.filters["vclass"] = _verdict_class
    env.globals["SHOWN_EVIDENCE"] = SHOWN_EVIDENCE
    return env


def _grouped(report: ConformanceReport) -> list[tuple[str | None, str, list[CheckOutcome]]]:
    groups: list[tuple[str | None, str, list[CheckOutcome]]] = [
        (unit.name, unit.title, report.outcomes_of(unit.name)) for unit in report.units
    ]
    # A plugin may report on a unit the config does not name: show it, never drop it.
    known = {unit.name for unit in report.units}
    for name in dict.fromkeys(o.unit for o in report.outcomes):
        if name is not None and name not in known:
            groups.append((name, name, report.outcomes_of(name)))
    enterprise = report.outcomes_of(None)
    if enterprise:
        groups.append((None, "Enterprise-wide", enterprise))
    return groups


class HtmlRenderer:
    """One self-contained page: inline CSS and SVG, no script, no external asset; prints well."""

    format: ClassVar[str] = "html"
    extension: ClassVar[str] = "html"

    def render(self, report: ConformanceReport) -> str:
        template = _environment(html=True).get_template("conformance.html.j2")
        return template.render(
            report=report,
            groups=_grouped(report),
            chain=chain_drawing(report.chain),
            bars=score_bars(report),
            trend_charts=trend_charts(report.trends),
        )


class MarkdownRenderer:
    """Markdown for wikis, pull requests and the README; every value escaped."""

    format: ClassVar[str] = "markdown"
    extension: ClassVar[str] = "md"

    def render(self, report: ConformanceReport) -> str:
        template = _environment(html=False).get_template("conformance.md.j2")
        return template.render(report=report, groups=_grouped(report))


class JsonRenderer:
    """The report model as JSON; the schema is ``usm-bridge report schema``."""

    format: ClassVar[str] = "json"
    extension: ClassVar[str] = "json"

    def render(self, report: ConformanceReport) -> str:
        return "".join(report_json_pieces(report))

    def write(self, report: ConformanceReport, stream: TextIO) -> None:
        """The same text as :meth:`render`, written piece by piece: a report over a million
        calls lists more exceptions than one string should hold (:mod:`.json_stream`)."""
        write_report_json(report, stream)


class JunitRenderer:
    """JUnit XML so that a pipeline can gate on it: a test suite per unit, a test case per
    outcome, a failure per failed outcome; warnings pass with their summary in system-out."""

    format: ClassVar[str] = "junit"
    extension: ClassVar[str] = "xml"

    def render(self, report: ConformanceReport) -> str:
        root = ET.Element(
            "testsuites",
            name="usm-bridge conformance",
            tests=str(len(report.outcomes)),
            failures=str(report.enterprise.failed),
            errors="0",
            skipped=str(report.enterprise.not_applicable),
        )
        for unit, title, outcomes in _grouped(report):
            summary = report.unit(unit) if unit is not None else None
            suite = ET.SubElement(
                root,
                "testsuite",
                name=_xml_text(f"conformance.{unit or 'enterprise'}"),
                tests=str(len(outcomes)),
                failures=str(sum(1 for o in outcomes if o.verdict == "fail")),
                errors="0",
                skipped=str(sum(1 for o in outcomes if o.verdict == "n/a")),
                timestamp=report.generated_at.isoformat(),
            )
            props = ET.SubElement(suite, "properties")
            ET.SubElement(props, "property", name="title", value=_xml_text(title))
            if summary is not None:
                ET.SubElement(props, "property", name="score", value=_score(summary.score.score))
            for outcome in outcomes:
                name = outcome.check_id + (f" [{outcome.instance}]" if outcome.instance else "")
                case = ET.SubElement(
                    suite,
                    "testcase",
                    classname=_xml_text(f"conformance.{unit or 'enterprise'}"),
                    name=_xml_text(name),
                )
                lines = [f"{outcome.title}: {outcome.summary}"] + [
                    " ".join(
                        part
                        for part in (
                            item.remote_key or item.call_id or "",
                            f'"{item.title}"' if item.title else "",
                            item.detail,
                            item.url or "",
                        )
                        if part
                    )
                    for item in outcome.evidence
                ]
                body = _xml_text("\n".join(lines))
                if outcome.verdict == "fail":
                    failure = ET.SubElement(
                        case, "failure", message=_xml_text(outcome.summary[:500]), type="fail"
                    )
                    failure.text = body
                elif outcome.verdict == "n/a":
                    # Nothing to test: a skipped test, so that a pipeline never counts it passed.
                    skipped = ET.SubElement(case, "skipped", message=_xml_text(outcome.summary))
                    skipped.text = body
                else:
                    out = ET.SubElement(case, "system-out")
                    out.text = f"{outcome.verdict.upper()}: {body}"
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


@hookimpl
def usm_bridge_report_renderers() -> list[ReportRenderer]:
    """The built-in renderers."""
    return [HtmlRenderer(), JsonRenderer(), MarkdownRenderer(), JunitRenderer()]
