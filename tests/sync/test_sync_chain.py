"""The chain hr -> fac -> ext end to end: supplier calls, status travelling up, comments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync.memory_tool import Bridge, Crash, make_bridge, make_config
from usm_bridge.model import Status
from usm_bridge.store import Store


def _open_desk_request(bridge: Bridge) -> str:
    return bridge.tools["hr-tool"].add(
        title="Desk for Ann", requester="boss@example.com", service="desk"
    )


def _calls(bridge: Bridge, unit: str) -> list[Any]:
    with bridge.store.begin(readonly=True) as tx:
        return [stored.call for stored in tx.list_calls(unit=unit)]


def test_a_chain_of_three_units_is_opened_once_and_resumes_when_suppliers_fulfil(
    bridge: Bridge,
) -> None:
    hr, fac, ext = (bridge.tools[n] for n in ("hr-tool", "fac-tool", "ext-tool"))
    ticket = _open_desk_request(bridge)
    bridge.settle()
    assert hr.tickets[ticket]["status"] == "hold"  # waiting on its supplier
    supplier, outside = fac.only(), ext.only()
    assert supplier["title"] == outside["title"] == "Desk for Ann"
    assert supplier["status"] == "hold" and outside["status"] == "new"
    (u,), (s,), (t,) = (_calls(bridge, unit) for unit in ("hr", "fac", "ext"))
    assert s.chain.upstream == u.id and u.chain.suppliers == [s.id]
    assert t.chain.upstream == s.id and s.chain.suppliers == [t.id]

    ext.edit(outside["id"], status="done")
    bridge.settle()
    assert fac.only()["status"] == "open"  # a fulfilled supplier call resumes the upstream
    assert hr.tickets[ticket]["status"] == "hold"  # hr still waits on fac
    fac.edit(supplier["id"], status="done")
    bridge.settle()
    assert hr.tickets[ticket]["status"] == "open"
    assert len(fac.tickets) == len(ext.tickets) == 1
    assert [w[0] for w in fac.writes].count("create") == 1


def test_a_crash_between_the_remote_create_and_the_commit_makes_no_duplicate(
    bridge: Bridge,
) -> None:
    fac = bridge.tools["fac-tool"]
    bridge.connectors["fac-tool"].crash_after_create = Crash()
    _open_desk_request(bridge)
    with pytest.raises(Crash):
        bridge.engine.run_cycle("hr-tool")
    assert len(fac.tickets) == 1
    bridge.settle()  # the claimed item is still leased: nothing is pushed twice meanwhile
    bridge.clock.advance(minutes=10)  # the lease of the claim runs out
    bridge.settle()
    assert len(fac.tickets) == 1 and [w[0] for w in fac.writes] == ["create"]
    (s,) = _calls(bridge, "fac")
    assert s.source is not None and s.source.remote_id == fac.only()["id"]
    with bridge.store.begin(readonly=True) as tx:
        assert tx.list_outbox(status="pending") == []


def test_public_comments_travel_both_ways_without_echo(bridge: Bridge) -> None:
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket = _open_desk_request(bridge)
    bridge.settle()
    hr.comment(ticket, "Near the window, please", author="Hannah Hiring")
    hr.comment(ticket, "HR only", public=False, author="Hannah Hiring")
    bridge.settle()
    from_hannah = "Hannah Hiring (hr) wrote:\nNear the window, please"
    assert [c["body"] for c in fac.only()["comments"]] == [from_hannah]
    fac.comment(fac.only()["id"], "Delivered on Monday", author="Frank Facilities")
    bridge.settle()
    from_frank = "Frank Facilities (fac) wrote:\nDelivered on Monday"
    assert [c["body"] for c in hr.tickets[ticket]["comments"]] == [
        "Near the window, please",
        "HR only",
        from_frank,
    ]
    ext_comments = bridge.tools["ext-tool"].only()["comments"]
    assert [c["body"] for c in ext_comments] == [from_frank]  # one link on
    before = bridge.writes()
    bridge.settle()
    assert bridge.writes() == before  # no echo loop
    assert [c["body"] for c in fac.only()["comments"]].count(from_hannah) == 1


def test_a_cancelled_supplier_resumes_the_upstream_with_an_internal_note(bridge: Bridge) -> None:
    hr, ext = bridge.tools["hr-tool"], bridge.tools["ext-tool"]
    _open_desk_request(bridge)
    bridge.settle()
    ext.edit(ext.only()["id"], status="cancelled")
    bridge.settle()
    fac = bridge.tools["fac-tool"].only()
    assert fac["status"] == "open"
    (note,) = fac["comments"]
    assert not note["public"] and "cancelled" in note["body"]
    assert hr.only()["status"] == "hold"


def test_a_cancelled_upstream_cancels_its_open_suppliers(bridge: Bridge) -> None:
    hr = bridge.tools["hr-tool"]
    ticket = _open_desk_request(bridge)
    bridge.settle()
    hr.edit(ticket, status="cancelled")
    bridge.settle()
    assert bridge.tools["fac-tool"].only()["status"] == "cancelled"
    assert bridge.tools["ext-tool"].only()["status"] == "cancelled"
    assert {c.status for c in _calls(bridge, "ext")} == {Status.CANCELLED}


def test_a_call_not_matching_the_route_stays_in_its_unit(bridge: Bridge) -> None:
    bridge.tools["hr-tool"].add(title="Payroll is wrong", kind="incident")
    bridge.settle()
    assert bridge.tools["fac-tool"].tickets == {}


def test_a_route_that_relays_comments_carries_them_along_the_whole_chain(
    store: Store, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path,
        routes=[
            {"from": "hr", "to": "fac", "when": {"call_type": ["service_request"]},
             "relay_comments": True},
            {"from": "fac", "to": "ext", "when": {"service": "desk"}},
        ],
    )  # fmt: skip
    bridge = make_bridge(store, config)
    try:
        hr, fac, ext = (bridge.tools[n] for n in ("hr-tool", "fac-tool", "ext-tool"))
        ticket = _open_desk_request(bridge)
        bridge.settle()
        ext.comment(ext.only()["id"], "Desk ships Tuesday", author="Erin External")
        bridge.settle()
        # fac -> hr relays; ext's comment reaches hr over two links, once each, and names its
        # original author and unit there too, not the integration account that posted it at fac.
        from_erin = "Erin External (ext) wrote:\nDesk ships Tuesday"
        assert [c["body"] for c in fac.only()["comments"]] == [from_erin]
        assert [c["body"] for c in hr.tickets[ticket]["comments"]] == [from_erin]
        # Down the chain, fac -> ext does not relay: hr's comment stops at fac.
        hr.comment(ticket, "Thanks")  # no author known: the unit still is
        bridge.settle()
        assert [c["body"] for c in fac.only()["comments"]] == [
            from_erin,
            "Someone at hr wrote:\nThanks",
        ]
        assert [c["body"] for c in ext.only()["comments"]] == ["Desk ships Tuesday"]
        before = bridge.writes()
        bridge.settle()
        assert bridge.writes() == before  # no echo loop through the relay
    finally:
        bridge.engine.close()
