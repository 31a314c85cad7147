"""The registry's answers kept per report (:mod:`usm_bridge.conformance.registry_answers`) and
the checks' verdicts kept by the fields they read: a call equal to an earlier one in all but one
of those fields gets its own answer, never the earlier call's; and the evidence written as JSON
without the model is the model's own text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from registry_toml import REGISTRY, matrix_toml

from usm_bridge.agreements import Agreements
from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.conformance import process_views as views_module
from usm_bridge.conformance.api import CheckOutcome, Evidence
from usm_bridge.conformance.checks import PriorityCheck, ServiceAgreementCheck
from usm_bridge.conformance.context import ReportContext
from usm_bridge.conformance.engine import run_checks
from usm_bridge.conformance.period import Period
from usm_bridge.conformance.registry_answers import RegistryAnswers
from usm_bridge.model import Call
from usm_bridge.service_routes import reference_problems
from usm_bridge.store import Identity, StoredCall

AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

CONFIG = (
    "[units.hr]\n[units.facilities]\n[units.it]\n"
    + matrix_toml("units.it", ("u1", "u2", "u3"))
    + REGISTRY
)

#: A call of IT for Facilities' laptops, under facilities-it (classes p1..p3); medium x low
#: gives p3 there, so its priority agrees with its matrix.
BASE: dict[str, Any] = {
    "unit": "it",
    "customer_unit": "facilities",
    "service": "laptops",
    "impact": "medium",
    "urgency": "low",
    "priority": "p3",
    "call_type": "service_request",
}

#: Each differs from BASE in one field the registry or a check reads.
ONE_FIELD_OFF: list[dict[str, Any]] = [
    {"customer_unit": "acme"},  # acme-it-laptops: no matrix of its own, so IT's (u1..u3)
    {"customer_unit": None},  # no agreement found: IT's matrix
    {"service": "network"},  # facilities-it covers all of IT's services: the same agreement
    {"service": "workplace"},  # Facilities' service at IT: not IT's
    {"agreement": "hr-facilities"},  # named: Facilities', not IT's; its matrix is IT's
    {"agreement": "facilities-it"},
    {"agreement": "nowhere"},  # not registered
    {"unit": "facilities", "customer_unit": "hr", "service": "workplace"},
    {"unit": "facilities"},
    {"impact": "high"},
    {"urgency": "high"},
    {"impact": None},
    {"priority": "p1"},
    {"priority": None},
    {"priority": "u3"},
    {"call_type": "incident"},
    {"call_type": "rfc"},
    {"call_type": "wish"},
    # One field off {"customer_unit": None}, which comes earlier: no agreement is found.
    {"customer_unit": None, "call_type": "risk"},
    {"customer_unit": None, "call_type": "rfc"},
]


def _config(tmp_path: Path) -> BridgeConfig:
    path = tmp_path / "usm-bridge.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return load_config(path)


def _call(index: int, **fields: Any) -> Call:
    return Call.model_validate(
        {"title": f"call {index}", "created": AT, "updated": AT,
         "source": {"instance": "tool", "remote_id": f"r{index}", "remote_key": f"K-{index}"},
         **{**BASE, **fields}}
    )  # fmt: skip


def _calls() -> list[Call]:
    # The base first, then each variant twice: the second of each is answered from what the
    # first left, and each variant comes after the base it differs from in one field.
    return [_call(0)] + [
        _call(2 * n + k, **fields) for n, fields in enumerate(ONE_FIELD_OFF, 1) for k in (0, 1)
    ]


def _context(config: BridgeConfig, calls: list[Call]) -> ReportContext:
    stored = [
        StoredCall(call=call, version=1, content_hash="h", created_at=AT, updated_at=AT)
        for call in calls
    ]
    return ReportContext(
        period=Period(), now=AT, units=dict(config.units), instances={}, routes=[],
        priority=config.priority, calls=stored, audit=[], dead_letters=[], chain_links=[],
        identities=[], agreements=Agreements.of(config),
    )  # fmt: skip


def test_each_kept_answer_is_the_registrys_own_for_that_very_call(tmp_path: Path) -> None:
    config = _config(tmp_path)
    registry = Agreements.of(config)
    answers = RegistryAnswers(registry, config.routes)
    for call in _calls():
        assert answers.agreement_of(call) == registry.agreement_of(call)
        assert answers.matrix_for(call) == registry.matrix_for(call)
        assert answers.matrix_source(call) == registry.matrix_source(call)
        assert answers.implicit_confirmation_after(call) == (
            registry.implicit_confirmation_after(call)
        )
        assert answers.targets_for(call) == registry.targets_for(call)
        assert answers.reference_problems(call) == tuple(
            reference_problems(registry, call, config.routes)
        )


def test_calls_equal_but_for_one_field_get_their_own_answers(tmp_path: Path) -> None:
    registry = Agreements.of(_config(tmp_path))
    answers = RegistryAnswers(registry, [])
    base = _call(0)
    assert answers.matrix_source(base)[1] == "agreement 'facilities-it'"
    # Only the customer unit differs: another agreement, another matrix.
    acme = _call(1, customer_unit="acme")
    assert answers.agreement_of(acme) is registry.agreements["acme-it-laptops"]
    assert answers.matrix_source(acme)[1] == "unit 'it'"
    # Only the priority differs: facilities-it has targets for p1, none for p3.
    assert answers.targets_for(base) is None
    assert (
        answers.targets_for(_call(2, priority="p1"))
        == registry.agreements["facilities-it"].targets["p1"]
    )
    # Only the customer differs: hr-facilities allows implicit confirmation, none with it.
    workplace = {"unit": "facilities", "service": "workplace"}
    assert answers.implicit_confirmation_after(_call(3, **workplace, customer_unit="it")) is None
    assert answers.implicit_confirmation_after(
        _call(4, **workplace, customer_unit="hr")
    ) == timedelta(days=3)


def _findings(outcomes: list[CheckOutcome]) -> dict[str | None, dict[str | None, str]]:
    return {o.unit: {e.remote_key: e.detail for e in o.evidence} for o in outcomes}


def test_the_checks_verdicts_are_each_calls_own(tmp_path: Path) -> None:
    """Every verdict of data.priority and data.service-agreement over the calls (each variant
    after the call it differs from in one field) is the verdict of that call judged alone."""
    config = _config(tmp_path)
    calls = _calls()
    together = _findings(run_checks(_context(config, calls), [PriorityCheck()]))
    alone: dict[str | None, dict[str | None, str]] = {unit: {} for unit in together}
    for call in calls:
        for unit, found in _findings(
            run_checks(_context(config, [call]), [PriorityCheck()])
        ).items():
            alone[unit].update(found)
    assert together == alone
    assert "K-0" not in together["it"]  # p3 is right under facilities-it ...
    assert (
        together["it"]["K-2"]
        == together["it"]["K-3"]
        == (  # ... and wrong with acme
            "priority p3, but impact medium x urgency low gives u3 (matrix of unit 'it')"
        )
    )
    assert together["it"]["K-30"] == (  # u3 is wrong under facilities-it
        "priority u3, but impact medium x urgency low gives p3 (matrix of agreement "
        "'facilities-it')"
    )

    together = _findings(run_checks(_context(config, calls), [ServiceAgreementCheck()]))
    for unit, found in together.items():
        # Whether a missing agreement is a finding depends on the unit's calls naming any.
        named = any(call.agreement for call in calls if call.unit == unit)
        judged = {
            call.source.remote_key if call.source else None: ServiceAgreementCheck._problems(
                _context(config, [call]), call
            ).detail(named)
            for call in calls
            if call.unit == unit
        }
        assert found == {key: detail for key, detail in judged.items() if detail}
    assert (
        together["it"]["K-10"]
        == "agreement 'hr-facilities' is with provider 'facilities', not 'it'"
    )
    assert together["it"]["K-4"] == "no agreement"
    assert "K-38" not in together["it"]  # a risk is no support request: no agreement needed
    assert together["it"]["K-40"] == "no agreement (an rfc refers to one)"


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"title": 'tab\there "quoted" \\ «é» \u202e \x01 \x7f \u2028 😀 ' + "x" * 300},
        {"status": "closed", "closed": None, "updated": AT + timedelta(hours=2, microseconds=7)},
        {"status": "cancelled", "closed": AT + timedelta(hours=1)},
        {"source": {"instance": "tool", "remote_id": "r9", "url": "javascript:alert(1)"}},
        {"source": {"instance": "tool", "remote_id": "r9", "url": "https://t.example/r9?a=1"}},
        {"source": None},
    ],
)
@pytest.mark.parametrize("at", [None, AT + timedelta(minutes=5, microseconds=123)])
def test_evidence_written_without_the_model_is_the_models_own_text(
    tmp_path: Path, fields: dict[str, Any], at: datetime | None
) -> None:
    config = _config(tmp_path)
    call = _call(9, **fields)
    context = _context(config, [call])
    # A call without a source is named by its identity.
    context._page.identities[call.id] = [
        Identity(id=1, call_id=call.id, instance="tool", remote_id="r9", remote_key="K-9",
                 url="https://t.example/K-9", correlation=None, pushed_hash=None, pushed_at=None,
                 created_at=AT, updated_at=AT)
    ]  # fmt: skip
    for detail in ("", "no service", 'quoted "x" \\ \n\t é 😀'):
        expected = context.evidence(call, detail).model_copy(update={"at": at})
        written = context.evidence_json(call, detail, at)
        assert written == expected.model_dump_json(indent=2)
        assert Evidence.model_validate_json(written) == expected


def test_a_check_asked_of_another_reports_calls_judges_them_afresh(tmp_path: Path) -> None:
    config = _config(tmp_path)
    check, call = PriorityCheck(), _call(0)
    assert not list(check.findings(_context(config, [call]), [call]))  # p3 under facilities-it
    # The same check, another report whose registry has no agreement: IT's own matrix.
    other = _context(config, [call])
    other.agreements = Agreements(
        services={}, agreements={}, units=dict(config.units), default_matrix=config.priority
    )
    assert [detail for _, detail in check.findings(other, [call])] == [
        "priority p3, but impact medium x urgency low gives u3 (matrix of unit 'it')"
    ]


#: A closed request of Facilities for HR's workplace, under hr-facilities (targets for high
#: and low, implicit confirmation after 3 days), confirmed by silence; and calls differing
#: from it in one field the process views read through the registry or directly.
DONE: dict[str, Any] = {
    "unit": "facilities", "customer_unit": "hr", "service": "workplace", "priority": "high",
    "status": "closed", "fulfilled": AT + timedelta(hours=30),
    "closed": AT + timedelta(days=5),
    "confirmation": {"kind": "implicit", "at": AT + timedelta(days=5)},
}  # fmt: skip
DONE_ONE_FIELD_OFF: list[dict[str, Any]] = [
    {"customer_unit": "it"},  # no agreement: no target, silence confirms nothing
    {"service": "laptops"},
    {"agreement": "nowhere"},
    {"priority": "low"},  # another target
    {"priority": None},  # derived from medium x low through Facilities' matrix
    {"impact": "high", "priority": None},
    {"urgency": "high", "priority": None},
    {"call_type": "incident"},  # another process
    {"unit": "hr"},
    {"confirmation": {"kind": "explicit", "at": AT + timedelta(days=4)}},
]


def test_the_process_views_figures_are_each_calls_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process views keep what a call adds to (its tally, its priority class, its targets,
    whether silence confirms it) by the fields that decide it: over calls each after one it
    differs from in one field, the views are those of each call's worked out afresh."""
    config = _config(tmp_path)
    done = [_call(100, **DONE)] + [
        _call(101 + 2 * n + k, **{**DONE, **fields})
        for n, fields in enumerate(DONE_ONE_FIELD_OFF)
        for k in (0, 1)
    ]
    calls = _calls() + done
    kept = views_module.process_views(_context(config, calls))
    monkeypatch.setattr(views_module, "remember", lambda kept, key, value: value)
    afresh = views_module.process_views(_context(config, calls))
    assert kept == afresh
    request = next(v for v in kept if (v.unit, v.process) == ("facilities", "operate"))
    classes = {times.priority: times for times in request.by_priority}
    # High: DONE, and the variants under hr-facilities still (the explicit ones, the two whose
    # matrix derives high) have its 1-day target, missed; the six under no agreement have
    # none, and their silence confirms nothing.
    high = classes["high"]
    assert (high.calls, high.fulfilment.with_target, high.fulfilment.within_target) == (11, 5, 0)
    assert high.fulfilment.targets_seconds == [86400.0]
    assert high.confirmation.measured == 5
    low = classes["low"]  # hr-facilities' 10 days for low: met
    assert (low.fulfilment.with_target, low.fulfilment.within_target) == (4, 4)
