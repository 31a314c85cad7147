"""``data.process-flows``: each planted wait and fork gives exactly its finding (or none), the
metrics count forks per workflow pattern, and a unit with nothing to check is n/a."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from usm_bridge.conformance.checks import BUILTIN_CHECKS
from usm_bridge.conformance.context import InstanceInfo, ReportContext
from usm_bridge.conformance.period import Period
from usm_bridge.conformance.process_flows import ProcessFlowsCheck, pattern_of
from usm_bridge.conformance.scoring import score
from usm_bridge.lifecycle import PriorityMatrix
from usm_bridge.model import Call, Unit, UsmProcess
from usm_bridge.store import AuditEvent, StoredCall

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OPENED = NOW - timedelta(days=1)
TYPES = {"INC": "incident", "CHG": "rfc", "PRB": "risk", "SR": "service_request"}


def _call(key: str, unit: str = "it", **fields: Any) -> Call:
    return Call.model_validate(
        {
            "id": f"call-{key}",
            "unit": unit,
            "source": {"instance": f"{unit}-snow", "remote_id": key, "remote_key": key},
            "call_type": TYPES[key.split("-")[0]],
            "status": "in_progress",
            "title": key,
            "created": OPENED,
            "updated": OPENED,
            **fields,
        }
    )


def _waiting(key: str, process: str) -> Call:
    return _call(key, status="waiting", waiting_on="secondary_process", waiting_process=process)


def _fork(role: str, ref: str, process: str | None = None, *, resolved: bool = True) -> Any:
    link = {"role": role, "ref": ref, "process": process, "via": "incident.rfc"}
    if resolved:
        link.update(call=f"call-{ref}", instance="it-snow")
    return {"forks": [link]}


#: Each call of unit it, with the findings the check must give it (an empty set: none).
PLANTED: dict[str, tuple[Call, set[str]]] = {
    "INC-1": (_waiting("INC-1", "improve"), {"waits on improve, a process USM does not fork to "
                                             "from recover"}),
    "INC-2": (_waiting("INC-2", "change"), set()),  # W3
    "SR-1": (_waiting("SR-1", "change"), {"waits on change, a process USM does not fork to "
                                          "from operate"}),
    "INC-3": (_call("INC-3", chain=_fork("secondary", "PRB-1", "improve")),
              {"fork recover -> improve to PRB-1 (incident.rfc): no USM workflow pattern passes "
               "through it"}),
    "INC-4": (_call("INC-4", chain=_fork("secondary", "CHG-1", "change")), set()),  # W3
    "CHG-1": (_call("CHG-1", chain=_fork("primary", "INC-4", "recover")), set()),  # W3, its end
    "INC-5": (_call("INC-5", chain=_fork("secondary", "CHG-9", "change", resolved=False)),
              {"fork to CHG-9 (incident.rfc) unresolved for 2.0 h (a cycle is 1 min): the bridge "
               "does not hold that record"}),
    "INC-6": (_call("INC-6", chain=_fork("secondary", "CHG-8", "change", resolved=False)), set()),
    "INC-7": (_call("INC-7", chain=_fork("secondary", "SR-2", "change")),
              {"the link (incident.rfc) says change, but the linked call SR-2 is in operate"}),
    "SR-2": (_call("SR-2"), set()),
    "INC-8": (_call("INC-8", chain=_fork("secondary", "HR-1", "change", resolved=False)),
              {"links to HR-1 (incident.rfc), a record of unit hr: a fork is a link inside one "
               "unit, so it is not one"}),
    "PRB-1": (_call("PRB-1"), set()),
}  # fmt: skip


def _event(event_id: int, call: str, kind: str, at: datetime, **fields: Any) -> AuditEvent:
    return AuditEvent(id=event_id, at=at, call_id=call, instance="it-snow", kind=kind,
                      actor="bridge", before=None, after=fields.get("after"),
                      detail=fields.get("detail"))  # fmt: skip


def _context(calls: list[Call], audit: list[AuditEvent]) -> ReportContext:
    stored = [
        StoredCall(call=c, version=1, content_hash="0" * 64, created_at=OPENED, updated_at=OPENED)
        for c in calls
    ]
    return ReportContext(
        period=Period(since=NOW - timedelta(days=30)),
        now=NOW,
        units={name: Unit(name=name) for name in ("it", "hr", "fac")},
        instances={
            "it-snow": InstanceInfo(name="it-snow", unit="it", kind="servicenow", interval=60),
        },
        routes=[],
        priority=PriorityMatrix(),
        calls=stored,
        audit=audit,
        dead_letters=[],
        chain_links=[],
        identities=[],
    )


def _fork_seen(event_id: int, key: str, ref: str, at: datetime) -> AuditEvent:
    after = {"chain": {"forks": [{"role": "secondary", "ref": ref, "call": None}]}}
    return _event(event_id, f"call-{key}", "call_created", at, after=after)


AUDIT = [
    _fork_seen(1, "INC-5", "CHG-9", NOW - timedelta(hours=2)),
    _fork_seen(2, "INC-6", "CHG-8", NOW - timedelta(seconds=30)),
    _event(3, "call-INC-8", "fork_refused", NOW - timedelta(hours=1),
           detail={"ref": "HR-1", "other_unit": "hr", "other_call_id": "call-HR-1"}),
]  # fmt: skip


def _run(calls: list[Call], audit: list[AuditEvent]) -> dict[str, Any]:
    return {o.unit: o for o in ProcessFlowsCheck().run(_context(calls, audit))}


def test_each_planted_wait_and_fork_gives_exactly_its_findings() -> None:
    hr_call = _call("INC-1", unit="hr")  # a unit whose calls neither wait on nor fork to a process
    outcomes = _run([call for call, _ in PLANTED.values()] + [hr_call], AUDIT)
    it = outcomes["it"]
    got: dict[str, set[str]] = {key: set() for key in PLANTED}
    for item in it.evidence:
        assert item.remote_key is not None
        got[item.remote_key].add(item.detail)
    assert got == {key: expected for key, (_, expected) in PLANTED.items()}
    assert it.verdict == "fail"
    # 3 waits on a process and 7 forks tested; 6 of them break the rule.
    assert it.population is not None
    assert (it.population.size, it.population.exceptions) == (10, 6)
    # The unresolved fork's finding has its own time: when the fork was first stored.
    unresolved = next(e for e in it.evidence if e.remote_key == "INC-5")
    assert unresolved.at == NOW - timedelta(hours=2)


def test_metrics_count_each_link_once_per_pattern() -> None:
    metrics = _run([call for call, _ in PLANTED.values()], AUDIT)["it"].metrics
    # W3: INC-4 <-> CHG-1, recorded at both ends; INC-2's wait is no fork. W4: INC-7 -> SR-2,
    # judged by the linked call's process. Unresolved forks (INC-5, INC-6, the refused INC-8)
    # evidence nothing yet: the bridge does not hold their other end.
    assert metrics == {
        "forks_W1": 0, "forks_W3": 1, "forks_W4": 1, "forks_W6": 0, "forks_W7": 0,
        "forks_W8": 0, "waits_on_a_process": 3, "unresolved_forks": 3,
    }  # fmt: skip


def test_a_unit_with_nothing_to_check_is_not_applicable_never_a_pass() -> None:
    outcomes = _run([_call("INC-1", unit="hr"), PLANTED["INC-2"][0]], [])
    assert {unit: o.verdict for unit, o in outcomes.items()} == {
        "it": "pass",  # one conformant wait (W3)
        "hr": "n/a",  # calls, but no wait on a process and no fork
        "fac": "n/a",  # no calls at all
    }
    assert outcomes["hr"].population.size == 0
    # n/a weighs nothing and does not count as a pass in the unit's score.
    hr = score([outcomes["hr"]])
    assert (hr.score, hr.passed, hr.not_applicable, hr.verdict) == (None, 0, 1, "n/a")
    both = score([outcomes["hr"], outcomes["it"]])
    assert (both.score, both.passed, both.not_applicable, both.verdict) == (100.0, 1, 1, "pass")


def test_a_threshold_in_the_config_can_tolerate_findings() -> None:
    from usm_bridge.conformance.thresholds import ConformanceSettings

    context = _context([PLANTED["INC-1"][0], PLANTED["INC-2"][0]], [])
    context.conformance = ConformanceSettings.model_validate(
        {"thresholds": {"data.process-flows": {"pass_up_to": 0.1, "warn_up_to": 0.5}}}
    )
    it = next(o for o in ProcessFlowsCheck().run(context) if o.unit == "it")
    assert (it.verdict, it.population.rate if it.population else None) == ("warn", 0.5)


def test_the_patterns_are_usms_forks_and_the_check_is_built_in() -> None:
    p = UsmProcess
    assert pattern_of(p.RECOVER, p.CHANGE) == "W3"
    assert pattern_of(p.RECOVER, p.OPERATE) == "W4"
    assert pattern_of(p.RECOVER, p.IMPROVE) is None  # improve is proactive
    assert pattern_of(p.CHANGE, p.RECOVER) is None  # the primary end is recover, not change
    assert "data.process-flows" in {check.id for check in BUILTIN_CHECKS()}


def test_servicenow_awaiting_problem_is_recorded_and_flagged_awaiting_change_is_not() -> None:
    from usm_bridge_servicenow.transforms import TRANSFORMS as SERVICENOW

    from usm_bridge.connector import RawRecord
    from usm_bridge.mapping import MappingContext, apply_inbound, load_mapping
    from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
    from usm_bridge.mapping.transforms import TRANSFORMS as CORE

    mapping = load_mapping(SHIPPED_MAPPINGS_DIR / "servicenow-incident.yaml")
    context = MappingContext(unit="it", instance="it-snow", transforms={**CORE, **SERVICENOW})
    calls = []
    for number, hold_reason in (("INC0001", "3"), ("INC0002", "5")):  # Problem, Change
        data = {"number": number, "short_description": number, "state": "3",
                "hold_reason": hold_reason, "opened_at": "2026-02-28 08:00:00",
                "sys_updated_on": "2026-02-28 09:00:00"}  # fmt: skip
        record = RawRecord(remote_id=number.lower(), remote_key=number, data=data)
        calls.append(apply_inbound(mapping, record, context))
    assert [call.waiting_process for call in calls] == [UsmProcess.IMPROVE, UsmProcess.CHANGE]
    it = _run(calls, [])["it"]
    assert [(e.remote_key, e.detail) for e in it.evidence] == [
        ("INC0001", "waits on improve, a process USM does not fork to from recover")
    ]
    assert it.population is not None and it.population.size == 2


def test_a_fork_with_several_findings_is_one_exception_and_the_rate_stays_a_share() -> None:
    # A recover -> improve fork (no USM pattern) that is also unresolved for two hours: two
    # findings, both shown as evidence, but one fork of one tested: a rate of 1, never 2.
    broken = _call("INC-9", chain=_fork("secondary", "PRB-9", "improve", resolved=False))
    it = _run([broken], [_fork_seen(1, "INC-9", "PRB-9", NOW - timedelta(hours=2))])["it"]
    assert len(it.evidence) == 2
    assert it.population is not None
    assert (it.population.size, it.population.exceptions, it.population.rate) == (1, 1, 1.0)
    assert it.summary.startswith("1 of 1 waits and forks with findings (2 finding(s))")
