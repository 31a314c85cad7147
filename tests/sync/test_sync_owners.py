"""Every ``owners`` entry ``usm-bridge check`` accepts is honoured: the owner's value wins.

Over two units on memory tools (hr -> fac), each field the memory mapping writes is given to
each side in turn: the owner's edit reaches the other tool, and the other side's edit is
reverted to the owner's value and audited as a conflict. Entries naming a field the receiving
tool's mapping cannot write are refused by the check instead of silently doing nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync.memory_tool import Bridge, MemoryConnector, connector_host, make_bridge, make_config
from usm_bridge.checks import check_config
from usm_bridge.config import OWNABLE, BridgeConfig
from usm_bridge.errors import ConfigurationError
from usm_bridge.store import Store

#: Fields the memory mapping writes, each with three values: at the start, the owner's edit,
#: the other side's edit.
WRITTEN: dict[str, tuple[str, str, str]] = {
    "title": ("Desk for Ann", "Standing desk for Ann", "Desk for Bob"),
    "description": ("Any desk", "Model X, 160 cm", "No desk after all"),
    "service": ("furniture", "desks", "chairs"),
    "requester": ("ann@hr.example", "anna@hr.example", "bob@fac.example"),
}
SIDES = ("customer", "supplier")


def _bridge(store: Store, tmp_path: Path, owners: dict[str, str]) -> Bridge:
    routes = [{"from": "hr", "to": "fac", "when": {}, "owners": owners}]
    return make_bridge(store, make_config(tmp_path, routes=routes, units=("hr", "fac")))


def _opened(bridge: Bridge, **fields: Any) -> tuple[str, str]:
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket = hr.add(**fields)
    bridge.settle()
    (supplier,) = fac.tickets
    return ticket, supplier


def _conflicts(bridge: Bridge) -> list[dict[str, Any]]:
    with bridge.store.begin(readonly=True) as tx:
        return [e.detail for e in tx.list_audit(kind="conflict") if isinstance(e.detail, dict)]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("field", sorted(WRITTEN))
def test_the_owner_of_a_request_field_wins_both_ways(
    store: Store, tmp_path: Path, field: str, side: str
) -> None:
    start, owners_edit, others_edit = WRITTEN[field]
    bridge = _bridge(store, tmp_path, {field: side})
    base = {"title": "Desk", "description": "", "service": "furniture", "requester": None}
    ticket, supplier = _opened(bridge, **{**base, field: start})
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    owner, owner_id, other, other_id = (
        (hr, ticket, fac, supplier) if side == "customer" else (fac, supplier, hr, ticket)
    )

    owner.edit(owner_id, **{field: owners_edit})
    bridge.settle()
    assert (owner.tickets[owner_id][field], other.tickets[other_id][field]) == (
        owners_edit,
        owners_edit,
    )
    assert _conflicts(bridge) == []

    other.edit(other_id, **{field: others_edit})
    bridge.settle()
    assert (owner.tickets[owner_id][field], other.tickets[other_id][field]) == (
        owners_edit,
        owners_edit,
    )
    (conflict,) = _conflicts(bridge)
    assert (conflict["field"], conflict["owner"]) == (field, side)


def test_a_customer_owning_the_status_sets_the_suppliers_and_keeps_its_own(
    store: Store, tmp_path: Path
) -> None:
    bridge = _bridge(store, tmp_path, {"status": "customer"})
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket, supplier = _opened(bridge, title="Desk for Ann")
    # The customer's call does not wait on its supplier: the customer decides its status.
    assert (hr.tickets[ticket]["status"], fac.tickets[supplier]["status"]) == ("new", "new")

    hr.edit(ticket, status="open")
    bridge.settle()
    assert (hr.tickets[ticket]["status"], fac.tickets[supplier]["status"]) == ("open", "open")

    fac.edit(supplier, status="done")  # the supplier may not decide it is done
    bridge.settle()
    assert (hr.tickets[ticket]["status"], fac.tickets[supplier]["status"]) == ("open", "open")
    (conflict,) = _conflicts(bridge)
    assert conflict["field"] == "status" and conflict["owner"] == "customer"
    assert conflict["reverted"] == "fulfilled" and conflict["kept"] == "in_progress"

    hr.edit(ticket, status="hold_customer")  # waiting on the requester: a pause of HR's own
    bridge.settle()
    assert fac.tickets[supplier]["status"] == "open"

    hr.edit(ticket, status="done")
    bridge.settle()
    # The customer's fulfilment is its explicit acceptance of the supplier's work: the supplier
    # call is confirmed and closed (sync/closure.py), and not taken back to fulfilled after.
    assert (hr.tickets[ticket]["status"], fac.tickets[supplier]["status"]) == ("done", "closed")
    hr.comment(ticket, "Thanks!", author="Hannah Hiring")
    bridge.settle()
    assert (hr.tickets[ticket]["status"], fac.tickets[supplier]["status"]) == ("done", "closed")


def test_a_customer_waiting_on_its_supplier_leaves_the_suppliers_status_alone(
    store: Store, tmp_path: Path
) -> None:
    bridge = _bridge(store, tmp_path, {"status": "customer"})
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket, supplier = _opened(bridge, title="Desk for Ann", status="open")
    hr.edit(ticket, status="hold")  # waiting on the supplier: its work goes on
    bridge.settle()
    assert fac.tickets[supplier]["status"] == "open"
    fac.edit(supplier, status="done")
    bridge.settle()
    assert (hr.tickets[ticket]["status"], fac.tickets[supplier]["status"]) == ("hold", "done")
    assert _conflicts(bridge) == []


def test_a_supplier_owning_the_status_moves_the_customers(store: Store, tmp_path: Path) -> None:
    bridge = _bridge(store, tmp_path, {"status": "supplier"})
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket, supplier = _opened(bridge, title="Desk for Ann")
    assert hr.tickets[ticket]["status"] == "hold"  # waits on its supplier
    hr.edit(ticket, status="open")  # the customer may not move it while the supplier works
    bridge.settle()
    assert hr.tickets[ticket]["status"] == "hold"
    (conflict,) = _conflicts(bridge)
    assert conflict["field"] == "status" and conflict["owner"] == "supplier"
    fac.edit(supplier, status="done")
    bridge.settle()
    assert hr.tickets[ticket]["status"] == "open"  # resumed
    assert fac.tickets[supplier]["status"] == "done"


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(
    "field", sorted(OWNABLE - {*WRITTEN, "status", "assignee", "fulfilled", "closed"})
)
def test_check_refuses_an_owner_whose_value_could_never_reach_the_other_tool(
    tmp_path: Path, field: str, side: str
) -> None:
    config = _checked_config(tmp_path, {field: side})
    with pytest.raises(ConfigurationError, match=f"does not write {field}"):
        check_config(config, connector_host(MemoryConnector))


@pytest.mark.parametrize("field", ["assignee", "fulfilled", "closed"])
def test_work_fields_are_refused_when_copied_down_and_accepted_as_the_suppliers_own(
    tmp_path: Path, field: str
) -> None:
    host = connector_host(MemoryConnector)
    with pytest.raises(ConfigurationError, match=f"does not write {field}"):
        check_config(_checked_config(tmp_path, {field: "customer"}), host)
    # The supplier's own work is copied nowhere: nothing to write, nothing to refuse.
    assert check_config(_checked_config(tmp_path, {field: "supplier"}), host)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("field", [*sorted(WRITTEN), "status"])
def test_check_accepts_every_owner_the_memory_tools_can_honour(
    tmp_path: Path, field: str, side: str
) -> None:
    lines = check_config(_checked_config(tmp_path, {field: side}), connector_host(MemoryConnector))
    assert "route hr-to-fac: hr -> fac" in lines


def test_check_refuses_a_status_owner_whose_states_the_supplier_tool_cannot_take(
    tmp_path: Path,
) -> None:
    config = _checked_config(tmp_path, {"status": "customer"})
    fac_tool = _without(config, "fac-tool", tmp_path / "no-done.yaml", "done: fulfilled")
    with pytest.raises(ConfigurationError, match=r"cannot be written the state\(s\) fulfilled"):
        check_config(fac_tool, connector_host(MemoryConnector))
    # The other way round only the supplier's own states move the customer's: accepted.
    config = _checked_config(tmp_path, {"status": "supplier"})
    check_config(
        _without(config, "fac-tool", tmp_path / "no-done.yaml", "done: fulfilled"),
        connector_host(MemoryConnector),
    )


def _without(config: BridgeConfig, instance: str, path: Path, line: str) -> BridgeConfig:
    """``config`` with ``instance``'s mapping lacking the lines that start with ``line``."""
    text = config.instances[instance].mapping.read_text(encoding="utf-8")
    path.write_text(
        "\n".join(row for row in text.splitlines() if not row.lstrip().startswith(line)),
        encoding="utf-8",
    )
    changed = config.instances[instance].model_copy(update={"mapping": path})
    return config.model_copy(update={"instances": {**config.instances, instance: changed}})


