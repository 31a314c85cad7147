"""Over real HTTP: a create costs one correlation lookup, and a repeated one still finds the first.

The engine looks the correlation up before every create; ``create`` trusts that answer when it
comes right before it (see ``usm_bridge.http_connector``), and looks for itself otherwise.
"""

from __future__ import annotations

from usm_bridge.connector import RemoteDraft

from usm_bridge_servicenow.connector import ServiceNowConnector
from usm_bridge_servicenow.simulator import SimFault
from usm_bridge_servicenow.testing import IncidentHarness

DRAFT = RemoteDraft(fields={"short_description": "Boiler room flooded"})


def made(harness: IncidentHarness, correlation: str) -> list[str]:
    with harness.sim.lock:
        records = harness.sim.tables["incident"].records.values()
        return [r["sys_id"] for r in records if r.get("correlation_id") == correlation]


def test_a_create_right_after_the_engines_lookup_looks_once(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    # What the outbox does: find_by_correlation(...) or create(...).
    ref = connector.find_by_correlation("corr-1") or connector.create(DRAFT, "corr-1")
    assert connector.requests == 2  # the lookup and the POST
    # Called again (a create repeated as such): it looks for itself and finds the first.
    assert connector.create(DRAFT, "corr-1") == ref
    assert connector.requests == 3
    assert made(harness, "corr-1") == [ref.remote_id]


def test_a_lost_create_after_the_engines_lookup_is_found_not_repeated(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    assert connector.find_by_correlation("corr-lost") is None
    harness.sim.inject(SimFault("lose-create"))
    ref = connector.create(DRAFT, "corr-lost")  # the answer lost, the record looked up
    assert made(harness, "corr-lost") == [ref.remote_id]
    # At once, without the engine's lookup in between: it looks for itself.
    assert connector.create(DRAFT, "corr-lost") == ref
    assert made(harness, "corr-lost") == [ref.remote_id]


def test_a_lost_create_waits_for_the_post_and_leaves_reads_alone(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    harness.sim.inject(SimFault("lose-create"))
    assert connector.find_by_correlation("corr-2") is None  # answered, not dropped
    assert connector.requests == 1
    ref = connector.create(DRAFT, "corr-2")
    assert made(harness, "corr-2") == [ref.remote_id]
