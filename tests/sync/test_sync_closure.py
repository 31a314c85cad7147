"""Every link closes (issue 16): a delivered supplier call its customer accepted is confirmed
and closed, explicitly (the customer's call moves on to fulfilled) or implicitly (it resumed
and did not come back within the agreement's term); no agreement, no implicit acceptance; a
rejection accepts nothing; a crash around the close writes nothing twice.

The chain is hr -> fac -> ext on memory tools (``done`` reads fulfilled, ``closed`` closed; the
tool has no status for confirmed, which it writes as ``closed``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync.memory_tool import MAPPING, Bridge, Crash, make_bridge, make_config
from usm_bridge.model import Call, ConfirmationKind, Status
from usm_bridge.store import Store

ONE_LINK = {"from": "hr", "to": "fac", "when": {"call_type": ["service_request"]}}
HR_FAC = {"provider": "fac", "customer": "hr", "implicit_confirmation": "3d"}


def _calls(bridge: Bridge, unit: str) -> list[Call]:
    with bridge.store.begin(readonly=True) as tx:
        return [stored.call for stored in tx.list_calls(unit=unit)]


def _one(bridge: Bridge, unit: str) -> Call:
    (call,) = _calls(bridge, unit)
    return call


def _accepted(bridge: Bridge, call_id: str) -> list[dict[str, Any]]:
    with bridge.store.begin(readonly=True) as tx:
        events = tx.list_audit(call_id=call_id, kind="link_accepted")
    return [event.detail for event in events if isinstance(event.detail, dict)]


def _chain(bridge: Bridge) -> tuple[str, str, str]:
    """Hannah's desk request opened and passed on to fac and ext; the three tickets' ids."""
    hr, fac, ext = (bridge.tools[n] for n in ("hr-tool", "fac-tool", "ext-tool"))
    ticket = hr.add(title="Desk for Ann", requester="boss@example.com", service="desk")
    bridge.settle()
    return ticket, fac.only()["id"], ext.only()["id"]


def _notes(bridge: Bridge, instance: str, ticket: str) -> list[str]:
    comments = bridge.tools[instance].tickets[ticket]["comments"]
    return [c["body"] for c in comments if not c["public"]]


@pytest.fixture
def agreed(store: Store, tmp_path: Path) -> Bridge:
    """hr -> fac only, under an agreement whose silence confirms after three days."""
    config = make_config(
        tmp_path,
        routes=[ONE_LINK],
        agreements={"hr-fac": HR_FAC},
    )
    return make_bridge(store, config)


def _fulfilled_and_resumed(bridge: Bridge) -> tuple[str, str]:
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket = hr.add(title="Desk for Ann", requester="boss@example.com")
    bridge.settle()
    supplier = fac.only()["id"]
    fac.edit(supplier, status="done")
    bridge.settle()
    assert hr.tickets[ticket]["status"] == "open"  # resumed
    return ticket, supplier


# -- explicit ------------------------------------------------------------------------------------


def test_a_customer_fulfilling_its_call_confirms_and_closes_its_supplier(bridge: Bridge) -> None:
    fac, ext = bridge.tools["fac-tool"], bridge.tools["ext-tool"]
    _, supplier, outside = _chain(bridge)
    ext.edit(outside, status="done")
    bridge.settle()
    assert fac.tickets[supplier]["status"] == "open"  # resumed: accepted by nobody yet
    assert ext.tickets[outside]["status"] == "done"
    assert _one(bridge, "ext").confirmation is None
    writes = len(ext.writes)

    fac.edit(supplier, status="done")  # fac delivers using ext's work
    bridge.settle()
    assert ext.tickets[outside]["status"] == "closed"
    call = _one(bridge, "ext")
    assert call.status is Status.CLOSED and call.confirmed is not None
    assert call.confirmation is not None
    assert call.confirmation.kind is ConfirmationKind.EXPLICIT
    how = f"the customer call {supplier} (fac) moved on to fulfilled using this work"
    assert call.confirmation.how == how
    (detail,) = _accepted(bridge, call.id)
    assert detail["kind"] == "explicit" and detail["customer_unit"] == "fac"
    assert detail["customer_call_id"] == _one(bridge, "fac").id
    # The tool has no status for confirmed: one write of closed, and an internal note.
    assert ext.writes[writes:] == [("update", outside), ("comment", outside)]
    (note,) = _notes(bridge, "ext-tool", outside)
    assert note.startswith("Confirmed (explicit) for fac: ")
    assert "no status for confirmed" in note
    # The store saw confirmed, then closed: both moves are legal and the closure's.
    with bridge.store.begin(readonly=True) as tx:
        moves = [
            (e.actor, e.after["status"])
            for e in tx.list_audit(call_id=call.id, kind="call_updated")
            if isinstance(e.after, dict) and "status" in e.after
        ]
    assert moves[-2:] == [("closure", "confirmed"), ("closure", "closed")]

    bridge.settle()  # closed and confirmed: nothing more to do, nothing written again
    assert len(_accepted(bridge, call.id)) == 1
    assert ext.writes[writes:] == [("update", outside), ("comment", outside)]


def test_without_an_agreement_silence_accepts_nothing(store: Store, tmp_path: Path) -> None:
    bridge = make_bridge(store, make_config(tmp_path, routes=[ONE_LINK]))
    fac = bridge.tools["fac-tool"]
    _, supplier = _fulfilled_and_resumed(bridge)
    bridge.clock.advance(days=400)
    bridge.settle()
    assert fac.tickets[supplier]["status"] == "done"
    assert _one(bridge, "fac").status is Status.FULFILLED
    assert _accepted(bridge, _one(bridge, "fac").id) == []


def test_a_supplier_its_tool_closed_at_fulfilment_keeps_its_status_and_gets_the_confirmation(
    bridge: Bridge,
) -> None:
    """As ServiceNow's requested item, whose Closed Complete is read as closed: no move back."""
    fac, ext = bridge.tools["fac-tool"], bridge.tools["ext-tool"]
    _, supplier, outside = _chain(bridge)
    ext.edit(outside, status="closed")
    bridge.settle()
    assert fac.tickets[supplier]["status"] == "open"
    writes = len(ext.writes)
    fac.edit(supplier, status="done")
    bridge.settle()
    call = _one(bridge, "ext")
    assert call.status is Status.CLOSED
    assert call.confirmation is not None
    assert call.confirmation.kind is ConfirmationKind.EXPLICIT
    assert ext.tickets[outside]["status"] == "closed"
    assert ext.writes[writes:] == [("comment", outside)]  # the note; no status write
    (note,) = _notes(bridge, "ext-tool", outside)
    assert "had already closed this record" in note
    with bridge.store.begin(readonly=True) as tx:
        statuses = [
            e.after["status"]
            for e in tx.list_audit(call_id=call.id, kind="call_updated")
            if isinstance(e.after, dict) and "status" in e.after
        ]
    assert "confirmed" not in statuses  # never closed -> confirmed


