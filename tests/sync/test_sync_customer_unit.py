"""The customer of a supplier call is the customer *unit* (the party to the agreement between
the two units); the person who called stays the requester along the whole chain."""

from __future__ import annotations

from typing import Any

from sync.memory_tool import Bridge


def _only(bridge: Bridge, unit: str) -> Any:
    with bridge.store.begin(readonly=True) as tx:
        (stored,) = tx.list_calls(unit=unit)
    return stored.call


def test_each_supplier_call_names_its_customer_unit_and_keeps_the_caller(bridge: Bridge) -> None:
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    hr.add(title="Desk for Ann", requester="boss@example.com", service="desk")
    bridge.settle()
    upstream, supplier, outside = (_only(bridge, unit) for unit in ("hr", "fac", "ext"))
    # HR's own call was made by a person, not under an agreement with another unit.
    assert upstream.customer_unit is None
    assert (supplier.customer_unit, outside.customer_unit) == ("hr", "fac")
    assert [c.requester.email for c in (upstream, supplier, outside)] == ["boss@example.com"] * 3

    # The supplier's tool knows nothing of the customer unit: its changes read back keep it.
    fac.edit(fac.only()["id"], title="Standing desk for Ann")
    bridge.settle()
    assert _only(bridge, "fac").customer_unit == "hr"
