"""One cycle: read, map, store, echo, cursor, dead letters, a failing read, stop, run records."""

from __future__ import annotations

from typing import Any

from sync.memory_tool import Bridge, write_mapping
from usm_bridge.connector import RawRecord
from usm_bridge.dead_letters import retry_dead_letters
from usm_bridge.errors import RetriableRemoteError
from usm_bridge.hookspecs import hookimpl
from usm_bridge.mapping import Mapping, MappingContext
from usm_bridge.model import Call
from usm_bridge.store import DeadLetterStage, OutboxOperation


def test_a_cycle_stores_records_advances_the_cursor_and_a_rerun_writes_nothing(
    bridge: Bridge,
) -> None:
    hr = bridge.tools["hr-tool"]
    for n in range(5):
        hr.add(title=f"Incident {n}", kind="incident")
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok and (summary.read, summary.stored, summary.dead_letters) == (5, 5, 0)
    with bridge.store.begin(readonly=True) as tx:
        assert tx.get_cursor("hr-tool") == str(hr.version)
        assert len(tx.list_calls(unit="hr")) == 5
    again = bridge.engine.run_cycle("hr-tool")
    assert (again.read, again.stored, again.pushed) == (0, 0, 0)
    assert bridge.writes() == {"hr-tool": 0, "fac-tool": 0, "ext-tool": 0}


def test_a_bad_record_is_dead_lettered_the_cycle_goes_on_and_retry_maps_and_routes_it(
    bridge: Bridge, tmp_path: Any
) -> None:
    seen: list[tuple[str, str]] = []

    class Watcher:
        @hookimpl
        def usm_bridge_dead_letter(
            self, instance: str, stage: str, reason: str, payload: Any
        ) -> None:
            seen.append((instance, stage))

    bridge.host.register(Watcher())
    hr = bridge.tools["hr-tool"]
    hr.add(title="Fine one", kind="incident")
    bad = hr.add(title="Desk please", status="weird")
    hr.add(title="Fine two", kind="incident")
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok and (summary.read, summary.stored, summary.dead_letters) == (3, 2, 1)
    assert seen == [("hr-tool", "map")]
    with bridge.store.begin(readonly=True) as tx:
        (letter,) = tx.list_dead_letters()
        assert letter.stage is DeadLetterStage.MAP and "weird" in letter.reason
        assert letter.payload["remote_id"] == bad  # type: ignore[index]
        assert tx.get_cursor("hr-tool") == str(hr.version)  # the cycle went on past it

    write_mapping(tmp_path / "memory.yaml", knows_weird=True)
    outcome = retry_dead_letters(bridge.engine)
    assert [i for i, _ in outcome.resolved] == [letter.id] and not outcome.failed
    with bridge.store.begin(readonly=True) as tx:
        call = tx.find_call("hr-tool", bad)
        assert call is not None and len(tx.suppliers_of(call.id)) == 1  # routed on retry
        creates = [i for i in tx.list_outbox() if i.operation is OutboxOperation.CREATE]
        assert {i.target_instance for i in creates} == {"fac-tool"}
    bridge.engine.run_cycle("fac-tool")  # the target's own cycle drains its outbox
    assert len(bridge.tools["fac-tool"].tickets) == 1


def test_a_read_failing_midway_keeps_what_was_stored_and_the_last_cursor(bridge: Bridge) -> None:
    hr = bridge.tools["hr-tool"]
    for n in range(5):
        hr.add(title=f"Incident {n}", kind="incident")
    bridge.connectors["hr-tool"].fail_read_after = (3, RetriableRemoteError("HTTP 503"))
    summary = bridge.engine.run_cycle("hr-tool")
    assert not summary.ok and "503" in (summary.error or "") and summary.stored == 3
    with bridge.store.begin(readonly=True) as tx:
        assert tx.get_cursor("hr-tool") == "2"  # the checkpoint after records 1-2
        assert len(tx.list_calls()) == 3
        (state,) = tx.list_instance_states()
        assert state.consecutive_failures == 1 and "503" in (state.last_error or "")
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok and summary.stored == 2 and summary.unchanged == 1
    with bridge.store.begin(readonly=True) as tx:
        (state,) = tx.list_instance_states()
        assert state.ok and state.runs == 2 and state.last_counters["stored"] == 2
        assert state.last_success is not None and state.last_error is not None


def test_stop_ends_the_cycle_after_the_record_in_flight(bridge: Bridge) -> None:
    hr = bridge.tools["hr-tool"]
    for n in range(4):
        hr.add(title=f"Incident {n}", kind="incident")
    seen = []

    class StopWhileMapping:
        """A stop requested while the first record is in flight (a signal to the daemon)."""

        armed = True

        @hookimpl(tryfirst=True)
        def usm_bridge_map_inbound(
            self, mapping: Mapping, record: RawRecord, context: MappingContext
        ) -> Call | None:
            if self.armed:
                self.armed = False
                bridge.stop.set()
            return None  # the built-in mapping answers

    bridge.host.register(StopWhileMapping())
    summary = bridge.engine.run_cycle("hr-tool", progress=lambda p: seen.append(p.read))
    assert summary.ok and summary.read == 1 and seen == [1]
    # The records after it were not stored: the next cycle reads them.
    bridge.stop.clear()
    assert bridge.engine.run_cycle("hr-tool").stored == 3


def test_the_cycle_hooks_see_the_counters(bridge: Bridge) -> None:
    calls: list[tuple[str, Any]] = []

    class Hooks:
        @hookimpl
        def usm_bridge_before_cycle(self, instance: str) -> None:
            calls.append(("before", instance))

        @hookimpl
        def usm_bridge_after_cycle(self, instance: str, summary: dict[str, int]) -> None:
            calls.append(("after", summary))

    bridge.host.register(Hooks())
    bridge.tools["hr-tool"].add(title="x", kind="incident")
    bridge.engine.run_cycle("hr-tool")
    assert calls[0] == ("before", "hr-tool")
    assert calls[1][0] == "after" and calls[1][1]["read"] == 1 and calls[1][1]["stored"] == 1
