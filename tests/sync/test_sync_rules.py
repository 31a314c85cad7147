"""Ownership conflicts, push faults, the census and writes per change."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sync.memory_tool import Bridge, make_bridge, make_config
from usm_bridge.config import load_config
from usm_bridge.errors import ConfigurationError, PermanentRemoteError, RetriableRemoteError
from usm_bridge.store import OutboxOperation, OutboxStatus, Store


def _chain(bridge: Bridge) -> tuple[str, str]:
    ticket = bridge.tools["hr-tool"].add(title="Desk for Ann", service="desk")
    bridge.settle()
    made = list(bridge.tools["fac-tool"].tickets)
    return ticket, made[0] if made else ""


def test_a_write_by_the_side_not_owning_the_field_is_reverted_and_audited(bridge: Bridge) -> None:
    fac = bridge.tools["fac-tool"]
    _, supplier = _chain(bridge)
    fac.edit(supplier, title="Desk for Bob")
    bridge.settle()
    assert fac.tickets[supplier]["title"] == "Desk for Ann"
    with bridge.store.begin(readonly=True) as tx:
        (event,) = tx.list_audit(kind="conflict")
    assert event.before == {"title": "Desk for Bob"} and event.after == {"title": "Desk for Ann"}
    assert "title is owned by the customer" in event.detail["rule"]  # type: ignore[index]


def test_a_route_can_give_a_field_to_the_supplier(store: Store, tmp_path: Path) -> None:
    routes = [{"from": "hr", "to": "fac", "when": {}, "owners": {"description": "supplier"}}]
    bridge = make_bridge(store, make_config(tmp_path, routes=routes))
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket, supplier = _chain(bridge)
    fac.edit(supplier, description="Model X, delivered Monday")
    bridge.settle()
    assert hr.tickets[ticket]["description"] == "Model X, delivered Monday"  # travels up
    hr.edit(ticket, description="Any desk")
    bridge.settle()
    assert hr.tickets[ticket]["description"] == "Model X, delivered Monday"  # reverted
    with bridge.store.begin(readonly=True) as tx:
        (event,) = tx.list_audit(kind="conflict")
    assert event.detail["owner"] == "supplier"  # type: ignore[index]


def test_owners_naming_an_unknown_field_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "usm-bridge.toml"
    path.write_text(
        '[units.hr]\n[units.fac]\n[instances.fac-tool]\nunit = "fac"\nkind = "memory"\n'
        'mapping = "m.yaml"\n[[routes]]\nfrom = "hr"\nto = "fac"\n'
        'owners = { colour = "supplier" }\n'
    )
    with pytest.raises(ConfigurationError, match="colour"):
        load_config(path)


def test_a_temporary_push_failure_is_retried_after_the_remote_says(bridge: Bridge) -> None:
    fac = bridge.connectors["fac-tool"]
    fac.faults["find"] = [RetriableRemoteError("busy", status=429, retry_after=120)]
    _chain(bridge)
    assert bridge.tools["fac-tool"].tickets == {}
    with bridge.store.begin(readonly=True) as tx:
        (item,) = [
            i
            for i in tx.list_outbox(status=OutboxStatus.PENDING, instance="fac-tool")
            if i.operation is OutboxOperation.CREATE
        ]
    assert item.next_attempt_at >= bridge.clock() + timedelta(seconds=119)
    # Past the due time the item was given: the engine stamps it by the real time when that
    # is ahead of the test's clock (a slow machine), so a fixed 121 s may fall short.
    bridge.clock.now = item.next_attempt_at + timedelta(seconds=1)
    bridge.settle()
    assert len(bridge.tools["fac-tool"].tickets) == 1


def test_a_permanent_push_failure_is_dead_lettered_with_the_remote_message(
    bridge: Bridge,
) -> None:
    bridge.connectors["fac-tool"].faults["create"] = [
        PermanentRemoteError("refused", status=400, remote_message="Title is required.")
    ]
    _chain(bridge)
    with bridge.store.begin(readonly=True) as tx:
        (letter,) = tx.list_dead_letters(stage="push")
        assert "Title is required." in letter.reason
        assert tx.list_outbox(status=OutboxStatus.DEAD)


def test_a_failure_that_persists_is_dead_lettered_after_the_last_attempt(bridge: Bridge) -> None:
    bridge.engine.pusher.max_attempts = 2
    # Every look-up fails, however many the cycles make (the check of a tried create before
    # each read of fac-tool too): the failure persists.
    bridge.connectors["fac-tool"].faults["find"] = [RetriableRemoteError("HTTP 503")] * 50
    _chain(bridge)
    bridge.clock.advance(hours=2)
    bridge.settle()
    with bridge.store.begin(readonly=True) as tx:
        (letter,) = tx.list_dead_letters(stage="push")
    assert "gave up after 2 attempts" in letter.reason


def test_the_census_marks_vanished_records_and_only_on_a_complete_listing(bridge: Bridge) -> None:
    hr = bridge.tools["hr-tool"]
    keep = hr.add(title="a", kind="incident")
    gone = hr.add(title="b", kind="incident")
    bridge.engine.run_cycle("hr-tool")
    saved = hr.tickets[gone]
    hr.delete(gone)
    connector = bridge.connectors["hr-tool"]
    connector.listing = lambda: None
    assert bridge.engine.census("hr-tool") == 0

    def broken():  # type: ignore[no-untyped-def]
        yield keep
        raise RetriableRemoteError("HTTP 503")

    connector.listing = broken
    assert bridge.engine.census("hr-tool") == 0
    connector.listing = None
    assert bridge.engine.census("hr-tool") == 1
    assert bridge.engine.census("hr-tool") == 0
    with bridge.store.begin(readonly=True) as tx:
        vanished = tx.find_call("hr-tool", gone)
        assert vanished is not None and vanished.vanished
    hr.tickets[gone] = saved
    hr.edit(gone, title="b again")
    bridge.engine.run_cycle("hr-tool")
    with bridge.store.begin(readonly=True) as tx:
        back = tx.find_call("hr-tool", gone)
        assert back is not None and not back.vanished


def test_one_real_change_makes_exactly_one_write_and_an_echo_none(bridge: Bridge) -> None:
    hr = bridge.tools["hr-tool"]
    ticket, _ = _chain(bridge)
    before = bridge.writes()
    hr.edit(ticket, title="Standing desk for Ann")
    summary = bridge.engine.run_cycle("hr-tool")
    after = bridge.writes()
    # One write in each tool that holds a copy of the request (fac, and ext down the chain).
    assert summary.pushed == 2
    assert {n: after[n] - before[n] for n in after} == {"hr-tool": 0, "fac-tool": 1, "ext-tool": 1}
    assert bridge.tools["ext-tool"].only()["title"] == "Standing desk for Ann"
    echo = bridge.engine.run_cycle("fac-tool")
    # Reading back its own write: recognised (unchanged, or an echo), never routed or written.
    assert (echo.read, echo.unchanged + echo.echoes, echo.routed, echo.pushed) == (1, 1, 0, 0)
    bridge.settle()
    assert bridge.writes() == after