def test_a_tool_with_a_confirmed_status_is_written_confirmed_then_closed(
    store: Store, tmp_path: Path
) -> None:
    mapping = tmp_path / "confirming.yaml"
    mapping.write_text(
        MAPPING.replace("confirmed: closed", "registered: new")
        % {"extra_status": "\n      accepted: confirmed", "extra_write": ""},
        encoding="utf-8",
    )
    bridge = make_bridge(store, make_config(tmp_path, mapping=mapping))
    fac, ext = bridge.tools["fac-tool"], bridge.tools["ext-tool"]
    _, supplier, outside = _chain(bridge)
    ext.edit(outside, status="done")
    bridge.settle()
    statuses: list[str] = []
    edit = ext.edit

    def recording(ticket_id: str, **fields: Any) -> None:
        if ticket_id == outside and "status" in fields:
            statuses.append(fields["status"])
        edit(ticket_id, **fields)

    ext.edit = recording  # type: ignore[method-assign]
    fac.edit(supplier, status="done")
    bridge.settle()
    assert statuses == ["accepted", "closed"]
    assert _one(bridge, "ext").status is Status.CLOSED
    assert _notes(bridge, "ext-tool", outside) == []  # the tool shows the confirmation itself


# -- implicit ------------------------------------------------------------------------------------


def test_a_resumed_customer_accepts_implicitly_once_the_agreed_term_has_passed(
    agreed: Bridge,
) -> None:
    fac = agreed.tools["fac-tool"]
    _, supplier = _fulfilled_and_resumed(agreed)
    agreed.clock.advance(days=2, hours=23)
    agreed.settle()
    assert fac.tickets[supplier]["status"] == "done"
    assert _one(agreed, "fac").confirmation is None
    writes = len(fac.writes)

    agreed.clock.advance(hours=2)  # no change in either tool: the cycles alone find it due
    agreed.settle()
    assert fac.tickets[supplier]["status"] == "closed"
    call = _one(agreed, "fac")
    assert call.status is Status.CLOSED and call.confirmation is not None
    assert call.confirmation.kind is ConfirmationKind.IMPLICIT
    assert call.confirmation.by is None
    assert call.confirmation.how is not None and "within the agreed 3 days" in call.confirmation.how
    (detail,) = _accepted(agreed, call.id)
    assert detail["kind"] == "implicit" and detail["customer_unit"] == "hr"
    assert fac.writes[writes:] == [("update", supplier), ("comment", supplier)]


