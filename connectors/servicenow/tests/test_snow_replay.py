"""The real event log replayed into the simulator, read incrementally with nothing lost."""

from __future__ import annotations

from collections import Counter

import pytest
from usm_bridge.connector import Checkpoint, RawRecord
from usm_bridge.mapping import MappingContext, apply_inbound, load_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.transforms import TRANSFORMS as CORE

from usm_bridge_servicenow.connector import ServiceNowConnector
from usm_bridge_servicenow.simulator import EventLogReplay, load_events
from usm_bridge_servicenow.testing import IncidentHarness
from usm_bridge_servicenow.transforms import TRANSFORMS as TOOL

MAPPINGS = SHIPPED_MAPPINGS_DIR


class ReplayHarness(IncidentHarness):
    page_size = 50


@pytest.fixture
def harness_class() -> type[ReplayHarness]:
    return ReplayHarness


def test_the_log_is_packaged_in_real_order() -> None:
    events = load_events()
    assert len(events) == 5998
    assert len({e["number"] for e in events}) == 890
    states = Counter(e["incident_state"] for e in events)
    assert {"New", "Active", "Awaiting User Info", "Resolved", "Closed"} <= set(states)
    assert states["Awaiting Vendor"] > 0 and states["Awaiting Problem"] > 0


def test_replay_read_incrementally_loses_nothing(
    harness: ReplayHarness, connector: ServiceNowConnector
) -> None:
    replay = EventLogReplay(harness.sim)
    cursor: str | None = None
    latest: dict[str, RawRecord] = {}
    reads = 0
    while not replay.done:
        touched = set(replay.play(457))  # an odd chunk: cuts fall inside busy minutes
        items = list(connector.read_changes(cursor))
        assert isinstance(items[-1], Checkpoint)
        cursor = items[-1].cursor
        reads += 1
        for item in items:
            if isinstance(item, RawRecord):
                latest[item.remote_id] = item
        for sys_id in touched:
            held = harness.sim.get("incident", sys_id)
            assert held is not None
            got = latest[sys_id].data
            assert (got["sys_updated_on"], got["sys_mod_count"], got["state"]) == (
                held["sys_updated_on"],
                held["sys_mod_count"],
                held["state"],
            ), f"read {reads} missed the latest change of {held['number']}"
    assert reads == 14
    assert len(latest) == 890 == len(harness.sim.ids("incident"))
    priorities = Counter(r.data["priority"] for r in latest.values())
    assert set(priorities) >= {"2", "3", "4"}
    mapping = load_mapping(MAPPINGS / "servicenow-incident.yaml")
    context = MappingContext(unit="it", instance="sn", transforms={**CORE, **TOOL})
    for record in latest.values():
        apply_inbound(mapping, record, context)


def test_replay_keeps_real_values(harness: ReplayHarness) -> None:
    replay = EventLogReplay(harness.sim)
    seen: Counter[tuple[str, str]] = Counter()
    for sys_id in replay:
        held = harness.sim.get("incident", sys_id)
        assert held is not None
        seen[(held["state"], held["hold_reason"])] += 1
    assert {("3", "1"), ("3", "3"), ("3", "4"), ("1", ""), ("2", ""), ("6", ""), ("7", "")} <= set(
        seen
    )
    first = harness.sim.get("incident", replay.incident_id("INC0000045") or "")
    assert first is not None
    assert first["sys_created_on"] == "2016-02-29 01:23:00"
    assert first["impact"] == "2" and first["priority"] == "3" and first["state"] == "7"
    caller = harness.sim.get("sys_user", first["caller_id"])
    assert caller is not None and caller["name"] == "Caller 2403"
