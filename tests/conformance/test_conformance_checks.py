"""Each built-in check finds exactly the defects planted in the enterprise's store (on SQLite
and PostgreSQL), and nothing else."""

from __future__ import annotations

from conformance_enterprise import NOW, Enterprise, findings

from usm_bridge.conformance.api import CheckOutcome
from usm_bridge.conformance.checks import BUILTIN_CHECKS
from usm_bridge.conformance.context import ReportContext
from usm_bridge.conformance.engine import build_report, run_checks
from usm_bridge.conformance.period import Period


def _by(outcomes: list[CheckOutcome]) -> dict[str, CheckOutcome]:
    return {f"{o.check_id}@{o.instance or o.unit}": o for o in outcomes}


EXPECTED_DATA = {
    "data.classified@hr": {"HR-1", "HR-2"},
    "data.service-agreement@hr": {"HR-3", "HR-5"},
    "data.service-agreement@it": {"IT-3"},
    "data.priority@facilities": {"FAC-1"},
    "data.transitions@facilities": {"FAC-2"},
    "data.incident-confirmation@it": {"IT-1"},
    "data.supplier-links@facilities": {"FAC-3", "FAC-4", "FAC-6"},
}

EXPECTED_MAPPING = {
    # hr: no created time; most of what USM needs is missing
    "mapping.fields@hr": {
        "required field created is not mapped",
        "recommended field call_type is not mapped",
        "recommended field service is not mapped",
        "recommended field impact is not mapped",
        "recommended field urgency is not mapped",
        "recommended field requester is not mapped",
        "recommended field updated is not mapped",
    },
    "mapping.values@hr": {
        "status 'pending' is not in the mapping's table",
        "type 'Question' matches no classification rule (stays unclassified)",
        "status 'weird' seen in 1 dead-lettered record is not in the mapping's table",
    },
    "mapping.lifecycle@hr": {
        "state classified has no status in the tool",
        "state waiting has no status in the tool",
        "state fulfilled has no status in the tool",
        "state confirmed has no status in the tool",
        "state cancelled has no status in the tool",
        "state closed is mapped but cannot be reached from registered",
    },
    "mapping.outbound@hr": {
        f"state {s} cannot be written into the tool"
        for s in ("classified", "waiting", "fulfilled", "confirmed", "cancelled")
    },
    # it: a ServiceNow-like status list without classified and confirmed, no service, and no
    # saved discovery (the report says it cannot tell, and warns)
    "mapping.fields@it": {"recommended field service is not mapped"},
    "mapping.lifecycle@it": {
        "state classified has no status in the tool",
        "state confirmed has no status in the tool",
    },
    "mapping.outbound@it": {
        "state classified cannot be written into the tool",
        "state confirmed cannot be written into the tool",
    },
    "mapping.values@it": set(),
}


def test_each_data_check_finds_exactly_the_planted_defects(
    enterprise: Enterprise, context: ReportContext
) -> None:
    outcomes = run_checks(context, BUILTIN_CHECKS())
    found = {k: v for k, v in findings(outcomes, enterprise).items() if k.startswith("data.")}
    dead = {k: found.pop(k) for k in list(found) if k.startswith("data.dead-letters")}
    assert found == EXPECTED_DATA
    assert set(dead) == {"data.dead-letters@hr", "data.dead-letters@facilities"}
    assert any("field status: value 'weird'" in d for d in dead["data.dead-letters@hr"])
    assert any("customfield_10010" in d for d in dead["data.dead-letters@facilities"])


