"""Forks resolved to calls at ingest, in either arrival order, inside one unit only; audit events
carry the call's process (on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.memory_tool import Bridge, running_bridge, write_mapping
from usm_bridge.config import BridgeConfig
from usm_bridge.model import Call, ForkRole, ProcessLink, UsmProcess
from usm_bridge.store import Store
from usm_bridge.sync.forks import FORK_REFUSED

#: The memory tool's mapping, with changes (kind "change" -> rfc) and the ticket field "fix"
#: as a fork: the change that restores an incident (W3).
_RFC_RULE = "    - {type: rfc, when: [{path: kind, equals: change}]}\n"
_FORKS = "forks:\n  - {path: fix, role: secondary, process: change, via: memory.fix}\n"


def _config(tmp_path: Path) -> BridgeConfig:
    path = write_mapping(tmp_path / "memory.yaml")
    default = "  default: service_request\n"
    text = path.read_text(encoding="utf-8").replace(default, _RFC_RULE + default)
    path.write_text(text + _FORKS, encoding="utf-8")
    instances = {"it-incidents": "it", "it-changes": "it", "hr-tool": "hr"}
    return BridgeConfig.model_validate(
        {
            "units": {"it": {"name": "it"}, "hr": {"name": "hr"}},
            "instances": {
                name: {"name": name, "unit": unit, "kind": "memory", "mapping": str(path)}
                for name, unit in instances.items()
            },
        }
    )


@pytest.fixture
def bridge(store: Store, tmp_path: Path) -> Iterator[Bridge]:
    with running_bridge(store, _config(tmp_path)) as built:
        yield built


def _call(bridge: Bridge, instance: str, remote_id: str) -> Call:
    with bridge.store.begin(readonly=True) as tx:
        found = tx.find_call(instance, remote_id)
        assert found is not None, (instance, remote_id)
        return found.call


def _fork_to(change_call: str | None, change: str) -> list[ProcessLink]:
    return [
        ProcessLink(
            role=ForkRole.SECONDARY,
            process=UsmProcess.CHANGE,
            ref=change,
            instance="it-changes" if change_call else None,
            call=change_call,
            via="memory.fix",
        )
    ]


def test_a_fork_to_a_record_held_already_is_resolved_when_read(bridge: Bridge) -> None:
    change = bridge.tools["it-changes"].add(title="Replace the switch", kind="change")
    bridge.cycle("it-changes")
    incident = bridge.tools["it-incidents"].add(title="LAN down", kind="incident", fix=change)
    bridge.cycle("it-incidents")
    change_call = _call(bridge, "it-changes", change)
    assert change_call.process is UsmProcess.CHANGE
    assert _call(bridge, "it-incidents", incident).chain.forks == _fork_to(change_call.id, change)


def test_a_fork_read_before_its_record_is_filled_in_when_the_record_arrives(
    bridge: Bridge,
) -> None:
    change = bridge.tools["it-changes"].add(title="Replace the switch", kind="change")
    incident = bridge.tools["it-incidents"].add(title="LAN down", kind="incident", fix=change)
    bridge.cycle("it-incidents")  # the change is not read yet
    assert _call(bridge, "it-incidents", incident).chain.forks == _fork_to(None, change)
    bridge.cycle("it-changes")
    change_call = _call(bridge, "it-changes", change)
    assert _call(bridge, "it-incidents", incident).chain.forks == _fork_to(change_call.id, change)
    # A later read of the incident keeps the fork resolved: no version for the fork itself.
    bridge.tools["it-incidents"].edit(incident, title="LAN down in building B")
    bridge.cycle("it-incidents")
    with bridge.store.begin(readonly=True) as tx:
        stored = tx.find_call("it-incidents", incident)
        assert stored is not None
        assert stored.call.chain.forks == _fork_to(change_call.id, change)
        assert stored.version == 3  # created, fork filled in, title changed


def test_a_fork_removed_in_the_tool_is_removed_from_the_call(bridge: Bridge) -> None:
    change = bridge.tools["it-changes"].add(title="Replace the switch", kind="change")
    incident = bridge.tools["it-incidents"].add(title="LAN down", kind="incident", fix=change)
    bridge.cycle("it-changes", "it-incidents")
    bridge.tools["it-incidents"].edit(incident, fix="")
    bridge.cycle("it-incidents")
    assert _call(bridge, "it-incidents", incident).chain.forks == []


@pytest.mark.parametrize("order", ["other unit first", "fork first"])
def test_a_link_to_another_units_record_is_no_fork_and_is_audited_once(
    bridge: Bridge, order: str
) -> None:
    hr_ticket = bridge.tools["hr-tool"].add(title="New starter")
    incident = bridge.tools["it-incidents"].add(title="LAN down", kind="incident", fix=hr_ticket)
    first, then = ("hr-tool", "it-incidents")
    if order == "fork first":
        first, then = then, first
    bridge.cycle(first)
    bridge.cycle(then)
    call = _call(bridge, "it-incidents", incident)
    hr_call = _call(bridge, "hr-tool", hr_ticket)
    assert [fork.call for fork in call.chain.forks] == [None]  # never guessed into a link
    bridge.tools["it-incidents"].edit(incident, title="LAN down again")
    bridge.cycle("it-incidents")  # read again: the refusal is not audited twice
    with bridge.store.begin(readonly=True) as tx:
        events = tx.list_audit(kind=FORK_REFUSED)
    assert len(events) == 1
    assert events[0].call_id == call.id
    detail = events[0].detail
    assert isinstance(detail, dict)
    assert (detail["ref"], detail["other_call_id"], detail["other_unit"]) == (
        hr_ticket,
        hr_call.id,
        "hr",
    )
    assert detail["process"] == "recover"


def test_audit_events_about_a_call_carry_its_process(bridge: Bridge) -> None:
    incident = bridge.tools["it-incidents"].add(title="LAN down", kind="incident")
    request = bridge.tools["it-incidents"].add(title="A new laptop")
    bridge.cycle("it-incidents")
    bridge.tools["it-incidents"].edit(incident, status="open")
    bridge.cycle("it-incidents")
    processes = {}
    with bridge.store.begin(readonly=True) as tx:
        for remote_id, expected in ((incident, "recover"), (request, "operate")):
            call = _call(bridge, "it-incidents", remote_id)
            events = [e for e in tx.list_audit(call_id=call.id) if e.kind.startswith("call_")]
            processes[expected] = [
                (e.kind, e.detail.get("process") if isinstance(e.detail, dict) else None)
                for e in events
            ]
    assert processes == {
        "recover": [("call_created", "recover"), ("call_updated", "recover")],
        "operate": [("call_created", "operate")],
    }
