"""Services and agreements in the sync: a route choosing its supplier by service, the supplier
call's priority from its agreement's matrix, and unknown references audited once.

Four units on memory tools: hr, fac (workplace), it (laptops, two instances), ext.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync.memory_tool import Bridge, make_bridge, write_mapping
from usm_bridge.config import BridgeConfig
from usm_bridge.model import Call
from usm_bridge.store import Store
from usm_bridge.sync.references import UNKNOWN_REFERENCE
from usm_bridge.sync.route_decision import Blocker
from usm_bridge.trace import collect_trace

P_MATRIX: dict[str, Any] = {
    "classes": ["p1", "p2", "p3"],
    "table": {
        "high": {"high": "p1", "medium": "p1", "low": "p2"},
        "medium": {"high": "p1", "medium": "p2", "low": "p3"},
        "low": {"high": "p2", "medium": "p3", "low": "p3"},
        "nil": {"high": "p3", "medium": "p3", "low": "p3"},
    },
}


def _config(
    tmp_path: Path,
    routes: list[dict[str, Any]],
    *,
    agreements: dict[str, Any] | None = None,
    units: dict[str, Any] | None = None,
) -> BridgeConfig:
    mapping = write_mapping(tmp_path / "memory.yaml")
    instances = {"hr-tool": "hr", "fac-tool": "fac", "it-requests": "it", "it-incidents": "it"}
    return BridgeConfig.model_validate(
        {
            "units": units or {name: {"name": name} for name in ("hr", "fac", "it")},
            "instances": {
                name: {"name": name, "unit": unit, "kind": "memory", "mapping": str(mapping)}
                for name, unit in instances.items()
            },
            "services": {
                "workplace": {"id": "workplace", "provider": "fac"},
                "laptops": {"id": "laptops", "provider": "it"},
                "payroll": {"id": "payroll", "provider": "hr"},
            },
            "agreements": agreements or {},
            "routes": routes,
        }
    )


BY_SERVICE = {
    "name": "hr-by-service",
    "from": "hr",
    "to": "by-service",
    "targets": {"it": "it-requests"},
}


def _calls(bridge: Bridge, unit: str) -> list[Call]:
    with bridge.store.begin(readonly=True) as tx:
        return [stored.call for stored in tx.list_calls(unit=unit)]


def _hr_call(bridge: Bridge, ticket: str) -> Call:
    return next(c for c in _calls(bridge, "hr") if c.source and c.source.remote_id == ticket)


# -- a route choosing its supplier by service -----------------------------------------------


def test_a_by_service_route_opens_the_supplier_call_at_the_services_provider(
    store: Store, tmp_path: Path
) -> None:
    bridge = make_bridge(store, _config(tmp_path, [BY_SERVICE]))
    hr = bridge.tools["hr-tool"]
    asked = {
        "workplace": hr.add(title="A desk", service="workplace"),
        "laptops": hr.add(title="A laptop", service="laptops"),
        "payroll": hr.add(title="My payslip", service="payroll"),
        "unregistered": hr.add(title="Something", service="espresso"),
        "none": hr.add(title="Anything"),
    }
    bridge.settle()
    # workplace -> fac's only instance; laptops -> the instance the route names for it
    assert [t["title"] for t in bridge.tools["fac-tool"].tickets.values()] == ["A desk"]
    assert [t["title"] for t in bridge.tools["it-requests"].tickets.values()] == ["A laptop"]
    assert bridge.tools["it-incidents"].tickets == {}
    for name, ticket in asked.items():
        call = _hr_call(bridge, ticket)
        waits = name in ("workplace", "laptops")
        assert (len(call.chain.suppliers) == 1) is waits, name
        assert (bridge.tools["hr-tool"].tickets[ticket]["status"] == "hold") is waits, name
    (desk,) = _calls(bridge, "fac")
    (laptop,) = _calls(bridge, "it")
    # the supplier call is for the service that chose it, for its customer unit
    assert (desk.service, desk.customer_unit) == ("workplace", "hr")
    assert (laptop.service, laptop.customer_unit) == ("laptops", "hr")


@pytest.mark.parametrize(
    ("service", "blocker", "reason"),
    [
        ("laptops", None, "service 'laptops' is provided by unit 'it' (instance 'it-requests')"),
        ("workplace", None, "service 'workplace' is provided by unit 'fac' (instance 'fac-tool')"),
        ("payroll", Blocker.NO_SUPPLIER, "provided by the calling unit 'hr' itself"),
        ("espresso", Blocker.NO_SUPPLIER, "service 'espresso' is not registered"),
        (None, Blocker.NO_SUPPLIER, "the call names no service"),
    ],
)
def test_the_verdict_and_the_trace_say_which_service_chose_which_unit(
    store: Store, tmp_path: Path, service: str | None, blocker: Blocker | None, reason: str
) -> None:
    # A condition no call meets keeps every route from firing: the verdict is the same.
    route = {**BY_SERVICE, "when": {"title": "never"}} if blocker is None else BY_SERVICE
    config = _config(tmp_path, [route])
    bridge = make_bridge(store, config)
    fields = {"service": service} if service else {}
    ticket = bridge.tools["hr-tool"].add(title="Ask", **fields)
    bridge.settle(1)
    with store.begin(readonly=True) as tx:
        trace = collect_trace(config, tx, ticket)
    (line,) = trace.calls[0].routes
    assert reason in line.verdict.reason
    if blocker is None:
        assert line.verdict.blocker is Blocker.CONDITION  # only the condition stopped it
        expected_unit = {"laptops": "it", "workplace": "fac"}[service or ""]
        assert (line.to_unit, line.verdict.supplier_unit) == (expected_unit, expected_unit)
        assert line.as_json()["to"] == expected_unit
    else:
        assert line.verdict.blocker is blocker and line.outcome == "not fired"
        assert line.verdict.supplier_unit is None and line.to_unit == "by-service"


def test_a_fired_by_service_route_shows_its_supplier_in_the_trace(
    store: Store, tmp_path: Path
) -> None:
    config = _config(tmp_path, [BY_SERVICE])
    bridge = make_bridge(store, config)
    ticket = bridge.tools["hr-tool"].add(title="A laptop", service="laptops")
    bridge.settle()
    with store.begin(readonly=True) as tx:
        trace = collect_trace(config, tx, ticket)
    first, supplier = trace.calls
    (line,) = first.routes
    assert (line.outcome, line.to_unit) == ("fired", "it")
    assert supplier.call.unit == "it" and supplier.via_route == "hr-by-service"


# -- priority from the supplier's agreement -------------------------------------------------


def test_a_supplier_call_is_opened_under_the_pairs_agreement_and_its_only_service(
    store: Store, tmp_path: Path
) -> None:
    agreements = {
        "hr-fac": {"id": "hr-fac", "provider": "fac", "customer": "hr", "services": ["workplace"]},
    }
    route = {"name": "hr-to-fac", "from": "hr", "to": "fac"}
    bridge = make_bridge(store, _config(tmp_path, [route], agreements=agreements))
    # hr's own service is not fac's: it does not travel; the agreement names fac's
    bridge.tools["hr-tool"].add(title="Desk for Ann", service="payroll")
    bridge.settle()
    (upstream,), (supplier,) = _calls(bridge, "hr"), _calls(bridge, "fac")
    assert (upstream.service, upstream.agreement) == ("payroll", None)
    assert (supplier.service, supplier.agreement) == ("workplace", "hr-fac")
    assert bridge.tools["fac-tool"].only()["service"] == "workplace"
    # and neither side's service is reverted to the other's on later reads
    bridge.tools["fac-tool"].edit(supplier.source.remote_id if supplier.source else "", title="x")
    bridge.settle()
    assert bridge.tools["fac-tool"].only()["service"] == "workplace"
    assert _calls(bridge, "hr")[0].service == "payroll"


def test_each_supplier_call_takes_its_priority_from_its_agreement_else_unit_else_default(
    store: Store, tmp_path: Path
) -> None:
    # The memory mapping with impact and urgency (priority itself stays unmapped: derived).
    mapping = write_mapping(tmp_path / "memory.yaml")
    scales = "values: {h: high, m: medium, l: low}"
    extra = "".join(f"  {name}: {{path: {name}, {scales}}}\n" for name in ("impact", "urgency"))
    service = "  service: {path: service}\n"
    mapping.write_text(mapping.read_text().replace(service, service + extra))
    u_matrix = {
        "classes": ["u1", "u2", "u3"],
        "table": {
            impact: {urgency: "u" + cls[1] for urgency, cls in row.items()}
            for impact, row in P_MATRIX["table"].items()
        },
    }
    units = ("hr", "fac", "it", "ext")
    config = BridgeConfig.model_validate(
        {
            "units": {u: {"name": u} for u in units} | {"it": {"name": "it", "priority": u_matrix}},
            "instances": {
                f"{u}-tool": {"name": f"{u}-tool", "unit": u, "kind": "memory",
                              "mapping": str(mapping)}
                for u in units
            },
            "agreements": {
                "hr-fac": {"id": "hr-fac", "provider": "fac", "customer": "hr",
                           "priority": P_MATRIX},
            },
            "routes": [{"name": f"hr-to-{u}", "from": "hr", "to": u} for u in units[1:]],
        }
    )  # fmt: skip
    bridge = make_bridge(store, config)
    bridge.tools["hr-tool"].add(title="Desk, laptop, parcel", impact="m", urgency="l")
    bridge.settle()
    (upstream,) = _calls(bridge, "hr")
    assert upstream.priority == "low"  # hr: the default matrix
    found = {unit: [(c.priority, c.agreement) for c in _calls(bridge, unit)] for unit in units[1:]}
    assert found == {
        "fac": [("p3", "hr-fac")],  # the agreement's matrix
        "it": [("u3", None)],  # no agreement: it's own matrix
        "ext": [("low", None)],  # neither: the default
    }


# -- unknown references, audited once -------------------------------------------------------


def _unknown_events(bridge: Bridge) -> list[dict[str, Any]]:
    with bridge.store.begin(readonly=True) as tx:
        return [
            {"call": e.call_id, **e.detail}
            for e in tx.list_audit(kind=UNKNOWN_REFERENCE)
            if isinstance(e.detail, dict)
        ]


def test_each_unknown_service_is_audited_once_per_call_and_value(
    store: Store, tmp_path: Path
) -> None:
    bridge = make_bridge(store, _config(tmp_path, []))
    hr = bridge.tools["hr-tool"]
    tickets = {
        "espresso": hr.add(title="1", service="espresso"),
        "laptops": hr.add(title="2", service="laptops"),  # it's, not hr's
        "payroll": hr.add(title="3", service="payroll"),  # hr's own: fine
        "none": hr.add(title="4"),  # no service: the report's to tell, not the audit's
    }
    bridge.settle()
    events = _unknown_events(bridge)
    by_call = {e["call"]: e for e in events}
    assert len(events) == len(by_call) == 2
    espresso = by_call[_hr_call(bridge, tickets["espresso"]).id]
    assert espresso["reason"] == "service 'espresso' is not registered"
    laptops = by_call[_hr_call(bridge, tickets["laptops"]).id]
    assert laptops["reason"] == "service 'laptops' is provided by 'it', not by 'hr'"
    # read again after an unrelated edit: nothing new; another wrong value: told once more
    hr.edit(tickets["espresso"], title="1 again")
    bridge.settle()
    assert len(_unknown_events(bridge)) == 2
    hr.edit(tickets["espresso"], service="tea")
    bridge.settle()
    assert [e["value"] for e in _unknown_events(bridge)][-1] == "tea"
    assert len(_unknown_events(bridge)) == 3


def test_a_unit_routing_by_service_may_name_its_suppliers_service(
    store: Store, tmp_path: Path
) -> None:
    bridge = make_bridge(store, _config(tmp_path, [BY_SERVICE]))
    bridge.tools["hr-tool"].add(title="A laptop", service="laptops")
    bridge.tools["hr-tool"].add(title="Coffee", service="espresso")
    bridge.settle()
    assert [e["value"] for e in _unknown_events(bridge)] == ["espresso"]
