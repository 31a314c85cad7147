"""Dead letters keep the exact raw payload; the audit log cannot be rewritten."""

from __future__ import annotations

import json
from datetime import UTC

import pytest
import sqlalchemy as sa

from usm_bridge.errors import StoreError
from usm_bridge.store import DeadLetterStage, DeadLetterStatus, Store

RAW = {
    "id": "10042",
    "key": "HR-42",
    "fields": {
        "summary": "Ärger mit dem Drucker — 打印机 🖨️ \"quoted\" 'single' \\ backslash",
        "description": "line 1\nline 2\ttab \u0000 nul \u2028 separator",
        "labels": ["ünïcödé", "", "x" * 2_000],
        "customfield_10010": {
            "value": None,
            "nested": [[1, 2.5, -0.0, 1e-7], {"deep": {"er": True}}],
        },
        "big": 2**62,
        "float": 3.141592653589793,
        "empty": {},
    },
    "zeta-key-before-alpha": 1,
    "alpha": 2,
}


def test_a_dead_letter_keeps_the_exact_raw_payload(store: Store) -> None:
    with store.begin() as tx:
        added = tx.add_dead_letter("hr-jira", "map", RAW, "no value table entry for 'Blocker'")
    with store.begin() as tx:
        letter = tx.get_dead_letter(added.id)
    assert letter is not None
    assert letter.payload == RAW
    # Same JSON text, key order included: what was received is what is kept.
    assert json.dumps(letter.payload) == json.dumps(RAW)
    assert letter.stage is DeadLetterStage.MAP and letter.status is DeadLetterStatus.OPEN
    assert letter.reason == "no value table entry for 'Blocker'"
    assert letter.attempts == 1 and letter.created_at.tzinfo is UTC


@pytest.mark.parametrize("payload", ["a plain string", ["a", 1], 0, None, {"k": "ü"}])
def test_any_json_value_can_be_dead_lettered(store: Store, payload) -> None:
    with store.begin() as tx:
        letter = tx.add_dead_letter("mail", "store", payload, "broken")
    with store.begin() as tx:
        again = tx.get_dead_letter(letter.id)
    assert again is not None and again.payload == payload


def test_list_increment_and_resolve_dead_letters(store: Store) -> None:
    with store.begin() as tx:
        a = tx.add_dead_letter("hr-jira", "map", {"n": 1}, "bad")
        b = tx.add_dead_letter("it-snow", DeadLetterStage.STORE, {"n": 2}, "worse")
        c = tx.add_dead_letter("hr-jira", "map", {"n": 3}, "bad too")
    with store.begin() as tx:
        retried = tx.increment_dead_letter_attempts(a.id, reason="still bad")
        unchanged_reason = tx.increment_dead_letter_attempts(a.id)
        resolved = tx.resolve_dead_letter(b.id, resolution="mapping fixed", actor="admin")
        assert tx.resolve_dead_letter(b.id) == resolved  # idempotent
    assert retried.attempts == 2 and retried.reason == "still bad"
    assert unchanged_reason.attempts == 3 and unchanged_reason.reason == "still bad"
    assert resolved.status is DeadLetterStatus.RESOLVED and resolved.resolved_at is not None
    assert resolved.resolution == "mapping fixed"
    with store.begin() as tx:
        assert [d.id for d in tx.list_dead_letters()] == [a.id, c.id]
        assert [d.id for d in tx.list_dead_letters(status=None)] == [a.id, b.id, c.id]
        assert [d.id for d in tx.list_dead_letters(status="resolved")] == [b.id]
        assert [d.id for d in tx.list_dead_letters(instance="it-snow", status=None)] == [b.id]
        assert [d.id for d in tx.list_dead_letters(stage="map", limit=1)] == [a.id]
        assert tx.get_dead_letter(999_999) is None
        kinds = [event.kind for event in tx.list_audit(instance="it-snow")]
    assert kinds == ["dead_letter_added", "dead_letter_resolved"]
    with pytest.raises(StoreError, match="no dead letter"), store.begin() as tx:
        tx.increment_dead_letter_attempts(999_999)


def test_append_and_list_audit_events(store: Store, make_call) -> None:
    with store.begin() as tx:
        call_id = tx.upsert_call(make_call()).call_id
        first = tx.append_audit(
            "route_evaluated",
            call_id=call_id,
            instance="hr-jira",
            actor="router",
            detail={"route": "hr-to-it", "matched": True},
        )
        second = tx.append_audit("cycle_finished", detail={"records": 3})
    assert first.at.tzinfo is UTC and first.detail == {"route": "hr-to-it", "matched": True}
    assert first.before is None and first.after is None
    with store.begin() as tx:
        assert tx.list_audit(kind="route_evaluated") == [first]
        assert tx.list_audit(after_id=first.id) == [second]
        everything = tx.list_audit()
        assert [e.kind for e in tx.list_audit(call_id=call_id)] == [
            "call_created",
            "route_evaluated",
        ]
        assert tx.list_audit(limit=1) == everything[:1]


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET kind = 'rewritten'", "DELETE FROM audit_log"],
    ids=["update", "delete"],
)
def test_the_database_refuses_to_change_the_audit_log(store: Store, make_call, statement) -> None:
    with store.begin() as tx:
        tx.upsert_call(make_call())
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.engine.begin() as conn:
        conn.execute(sa.text(statement))
    with store.begin() as tx:
        [event] = tx.list_audit()
    assert event.kind == "call_created"


def test_the_append_only_refusal_is_a_store_error_through_the_api(store: Store) -> None:
    with store.begin() as tx:
        tx.append_audit("note")
    with pytest.raises(StoreError, match="append-only"), store.begin() as tx:
        tx.connection.execute(sa.text("DELETE FROM audit_log"))


@pytest.mark.postgres
def test_postgresql_refuses_to_truncate_the_audit_log(fresh_postgres_url: str) -> None:
    with Store.open(fresh_postgres_url) as store:
        with store.begin() as tx:
            tx.append_audit("note")
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE audit_log"))
        with store.begin() as tx:
            assert len(tx.list_audit()) == 1