def test_verdicts_of_the_data_checks(context: ReportContext) -> None:
    by = {f"{o.check_id}@{o.unit}": o for o in run_checks(context, BUILTIN_CHECKS())}
    # HR-1 has been unclassified for 10 days (> 2 days): fail, with the age in the evidence
    classified = by["data.classified@hr"]
    assert classified.verdict == "fail"
    assert classified.metrics["unclassified"] == 2
    assert classified.metrics["share_classified"] == round(100 * 5 / 7, 1)
    assert {e.detail for e in classified.evidence} == {
        "unclassified for 10.0 days",
        "unclassified for 2.0 hours",
    }
    # an inbound dead letter (a record missing from the bridge) fails, an outbound one warns
    assert by["data.dead-letters@hr"].verdict == "fail"
    assert by["data.dead-letters@facilities"].verdict == "warn"
    # it has no dead letters at all: nothing to test is not applicable, never a pass
    assert by["data.dead-letters@it"].verdict == "n/a"
    assert by["data.priority@facilities"].evidence[0].detail == (
        "priority low, but impact high x urgency high gives critical"
        " (matrix of the default [priority])"
    )
    assert (
        by["data.transitions@facilities"]
        .evidence[0]
        .detail.startswith("registered -> closed (audit event ")
    )
    # Each illegal move carries its own time (the export's `at` column), the one the text says.
    for item in by["data.transitions@facilities"].evidence:
        assert item.at is not None and f"{item.at:%Y-%m-%d %H:%M})" in item.detail, item
    links = {e.remote_key: e.detail for e in by["data.supplier-links@facilities"].evidence}
    assert links["FAC-3"].startswith("names upstream call call_")
    assert links["FAC-4"] == "created by the bridge in fac-jira, but linked to no upstream call"
    assert links["FAC-6"] == "is risk, not one of the four support request types"
    assert by["data.service-agreement@it"].evidence[0].detail == (
        "no agreement (an rfc refers to one)"
    )
    # IT-2 says when it was confirmed (a tool's confirmed time: explicit), IT-1 nothing.
    assert by["data.incident-confirmation@it"].metrics == {
        "closed_incidents": 2,
        "explicit": 1,
        "implicit_allowed": 0,
        "implicit_not_allowed": 0,
        "none": 1,
    }
    assert [e.detail for e in by["data.incident-confirmation@it"].evidence] == [
        "closed without any confirmation"
    ]
    for unit in ("hr", "facilities", "it"):
        for check in ("data.priority", "data.transitions", "data.incident-confirmation"):
            if f"{check}@{unit}" not in EXPECTED_DATA:
                outcome = by[f"{check}@{unit}"]
                assert outcome.population is not None
                # no finding: a pass when something was tested, else not applicable
                expected = "pass" if outcome.population.size else "n/a"
                assert outcome.verdict == expected, (check, unit)


def test_evidence_links_to_the_tool_and_never_to_a_script(
    enterprise: Enterprise, context: ReportContext
) -> None:
    outcome = next(
        o
        for o in run_checks(context, BUILTIN_CHECKS())
        if o.check_id == "data.service-agreement" and o.unit == "hr"
    )
    urls = {e.remote_key: e.url for e in outcome.evidence}
    assert urls == {"HR-3": "https://hr.example.com/browse/HR-3", "HR-5": None}
    assert all(e.call_id == enterprise.ids[e.remote_key or ""] for e in outcome.evidence)


def test_each_mapping_check_finds_exactly_the_gaps(
    enterprise: Enterprise, context: ReportContext
) -> None:
    outcomes = run_checks(context, BUILTIN_CHECKS())
    mapping = {
        f"{o.check_id}@{o.unit}": {e.detail for e in o.evidence}
        for o in outcomes
        if o.category == "mapping" and o.verdict != "pass"
    }
    assert mapping == EXPECTED_MAPPING
    by = _by(outcomes)
    verdicts = {key: o.verdict for key, o in by.items() if o.category == "mapping"}
    assert verdicts == {
        "mapping.fields@hr-mail": "fail",
        "mapping.values@hr-mail": "fail",
        "mapping.lifecycle@hr-mail": "fail",
        "mapping.outbound@hr-mail": "warn",
        "mapping.fields@fac-jira": "pass",
        "mapping.values@fac-jira": "pass",
        "mapping.lifecycle@fac-jira": "pass",
        "mapping.outbound@fac-jira": "pass",
        "mapping.fields@it-snow": "warn",
        "mapping.values@it-snow": "warn",
        "mapping.lifecycle@it-snow": "warn",
        "mapping.outbound@it-snow": "warn",
    }
    assert "no saved discovery" in by["mapping.values@it-snow"].summary
    facilities = by["mapping.values@fac-jira"].metrics
    assert facilities["status_values"] == "3/3 mapped"
    assert facilities["impact_values"] == "4/4 mapped"
    assert facilities["type_default"] == "1 fall to service_request"
    assert by["mapping.fields@fac-jira"].metrics["mapped"].startswith("title*, status*, created*")


