"""The census over the real simulators: records deleted in ServiceNow and in Jira (through
each tool's own REST API) make exactly their calls vanished, their history kept; a census
while the tools answer 503 marks nothing.

The tools and the config come from :mod:`e2e.e2e_env`, unchanged; the bridge is the real
:class:`~usm_bridge.sync.engine.SyncEngine` with its connectors built from their entry points.
"""

from __future__ import annotations

from typing import Any

import requests
from usm_bridge_jira.simulator import SimFault as JiraFault
from usm_bridge_servicenow.simulator import SimFault as SnowFault

from e2e.e2e_env import (
    INSTANCES,
    SNOW_TABLE,
    Tools,
    calls_by_unit,
    settle,
)
from usm_bridge.store import Store
from usm_bridge.sync.engine import SyncEngine


def snapshot(store: Store) -> dict[str, tuple[int, str, Any]]:
    """Every call's version, content hash and vanished mark."""
    with store.begin(readonly=True) as tx:
        return {s.id: (s.version, s.content_hash, s.vanished_at) for s in tx.list_calls()}


def vanished(store: Store) -> set[str]:
    with store.begin(readonly=True) as tx:
        return {s.id for s in tx.list_calls() if s.vanished_at is not None}


def delete_in_servicenow(tools: Tools, sys_id: str) -> None:
    """A ServiceNow administrator deletes the record through the Table API."""
    response = requests.delete(
        f"{tools.snow.base_url}/api/now/table/{SNOW_TABLE}/{sys_id}",
        auth=(tools.snow.username, tools.snow.password),
        timeout=10,
    )
    assert response.status_code == 204, response.text


def test_census_marks_exactly_the_deleted_records_and_nothing_during_a_503(
    tools: Tools, engine: SyncEngine
) -> None:
    store = engine.store
    tools.mail_to_hr(subject="[request] Onboarding: a desk for Maria")
    tools.mail_to_hr(subject="[request] Onboarding: a badge for Omar")
    settle(engine)

    by_unit = calls_by_unit(store)
    assert [len(by_unit[u]) for u in ("hr", "facilities", "it")] == [2, 2, 2]
    fac_by_id = {c.id: c for c in by_unit["facilities"]}
    it_by_id = {c.id: c for c in by_unit["it"]}
    # Two chains hr -> facilities -> it.
    chains = []
    for hr in by_unit["hr"]:
        (fac,) = [fac_by_id[i] for i in hr.chain.suppliers]
        (it,) = [it_by_id[i] for i in fac.chain.suppliers]
        chains.append((hr, fac, it))
    (_, _, it_a), (_, fac_b, _) = chains
    assert it_a.source is not None and fac_b.source is not None
    assert len(tools.jira_issues()) == 2 and len(tools.snow_items()) == 2

    # Nothing deleted yet: a census marks nothing anywhere.
    assert [engine.census(name) for name in INSTANCES] == [0, 0, 0]
    assert vanished(store) == set()

    # IT's record of chain A deleted in ServiceNow, Facilities' issue of chain B in Jira.
    delete_in_servicenow(tools, it_a.source.remote_id)
    tools.jira_as_person("DELETE", f"issue/{fac_b.source.remote_id}")
    assert len(tools.snow_items()) == 1 and len(tools.jira_issues()) == 1
    before = snapshot(store)

    # -- while both tools answer 503, the listings fail and nothing is marked ---------------
    tools.snow.inject(SnowFault("503"), times=50)
    tools.jira.fail_next(JiraFault.UNAVAILABLE, times=50, retry_after="0")
    try:
        assert engine.census("it-snow") == 0
        assert engine.census("facilities-jira") == 0
    finally:
        tools.snow.clear_faults()
        tools.jira.clear_faults()
    assert vanished(store) == set()
    assert snapshot(store) == before

    # -- once they answer again, exactly the two deleted records' calls vanish ---------------
    assert engine.census("it-snow") == 1
    assert engine.census("facilities-jira") == 1
    assert engine.census("hr-mail") == 0
    assert vanished(store) == {it_a.id, fac_b.id}
    # ... once: a second census marks nothing more.
    assert [engine.census(name) for name in INSTANCES] == [0, 0, 0]

    # The canonical history is kept: same calls, versions and content; only the mark is new.
    after = snapshot(store)
    assert after.keys() == before.keys()
    for call_id, (version, content_hash, gone) in after.items():
        assert (version, content_hash) == before[call_id][:2]
        assert (gone is not None) == (call_id in {it_a.id, fac_b.id})
    with store.begin(readonly=True) as tx:
        for call_id in (it_a.id, fac_b.id):
            stored = tx.get_call(call_id)
            assert stored is not None and stored.vanished_at is not None
            events = tx.list_audit(call_id=call_id, kind="call_vanished")
            assert [(e.actor, e.instance) for e in events] == [
                ("census", "it-snow" if call_id == it_a.id else "facilities-jira")
            ]
        # The chains still link the vanished calls to the others.
        for _hr, fac, it in chains:
            linked_fac, linked_it = tx.get_call(fac.id), tx.get_call(it.id)
            assert linked_fac is not None and linked_it is not None
            assert linked_fac.call.chain.suppliers == [it.id]
            assert linked_it.call.chain.upstream == fac.id
