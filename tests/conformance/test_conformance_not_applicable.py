"""A check with nothing to check is N/A, never PASS: per built-in check with an empty
population, in scoring and in every renderer."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from usm_bridge.conformance.api import CheckOutcome
from usm_bridge.conformance.checks import BUILTIN_CHECKS
from usm_bridge.conformance.context import InstanceInfo, ReportContext
from usm_bridge.conformance.engine import build_report, run_checks
from usm_bridge.conformance.period import Period
from usm_bridge.conformance.renderers import (
    HtmlRenderer,
    JsonRenderer,
    JunitRenderer,
    MarkdownRenderer,
)
from usm_bridge.conformance.scoring import score
from usm_bridge.connector import Vocabulary, VocabularyValue
from usm_bridge.mapping import loads_mapping
from usm_bridge.model import Call, CallType, PriorityMatrix, Status, Unit
from usm_bridge.store import StoredCall

NOW = datetime(2026, 3, 10, tzinfo=UTC)
DATA_CHECKS = [
    "data.classified",
    "data.service-agreement",
    "data.priority",
    "data.transitions",
    "data.incident-confirmation",
    "data.supplier-links",
    "data.dead-letters",
]
#: Checks that test only some calls: one plain open service request is none of theirs.
NARROW = [
    "data.priority",
    "data.transitions",
    "data.incident-confirmation",
    "data.supplier-links",
    "data.dead-letters",
]


def _context(calls: list[Call]) -> ReportContext:
    return ReportContext(
        period=Period(),
        now=NOW,
        units={"it": Unit(name="it")},
        instances={},
        routes=[],
        priority=PriorityMatrix(),
        calls=[
            StoredCall(call=c, version=1, content_hash="x", created_at=NOW, updated_at=NOW)
            for c in calls
        ],
        audit=[],
        dead_letters=[],
        chain_links=[],
        identities=[],
    )


def _by_check(context: ReportContext) -> dict[str, CheckOutcome]:
    return {o.check_id: o for o in run_checks(context, BUILTIN_CHECKS()) if o.unit == "it"}


@pytest.mark.parametrize("check", DATA_CHECKS)
def test_an_empty_store_makes_every_data_check_not_applicable(check: str) -> None:
    outcome = _by_check(_context([]))[check]
    assert outcome.verdict == "n/a"
    assert outcome.population is not None and outcome.population.size == 0
    assert "N/A, never a pass" in outcome.population.rule
    assert outcome.summary.startswith("not applicable")


@pytest.mark.parametrize("check", NARROW)
def test_a_check_none_of_whose_items_exist_is_not_applicable(check: str) -> None:
    request = Call(unit="it", title="a chair", call_type=CallType.SERVICE_REQUEST,
                   status=Status.IN_PROGRESS, service="desk", created=NOW, updated=NOW)  # fmt: skip
    by = _by_check(_context([request]))
    assert by[check].verdict == "n/a", by[check].summary
    # the checks that test every call did test it, and pass
    assert by["data.classified"].verdict == "pass"
    assert by["data.service-agreement"].verdict == "pass"


def test_not_applicable_scores_nothing_and_is_never_counted_a_pass() -> None:
    report = build_report(_context([]), checks=BUILTIN_CHECKS())
    mine = report.outcomes_of("it")
    assert mine and all(o.verdict == "n/a" for o in mine)
    assert all(o.score is None and o.weight == 0 for o in mine)
    unit = report.units[0].score
    assert (unit.passed, unit.warned, unit.failed, unit.not_applicable) == (0, 0, 0, len(mine))
    assert unit.verdict == "n/a" and unit.score is None
    assert score([]).verdict == "n/a"
    # one pass among n/a outcomes: the pass decides
    passed = mine[0].model_copy(update={"verdict": "pass", "weight": None, "score": None})
    assert score([passed, *mine[1:]]).verdict == "pass"


def test_every_renderer_says_not_applicable() -> None:
    report = build_report(_context([]), checks=BUILTIN_CHECKS())
    count = len(report.outcomes_of("it"))
    html = HtmlRenderer().render(report)
    assert html.count('data-verdict="n/a"') == count
    assert '<span class="badge na">n/a</span>' in html and 'data-verdict="pass"' not in html
    markdown = MarkdownRenderer().render(report)
    assert markdown.count("\n| N/A | ") == count and "\n| PASS | " not in markdown
    data = json.loads(JsonRenderer().render(report))
    assert {o["verdict"] for o in data["outcomes"]} == {"n/a"}
    assert data["enterprise"]["not_applicable"] == count
    suite = ET.fromstring(JunitRenderer().render(report)).find("testsuite")
    assert suite is not None and suite.get("skipped") == str(count)
    assert len(suite.findall("testcase/skipped")) == count


_READ_ONLY = """\
version: 1
tool: servicenow
fields:
  title: {path: short_description}
  created: {path: opened_at}
  status:
    path: state
    read_only: true
    values: {"1": registered, "2": in_progress, "6": fulfilled, "7": closed}
"""


def _mapping_outcomes(vocabulary: Vocabulary) -> dict[str, CheckOutcome]:
    info = InstanceInfo(
        name="it-tool",
        unit="it",
        kind="servicenow",
        mapping=loads_mapping(_READ_ONLY, source="read-only.yaml"),
        vocabulary=vocabulary,
        vocabulary_source="file",
    )
    context = _context([])
    context.instances = {"it-tool": info}
    return {o.check_id: o for o in run_checks(context, BUILTIN_CHECKS()) if o.instance}


def test_mapping_checks_with_nothing_to_test_are_not_applicable() -> None:
    by = _mapping_outcomes(Vocabulary())
    # the tool knows no value and no dead letter shows one: no value was tested
    assert by["mapping.values"].verdict == "n/a"
    assert by["mapping.values"].population is not None
    assert by["mapping.values"].population.size == 0
    # a read-only status and no other value table: nothing is written back
    assert by["mapping.outbound"].verdict == "n/a"
    assert by["mapping.outbound"].summary.startswith("not applicable")
    # fields and lifecycle always have something to test
    assert by["mapping.fields"].verdict != "n/a"
    assert by["mapping.lifecycle"].verdict != "n/a"


def test_a_known_value_makes_the_values_check_apply_again() -> None:
    known = Vocabulary(statuses=[VocabularyValue(value="1"), VocabularyValue(value="9")])
    outcome = _mapping_outcomes(known)["mapping.values"]
    assert outcome.verdict == "fail"
    assert outcome.population is not None
    assert (outcome.population.size, outcome.population.exceptions) == (2, 1)