def test_a_mapping_that_does_not_load_fails_every_mapping_check(
    enterprise: Enterprise,
) -> None:
    (enterprise.root / "mappings" / "it.yaml").write_text("version: 1\ntool: x\nfields: {}\n")
    outcomes = run_checks(enterprise.context(), BUILTIN_CHECKS())
    broken = [o for o in outcomes if o.instance == "it-snow"]
    assert len(broken) == 4
    assert all(o.verdict == "fail" and "cannot be loaded" in o.summary for o in broken)


def test_the_period_decides_which_calls_count(enterprise: Enterprise) -> None:
    everything = run_checks(enterprise.context(Period()), BUILTIN_CHECKS())
    found = findings(everything, enterprise)
    assert found["data.classified@hr"] == {"HR-1", "HR-2", "HR-OLD"}
    assert found["data.service-agreement@hr"] == {"HR-3", "HR-5", "HR-OLD"}
    in_2025 = Period(
        since=NOW.replace(year=2025, month=1, day=1),
        until=NOW.replace(year=2026, month=1, day=1),
        label="2025",
    )
    only_old = run_checks(enterprise.context(in_2025), BUILTIN_CHECKS())
    assert findings(only_old, enterprise)["data.classified@hr"] == {"HR-OLD"}
    # the dead letters were written now, outside 2025
    assert not any(
        o.check_id == "data.dead-letters" and o.verdict in ("warn", "fail") for o in only_old
    )


def test_scores_and_chain_view(context: ReportContext) -> None:
    report = build_report(context)
    scores = {unit.name: unit.score for unit in report.units}
    # facilities: 4 mapping passes; data: classified, service pass, dead letters warn;
    # supplier acceptance passes (no fulfilled supplier call waits beyond its term); no
    # closed incident, so the confirmation check does not apply; no fork or wait on a
    # process, so neither does data.process-flows
    assert (scores["facilities"].passed, scores["facilities"].warned) == (7, 1)
    assert scores["facilities"].failed == 3
    assert scores["facilities"].not_applicable == 2
    # The weighted rule (scoring.py); test_conformance_scoring.py recomputes it in full.
    facilities = report.outcomes_of("facilities")
    weighed = [(o.weight, o.score) for o in facilities if o.weight]
    assert scores["facilities"].score == round(
        sum(w * s for w, s in weighed) / sum(w for w, _ in weighed), 1
    )
    enterprise = report.enterprise
    assert (
        enterprise.passed + enterprise.warned + enterprise.failed + enterprise.not_applicable
        == (len(report.outcomes))
    )
    routes = {route.name: route for route in report.chain.routes}
    assert (routes["hr-to-facilities"].volume, routes["hr-to-facilities"].open) == (2, 1)
    assert routes["hr-to-facilities"].median_handoff_seconds == 3 * 3600
    assert (routes["hr-to-it"].volume, routes["hr-to-it"].median_handoff_seconds) == (1, 1800)
    assert [unit.name for unit in report.chain.units] == ["hr", "facilities", "it"]
    assert {unit.name: unit.calls for unit in report.chain.units} == {
        "hr": 7,
        "facilities": 7,
        "it": 4,
    }


def test_every_evidence_item_is_kept_and_counted(context: ReportContext) -> None:
    from usm_bridge.conformance.checks import ClassifiedCheck

    check = ClassifiedCheck()
    many = [context.evidence(context.calls_of("hr")[0], f"item {i}") for i in range(250)]
    outcome = check.outcome("fail", "many", unit="hr", evidence=many)
    assert (len(outcome.evidence), outcome.count) == (250, 250)
    assert [item.detail for item in outcome.evidence] == [f"item {i}" for i in range(250)]