def test_a_customer_that_goes_back_to_waiting_rejects_and_accepts_only_a_new_delivery(
    agreed: Bridge,
) -> None:
    hr, fac = agreed.tools["hr-tool"], agreed.tools["fac-tool"]
    ticket, supplier = _fulfilled_and_resumed(agreed)
    hr.edit(ticket, status="hold")  # HR is not satisfied: it waits on Facilities again
    agreed.settle()
    agreed.clock.advance(days=10)
    agreed.settle()
    assert fac.tickets[supplier]["status"] == "done"
    assert _one(agreed, "fac").confirmation is None
    assert _accepted(agreed, _one(agreed, "fac").id) == []

    fac.edit(supplier, status="open")  # Facilities reopens and delivers again
    agreed.settle()
    fac.edit(supplier, status="done")
    agreed.settle()
    assert hr.tickets[ticket]["status"] == "open"
    agreed.clock.advance(days=4)
    agreed.settle()
    assert fac.tickets[supplier]["status"] == "closed"
    confirmation = _one(agreed, "fac").confirmation
    assert confirmation is not None and confirmation.kind is ConfirmationKind.IMPLICIT


def test_a_cancelled_customer_call_accepts_nothing(agreed: Bridge) -> None:
    hr, fac = agreed.tools["hr-tool"], agreed.tools["fac-tool"]
    ticket, supplier = _fulfilled_and_resumed(agreed)
    hr.edit(ticket, status="cancelled")
    agreed.settle()
    agreed.clock.advance(days=30)
    agreed.settle()
    assert fac.tickets[supplier]["status"] == "done"
    assert _accepted(agreed, _one(agreed, "fac").id) == []


def test_the_supplier_calls_customer_unit_names_the_agreement(store: Store, tmp_path: Path) -> None:
    """The term is the agreement's with the supplier call's customer unit: an agreement with
    another customer does not apply."""
    config = make_config(
        tmp_path,
        routes=[ONE_LINK],
        agreements={"ext-fac": {**HR_FAC, "customer": "ext"}},
    )
    bridge = make_bridge(store, config)
    _, supplier = _fulfilled_and_resumed(bridge)
    bridge.clock.advance(days=30)
    bridge.settle()
    assert bridge.tools["fac-tool"].tickets[supplier]["status"] == "done"


# -- crashes -------------------------------------------------------------------------------------


def test_a_crash_between_the_close_write_and_its_commit_writes_nothing_twice(
    agreed: Bridge,
) -> None:
    fac = agreed.tools["fac-tool"]
    _, supplier = _fulfilled_and_resumed(agreed)
    agreed.clock.advance(days=4)
    writes = len(fac.writes)
    agreed.connectors["fac-tool"].crash_after_update = Crash()
    with pytest.raises(Crash):
        agreed.engine.run_cycle("fac-tool")
    assert fac.tickets[supplier]["status"] == "closed"  # the tool took it; the store did not
    agreed.settle()
    agreed.clock.advance(minutes=10)  # the lease of the interrupted claim runs out
    agreed.settle()
    assert [w for w in fac.writes[writes:] if w[0] == "update"] == [("update", supplier)]
    assert [w for w in fac.writes[writes:] if w[0] == "comment"] == [("comment", supplier)]
    call = _one(agreed, "fac")
    assert call.status is Status.CLOSED and len(_accepted(agreed, call.id)) == 1
    with agreed.store.begin(readonly=True) as tx:
        assert tx.list_outbox(status="pending") == []


def test_a_crash_inside_the_closures_unit_of_work_keeps_nothing_and_the_next_cycle_closes_once(
    agreed: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    fac = agreed.tools["fac-tool"]
    _, supplier = _fulfilled_and_resumed(agreed)
    agreed.clock.advance(days=4)
    writes = len(fac.writes)
    closure = agreed.engine.closure
    close = closure._close

    def crashing(*args: Any, **kwargs: Any) -> None:
        close(*args, **kwargs)
        raise Crash()

    monkeypatch.setattr(closure, "_close", crashing)
    with pytest.raises(Crash):
        agreed.engine.run_cycle("fac-tool")
    assert _one(agreed, "fac").status is Status.FULFILLED  # rolled back: nothing decided
    assert _accepted(agreed, _one(agreed, "fac").id) == []
    monkeypatch.setattr(closure, "_close", close)
    agreed.settle()
    assert fac.writes[writes:] == [("update", supplier), ("comment", supplier)]
    assert len(_accepted(agreed, _one(agreed, "fac").id)) == 1
