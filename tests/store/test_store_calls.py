"""Calls: upsert by content hash, versions, audit events, vanished records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from usm_bridge.errors import StoreError
from usm_bridge.model import Comment, Status, WaitingOn
from usm_bridge.store import Store, content_hash

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def test_a_new_call_is_stored_at_version_1_with_an_audit_event(store: Store, make_call) -> None:
    call = make_call(remote_id="HR-1")
    with store.begin() as tx:
        result = tx.upsert_call(call, instance="hr-jira", actor="sync")
    assert result.created and result.changed
    assert (result.old_version, result.new_version) == (None, 1)
    assert result.content_hash == content_hash(call)
    with store.begin() as tx:
        stored = tx.get_call(call.id)
        events = tx.list_audit(call_id=call.id, kind="call_created")
    assert stored is not None
    assert stored.call == call
    assert stored.version == 1 and stored.content_hash == result.content_hash
    assert stored.created_at.tzinfo is UTC and stored.updated_at.tzinfo is UTC
    assert not stored.vanished
    [event] = events
    assert event.instance == "hr-jira" and event.actor == "sync"
    assert isinstance(event.after, dict) and event.after["title"] == call.title


def test_an_unchanged_call_keeps_its_version_and_writes_no_audit_event(
    store: Store, make_call
) -> None:
    call = make_call()
    with store.begin() as tx:
        tx.upsert_call(call)
    with store.begin() as tx:
        before = tx.list_audit(call_id=call.id)
        stored_before = tx.get_call(call.id)
    # Only bookkeeping differs (a re-read stamps a new `updated`): not a change.
    reread = call.model_copy(update={"updated": call.updated + timedelta(hours=1)})
    with store.begin() as tx:
        result = tx.upsert_call(reread)
        result_again = tx.upsert_call(call)
    assert not result.created and not result.changed
    assert result.old_version == result.new_version == 1
    assert result.old_hash == result.content_hash
    assert not result_again.changed
    with store.begin() as tx:
        assert tx.list_audit(call_id=call.id) == before
        stored = tx.get_call(call.id)
    assert stored == stored_before


def test_a_changed_call_bumps_the_version_and_audits_the_difference(
    store: Store, make_call
) -> None:
    call = make_call(call_type="incident")  # classified: only then may it wait (USM)
    with store.begin() as tx:
        tx.upsert_call(call)
    changed = call.model_copy(
        update={
            "status": Status.WAITING,
            "waiting_on": WaitingOn.CUSTOMER,
            "comments": [Comment(body="Which model?", created=T0 + timedelta(hours=1))],
        }
    )
    with store.begin() as tx:
        result = tx.upsert_call(changed, instance="hr-jira")
    assert result.changed and not result.created
    assert (result.old_version, result.new_version) == (1, 2)
    assert result.old_hash == content_hash(call) != result.content_hash
    with store.begin() as tx:
        stored = tx.get_call(call.id)
        [event] = tx.list_audit(call_id=call.id, kind="call_updated")
    assert stored is not None and stored.version == 2 and stored.call == changed
    assert stored.updated_at >= stored.created_at
    assert event.before == {"comments": [], "status": "registered", "waiting_on": None}
    assert isinstance(event.after, dict)
    assert set(event.after) == {"comments", "status", "waiting_on"}
    assert event.detail == {
        "version": 2,
        "old_version": 1,
        "content_hash": result.content_hash,
        "old_hash": result.old_hash,
        "process": "recover",  # the call's process, for reports by process
    }


def test_every_real_change_counts_one_version(store: Store, make_call) -> None:
    call = make_call()
    with store.begin() as tx:
        for n in range(5):
            tx.upsert_call(call.model_copy(update={"title": f"title {n % 2}"}))
        stored = tx.get_call(call.id)
    # title 0, 1, 0, 1, 0: five different successive contents
    assert stored is not None and stored.version == 5


def test_the_content_hash_ignores_id_and_updated_only(make_call) -> None:
    call = make_call()
    assert content_hash(call) == content_hash(call.model_copy(update={"id": "call_other"}))
    assert content_hash(call) == content_hash(
        call.model_copy(update={"updated": call.updated + timedelta(days=1)})
    )
    assert content_hash(call) != content_hash(call.model_copy(update={"title": "other"}))
    assert len(content_hash(call)) == 64


def test_a_source_is_linked_as_an_identity_and_found_again(store: Store, make_call) -> None:
    call = make_call(remote_id="10042")
    with store.begin() as tx:
        tx.upsert_call(call)
    with store.begin(readonly=True) as tx:
        found = tx.find_call("hr-jira", "10042")
        missing = tx.find_call("hr-jira", "10043")
        other_instance = tx.find_call("it-snow", "10042")
    assert found is not None and found.id == call.id
    assert missing is None and other_instance is None


def test_unknown_calls_are_none(store: Store) -> None:
    with store.begin() as tx:
        assert tx.get_call("call_nope") is None


def test_list_calls_by_unit(store: Store, make_call) -> None:
    with store.begin() as tx:
        hr = [tx.upsert_call(make_call(unit="hr")).call_id for _ in range(3)]
        it = tx.upsert_call(make_call(unit="it")).call_id
        tx.mark_vanished(hr[1])
    with store.begin() as tx:
        assert {c.id for c in tx.list_calls(unit="hr")} == set(hr)
        assert {c.id for c in tx.list_calls(unit="hr", include_vanished=False)} == {hr[0], hr[2]}
        assert [c.id for c in tx.list_calls(unit="it")] == [it]
        assert len(tx.list_calls(limit=2)) == 2


def test_a_vanished_call_keeps_its_history_and_can_reappear(store: Store, make_call) -> None:
    call = make_call(remote_id="HR-7")
    with store.begin() as tx:
        tx.upsert_call(call)
        assert tx.mark_vanished(call.id, instance="hr-jira") is True
        assert tx.mark_vanished(call.id, instance="hr-jira") is False
        stored = tx.get_call(call.id)
    assert stored is not None and stored.vanished and stored.vanished_at is not None
    assert stored.call == call and stored.version == 1
    with store.begin() as tx:
        result = tx.upsert_call(call)
        again = tx.get_call(call.id)
        kinds = [event.kind for event in tx.list_audit(call_id=call.id)]
    assert not result.changed
    assert again is not None and not again.vanished
    assert kinds == ["call_created", "identity_linked", "call_vanished", "call_reappeared"]


def test_marking_an_unknown_call_vanished_is_an_error(store: Store) -> None:
    with pytest.raises(StoreError, match="no call"), store.begin() as tx:
        tx.mark_vanished("call_nope")


def test_unicode_and_attributes_survive_the_round_trip(store: Store, make_call) -> None:
    call = make_call(
        title="Drucker im 3. Stock — kaputt 🖨️",
        description="Ligne 1\nLigne 2 \u00e9\u00e8 \u4e2d\u6587",
        attributes={"jira": {"labels": ["a", "b"], "nested": {"x": [1, 2.5, None, True]}}},
    )
    with store.begin() as tx:
        tx.upsert_call(call)
    with store.begin() as tx:
        stored = tx.get_call(call.id)
    assert stored is not None and stored.call == call
    assert stored.content_hash == content_hash(call)
