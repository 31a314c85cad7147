"""A call that waits on another process of its unit (``waiting_process``) travels through the
router's status moves: nothing the router writes keeps a process waited on without the wait."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.memory_tool import Bridge, make_config, running_bridge
from usm_bridge.model import Status, UsmProcess, WaitingOn
from usm_bridge.store import Store

#: The memory tool's status "hold_change": on hold until a change is done (W3).
_HOLD_CHANGE = '      hold_customer: "waiting:customer"\n'
_WAITING_PROCESS = (
    "  waiting_process: {path: status, values: {hold_change: change}, read_only: true}\n"
)


def _with_hold_change(tmp_path: Path) -> None:
    path = tmp_path / "memory.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        _HOLD_CHANGE, _HOLD_CHANGE + '      hold_change: "waiting:secondary_process"\n'
    )
    text = text.replace(
        "  service: {path: service}\n", _WAITING_PROCESS + "  service: {path: service}\n"
    )
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def bridge(store: Store, tmp_path: Path) -> Iterator[Bridge]:
    config = make_config(tmp_path)
    _with_hold_change(tmp_path)
    with running_bridge(store, config) as built:
        yield built


def _only(bridge: Bridge, unit: str) -> tuple[Status, WaitingOn | None, UsmProcess | None]:
    with bridge.store.begin(readonly=True) as tx:
        (stored,) = tx.list_calls(unit=unit)
        call = stored.call
    return call.status, call.waiting_on, call.waiting_process


def _desk_request(bridge: Bridge) -> str:
    ticket = bridge.tools["hr-tool"].add(title="Desk for Ann", service="desk")
    bridge.settle()
    return ticket


def test_a_wait_on_a_change_is_read_with_its_process(bridge: Bridge) -> None:
    fac = bridge.tools["fac-tool"]
    _desk_request(bridge)
    bridge.tools["ext-tool"].edit(bridge.tools["ext-tool"].only()["id"], status="hold_change")
    bridge.settle()
    assert _only(bridge, "ext") == (Status.WAITING, WaitingOn.SECONDARY_PROCESS, UsmProcess.CHANGE)
    assert fac.only()["status"] == "hold"  # fac still waits on its supplier


def test_an_upstream_moved_to_a_process_wait_goes_back_to_waiting_on_its_supplier(
    bridge: Bridge,
) -> None:
    ticket = _desk_request(bridge)
    bridge.tools["hr-tool"].edit(ticket, status="hold_change")
    bridge.settle()
    # The supplier owns the status while it works: hr waits on it again, on no process.
    assert _only(bridge, "hr") == (Status.WAITING, WaitingOn.SUPPLIER, None)
    assert bridge.tools["hr-tool"].tickets[ticket]["status"] == "hold"
    with bridge.store.begin(readonly=True) as tx:
        assert tx.list_dead_letters(status=None) == []


def test_a_cancelled_upstream_cancels_a_supplier_waiting_on_a_change(bridge: Bridge) -> None:
    ticket = _desk_request(bridge)
    ext = bridge.tools["ext-tool"]
    ext.edit(ext.only()["id"], status="hold_change")
    bridge.settle()
    bridge.tools["hr-tool"].edit(ticket, status="cancelled")
    bridge.settle()
    assert _only(bridge, "ext") == (Status.CANCELLED, None, None)
    assert ext.only()["status"] == "cancelled"


def test_a_customer_owning_the_status_ends_its_suppliers_wait_on_a_change(
    store: Store, tmp_path: Path
) -> None:
    routes = [{"from": "hr", "to": "fac", "when": {}, "owners": {"status": "customer"}}]
    config = make_config(tmp_path, routes=routes, units=("hr", "fac"))
    _with_hold_change(tmp_path)
    with running_bridge(store, config) as bridge:
        ticket = bridge.tools["hr-tool"].add(title="Desk for Ann")
        bridge.settle()
        fac = bridge.tools["fac-tool"]
        fac.edit(fac.only()["id"], status="hold_change")
        bridge.settle()
        # The customer's status is imposed again: no wait, so no process waited on.
        assert _only(bridge, "fac") == (Status.REGISTERED, None, None)
        assert fac.only()["status"] == "new"
        assert bridge.tools["hr-tool"].tickets[ticket]["status"] == "new"
