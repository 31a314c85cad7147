"""An organisation adds its own rule and its own format as plugins; both reach the report."""

from __future__ import annotations

import json

from conformance_enterprise import Enterprise

from usm_bridge.conformance.api import CheckOutcome, ConformanceCheck, ReportRenderer
from usm_bridge.conformance.context import ReportContext
from usm_bridge.conformance.engine import build_report
from usm_bridge.conformance.renderers import HtmlRenderer, JunitRenderer, MarkdownRenderer
from usm_bridge.conformance.report import ConformanceReport
from usm_bridge.hookspecs import hookimpl
from usm_bridge.plugins import PluginHost


class ShortTitles:
    """Titles a person can understand: at least 12 characters."""

    id = "acme.short-titles"
    title = "Titles are descriptive"

    def run(self, context: ReportContext) -> list[CheckOutcome]:
        outcomes = []
        for unit in context.unit_names():
            short = [call for call in context.calls_of(unit) if len(call.title) < 12]
            outcomes.append(
                CheckOutcome(
                    check_id=self.id,
                    title=self.title,
                    unit=unit,
                    verdict="warn" if short else "pass",
                    summary=f"{len(short)} short title(s)",
                    evidence=[context.evidence(call, "title too short") for call in short],
                )
            )
        return outcomes


class Broken:
    id = "acme.broken"
    title = "A rule with a bug"

    def run(self, context: ReportContext) -> list[CheckOutcome]:
        raise KeyError("oops")


class AcmeRules:
    @hookimpl
    def usm_bridge_conformance_checks(self) -> list[ConformanceCheck]:
        return [ShortTitles(), Broken()]


class CsvRenderer:
    format = "csv"

    def render(self, report: ConformanceReport) -> str:
        return "".join(f"{o.check_id},{o.unit},{o.verdict}\n" for o in report.outcomes)


class AcmeFormats:
    @hookimpl
    def usm_bridge_report_renderers(self) -> list[ReportRenderer]:
        return [CsvRenderer()]


def test_a_custom_rule_registered_as_a_plugin_appears_in_the_report(
    enterprise: Enterprise,
) -> None:
    host = PluginHost()
    host.register(AcmeRules(), name="acme_rules")
    report = build_report(enterprise.context(host=host), host)
    info = {check.id: check for check in report.checks}
    assert info["acme.short-titles"].plugin == "acme_rules"
    assert info["acme.short-titles"].description.startswith("Titles a person can understand")
    assert info["data.priority"].plugin == "builtin_conformance_checks"
    mine = [o for o in report.outcomes if o.check_id == "acme.short-titles"]
    assert {o.unit: o.verdict for o in mine} == {"hr": "pass", "facilities": "pass", "it": "pass"}
    assert all(o.category == "custom" for o in mine)
    # the rule counts in the scores and shows in every format
    enterprise = report.enterprise
    assert (
        enterprise.passed + enterprise.warned + enterprise.failed + enterprise.not_applicable
        == (len(report.outcomes))
    )
    html = HtmlRenderer().render(report)
    assert 'data-check="acme.short-titles"' in html and "Organisation rules" in html
    assert "acme.short-titles" in MarkdownRenderer().render(report)
    assert 'name="acme.short-titles"' in JunitRenderer().render(report)


def test_a_crashing_rule_fails_visibly_and_the_report_still_comes(
    enterprise: Enterprise,
) -> None:
    host = PluginHost()
    host.register(AcmeRules(), name="acme_rules")
    report = build_report(enterprise.context(host=host), host)
    broken = [o for o in report.outcomes if o.check_id == "acme.broken"]
    assert len(broken) == 1
    assert broken[0].verdict == "fail" and broken[0].unit is None
    assert broken[0].summary == "the check could not run: KeyError: 'oops'"
    assert "Enterprise-wide" in HtmlRenderer().render(report)


def test_a_plugin_format_is_offered_next_to_the_builtin_ones(enterprise: Enterprise) -> None:
    host = PluginHost()
    host.register(AcmeFormats(), name="acme_formats")
    assert set(host.report_renderers()) == {"html", "json", "markdown", "junit", "csv"}
    report = build_report(enterprise.context(host=host), host)
    assert "data.priority,facilities,fail\n" in host.report_renderers()["csv"].render(report)


def test_builtin_checks_can_be_blocked_like_any_plugin(enterprise: Enterprise) -> None:
    host = PluginHost(blocked=["builtin_conformance_checks"])
    host.register(AcmeRules(), name="acme_rules")
    report = build_report(enterprise.context(host=host), host)
    assert {check.id for check in report.checks} == {"acme.short-titles", "acme.broken"}
    assert json.loads(report.model_dump_json())["checks"][0]["plugin"] == "acme_rules"
