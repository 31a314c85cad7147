"""Ownership never loops: an empty owner's value, a tool that normalises, a real conflict.

The customer side owns the request (title, impact, urgency ...). A supplier tool that fills in
a default where the customer gave nothing (ServiceNow sets impact "3 - Low" on create) is no
conflict: the owner has nothing to restore, and an empty value is never written. A tool that
keeps another value than the one the bridge writes (it trims, say) is reverted at most once,
then audited as ``unresolvable`` and left alone. A person's write over the owner's value is
still reverted once and audited once.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sync.memory_tool import (
    Bridge,
    Clock,
    MemoryConnector,
    MemoryTool,
    make_config,
    write_mapping,
)
from usm_bridge.connector import RemoteDraft, RemoteRef
from usm_bridge.model import Impact
from usm_bridge.plugins import PluginHost
from usm_bridge.runtime import build_runtime
from usm_bridge.store import Store

CYCLES = 5
#: The memory tool's mapping, with impact and urgency ("1" high ... "3" low, as ServiceNow).
_LEVELS = """\
  impact:
    path: impact
    values: {"1": high, "2": medium, "3": low}
  urgency:
    path: urgency
    values: {"1": high, "2": medium, "3": low}
"""


class DefaultingConnector(MemoryConnector):
    """A tool that fills impact and urgency in with "3" (low) when a record is made without."""

    def create(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        fields = {"impact": "3", "urgency": "3", **{k: v for k, v in draft.fields.items()}}
        for key in ("impact", "urgency"):
            if fields.get(key) is None:
                fields[key] = "3"
        return super().create(draft.model_copy(update={"fields": fields}), correlation)


class TrimmingConnector(MemoryConnector):
    """A tool that keeps titles with their runs of blanks made one (as some tools do)."""

    @staticmethod
    def _normalised(draft: RemoteDraft) -> RemoteDraft:
        fields = dict(draft.fields)
        if isinstance(fields.get("title"), str):
            fields["title"] = " ".join(str(fields["title"]).split())
        return draft.model_copy(update={"fields": fields})

    def create(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        return super().create(self._normalised(draft), correlation)

    def update(self, remote_id: str, draft: RemoteDraft) -> None:
        super().update(remote_id, self._normalised(draft))


def _bridge(store: Store, tmp_path: Path, connector: type[MemoryConnector]) -> Bridge:
    config = make_config(
        tmp_path, routes=[{"from": "hr", "to": "fac", "when": {}}], units=("hr", "fac")
    )
    mapping = write_mapping(tmp_path / "memory.yaml")
    text = mapping.read_text(encoding="utf-8")
    mapping.write_text(
        text.replace("  service: {path: service}\n", "  service: {path: service}\n" + _LEVELS),
        encoding="utf-8",
    )
    clock = Clock()
    tools = {name: MemoryTool(name, clock) for name in config.instances}
    connectors = {
        "hr-tool": MemoryConnector(tools["hr-tool"]),
        "fac-tool": connector(tools["fac-tool"]),
    }
    host, stop = PluginHost(), threading.Event()
    engine = build_runtime(
        config, store, host=host, connectors=connectors, stop=stop, clock=clock
    ).engine
    return Bridge(store, config, host, clock, tools, connectors, engine, stop)


def _audit(bridge: Bridge, kind: str) -> list[Any]:
    with bridge.store.begin(readonly=True) as tx:
        return list(tx.list_audit(kind=kind))


def _calls(bridge: Bridge, unit: str) -> list[Any]:
    with bridge.store.begin(readonly=True) as tx:
        return [stored.call for stored in tx.list_calls(unit=unit)]


def _updates(bridge: Bridge, tool: str) -> int:
    return [op for op, _ in bridge.tools[tool].writes].count("update")


def test_an_empty_owners_value_keeps_the_suppliers_default_without_conflict(
    store: Store, tmp_path: Path
) -> None:
    bridge = _bridge(store, tmp_path, DefaultingConnector)
    try:
        hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
        ticket = hr.add(title="Desk for Ann", requester="boss@example.com")
        bridge.settle()
        supplier = fac.only()
        assert supplier["impact"] == supplier["urgency"] == "3"  # the tool's default
        assert [op for op, _ in fac.writes] == ["create"]
        before = bridge.writes()
        for _ in range(CYCLES):
            bridge.cycle()
        assert bridge.writes() == before  # nothing written, ever
        assert _audit(bridge, "conflict") == [] and _audit(bridge, "unresolvable") == []
        assert fac.only()["impact"] == "3" and "impact" not in hr.tickets[ticket]
        ((upstream,), (call,)) = _calls(bridge, "hr"), _calls(bridge, "fac")
        assert upstream.impact is None and upstream.urgency is None  # the owner keeps its empty
        assert call.impact is Impact.LOW  # the supplier's own call keeps its tool's value
        with bridge.store.begin(readonly=True) as tx:
            assert tx.list_outbox(status="pending") == []

        # The owner's value, once given, is the one both sides hold (and no conflict).
        hr.edit(ticket, impact="2")
        bridge.settle()
        assert fac.only()["impact"] == "2"
        assert _audit(bridge, "conflict") == []
        before = bridge.writes()
        for _ in range(CYCLES):
            bridge.cycle()
        assert bridge.writes() == before
    finally:
        bridge.engine.close()


def test_a_normalising_tool_is_reverted_at_most_once_then_left_as_unresolvable(
    store: Store, tmp_path: Path
) -> None:
    bridge = _bridge(store, tmp_path, TrimmingConnector)
    try:
        hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
        ticket = hr.add(title="Desk  for   Ann")
        for _ in range(CYCLES + 3):
            bridge.cycle()
        assert fac.only()["title"] == "Desk for Ann"  # the tool's own form
        assert _updates(bridge, "fac-tool") <= 1  # at most one revert
        (event,) = _audit(bridge, "unresolvable")
        assert event.detail["field"] == "title"
        assert event.detail["kept"] == "Desk  for   Ann"
        assert event.detail["held"] == "Desk for Ann"
        assert len(_audit(bridge, "conflict")) <= 1
        before, conflicts = bridge.writes(), len(_audit(bridge, "conflict"))
        for _ in range(CYCLES):
            bridge.cycle()
        assert bridge.writes() == before  # quiet cycles
        assert len(_audit(bridge, "conflict")) == conflicts
        assert len(_audit(bridge, "unresolvable")) == 1

        # A later change of the customer's call does not push the unresolvable title again.
        hr.edit(ticket, impact="1")
        bridge.settle()
        assert fac.only()["impact"] == "1" and fac.only()["title"] == "Desk for Ann"
        before = bridge.writes()
        for _ in range(CYCLES):
            bridge.cycle()
        assert bridge.writes() == before
        assert len(_audit(bridge, "unresolvable")) == 1
        with bridge.store.begin(readonly=True) as tx:
            assert tx.list_outbox(status="pending") == []
    finally:
        bridge.engine.close()


def test_a_real_conflict_is_still_reverted_once_and_audited_once(
    store: Store, tmp_path: Path
) -> None:
    bridge = _bridge(store, tmp_path, DefaultingConnector)
    try:
        hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
        ticket = hr.add(title="Desk for Ann", impact="2")
        bridge.settle()
        supplier = fac.only()["id"]
        assert fac.tickets[supplier]["impact"] == "2"
        updates = _updates(bridge, "fac-tool")
        fac.edit(supplier, impact="1")  # a Facilities agent raises it
        for _ in range(CYCLES):
            bridge.cycle()
        assert fac.tickets[supplier]["impact"] == "2"  # reverted to the customer's value
        assert _updates(bridge, "fac-tool") == updates + 1  # once
        (event,) = _audit(bridge, "conflict")
        assert event.before == {"impact": "high"} and event.after == {"impact": "medium"}
        assert event.detail["owner"] == "customer"
        assert _audit(bridge, "unresolvable") == []
        assert "impact" not in hr.tickets[ticket] or hr.tickets[ticket]["impact"] == "2"

        # Another write over the owner's value is another conflict, reverted again.
        fac.edit(supplier, title="Desk for Bob")
        bridge.settle()
        assert fac.tickets[supplier]["title"] == "Desk for Ann"
        assert len(_audit(bridge, "conflict")) == 2
        before = bridge.writes()
        for _ in range(CYCLES):
            bridge.cycle()
        assert bridge.writes() == before
    finally:
        bridge.engine.close()
