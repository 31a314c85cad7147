"""Revision 0009: a store written before "no work while unclassified" holds unclassified calls in
progress or waiting; the upgrade sets each back to registered, audits it, and loses nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from store.store_revisions import downgrade

from usm_bridge.model import Call, CallType, Status, WaitingOn
from usm_bridge.store import SchemaPolicy, Store
from usm_bridge.store.schema import calls as calls_table

MakeCall = Callable[..., Call]


def _force(store: Store, call_id: str, **canonical: Any) -> None:
    """Write what the old code could store and the new model refuses, under the model's back."""
    with store.engine.begin() as conn:
        document = conn.execute(
            sa.select(calls_table.c.canonical).where(calls_table.c.id == call_id)
        ).scalar_one()
        conn.execute(
            sa.update(calls_table)
            .where(calls_table.c.id == call_id)
            .values(status=canonical["status"], canonical={**document, **canonical})
        )


def test_revision_0009_sets_unclassified_work_back_to_registered_and_audits_it(
    store_url: str, make_call: MakeCall
) -> None:
    working = make_call("HR-1")
    waiting = make_call("HR-2")
    classified = make_call("HR-3", call_type=CallType.INCIDENT, status=Status.IN_PROGRESS)
    untouched = make_call("HR-4")
    with Store.open(store_url) as store:
        with store.begin() as tx:
            for call in (working, waiting, classified, untouched):
                tx.upsert_call(call, instance="hr-jira")
        downgrade(store, "0008")
        _force(store, working.id, status="in_progress")
        _force(store, waiting.id, status="waiting", waiting_on="customer")
    with Store.open(store_url, schema=SchemaPolicy.UPGRADE) as store:
        assert store.schema_revision() == store.head_revision()
        with store.begin() as tx:
            stored = {call.id: tx.get_call(call.id) for call in (working, waiting, classified)}
            events = tx.list_audit(kind="call_status_migrated")
            every = [s.call.id for s in tx.list_calls()]  # all read: nothing unreadable
    for call in (working, waiting):
        found = stored[call.id]
        assert found is not None
        assert (found.call.status, found.call.waiting_on) == (Status.REGISTERED, None)
        assert found.version == 2
    kept = stored[classified.id]
    assert kept is not None and kept.call.status is Status.IN_PROGRESS and kept.version == 1
    assert {(e.call_id, e.before["status"]) for e in events} == {  # type: ignore[index]
        (working.id, "in_progress"),
        (waiting.id, "waiting"),
    }
    waited = next(e for e in events if e.call_id == waiting.id)
    assert waited.before == {"status": "waiting", "waiting_on": WaitingOn.CUSTOMER.value}
    assert waited.actor == "db upgrade 0009"
    assert sorted(every) == sorted(c.id for c in (working, waiting, classified, untouched))