def _checked_config(tmp_path: Path, owners: dict[str, str]) -> BridgeConfig:
    routes = [{"from": "hr", "to": "fac", "when": {}, "owners": owners}]
    return make_config(tmp_path, routes=routes, units=("hr", "fac"))


def test_a_supplier_owned_field_is_not_copied_or_reverted_into_a_tool_that_cannot_write_it(
    store: Store, tmp_path: Path
) -> None:
    # Built in code, past the check (which refuses this owners entry): the router itself must
    # still never ask HR's tool, whose mapping has no description, to hold one.
    config = _checked_config(tmp_path, {"description": "supplier"})
    config = _without(config, "hr-tool", tmp_path / "no-description.yaml", "description:")
    bridge = make_bridge(store, config)
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket, supplier = _opened(bridge, title="Desk for Ann")
    writes = bridge.writes()["hr-tool"]
    asked = _outbox(bridge, "hr-tool")

    fac.edit(supplier, description="Model X, 160 cm")
    bridge.settle()
    bridge.settle()
    assert hr.tickets[ticket].get("description", "") == ""  # as the tool made it
    assert fac.tickets[supplier]["description"] == "Model X, 160 cm"
    assert _conflicts(bridge) == []
    assert bridge.writes()["hr-tool"] == writes
    assert _outbox(bridge, "hr-tool") == asked  # not even a write that would change nothing
    with bridge.store.begin(readonly=True) as tx:
        (stored,) = [s for s in tx.list_calls(unit="hr")]
    assert stored.call.description == ""


def _outbox(bridge: Bridge, instance: str) -> int:
    with bridge.store.begin(readonly=True) as tx:
        return len(tx.list_outbox(instance=instance))
