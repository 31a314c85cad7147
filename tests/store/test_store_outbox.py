"""The outbox: idempotent enqueue, claim with a lease, done, retry, dead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from usm_bridge.errors import StoreError
from usm_bridge.store import (
    DeadLetterStage,
    OutboxOperation,
    OutboxStatus,
    Store,
)


@pytest.fixture
def call_id(store: Store, make_call) -> str:
    with store.begin() as tx:
        return tx.upsert_call(make_call()).call_id


def test_enqueue_is_idempotent_by_key(store: Store, call_id: str) -> None:
    payload = {"fields": {"summary": "Laptop", "labels": ["usm"]}, "status": None}
    with store.begin() as tx:
        first = tx.enqueue("it-snow", call_id, "create", payload, f"{call_id}:it-snow:create")
    with store.begin() as tx:
        second = tx.enqueue(
            "it-snow", call_id, OutboxOperation.CREATE, {"other": 1}, first.item.idempotency_key
        )
        items = tx.list_outbox()
    assert first.created and not second.created
    assert second.item == first.item  # the original request is kept as it was
    assert [item.id for item in items] == [first.item.id]
    item = first.item
    assert item.status is OutboxStatus.PENDING and item.attempts == 0
    assert item.operation is OutboxOperation.CREATE and item.payload == payload
    assert item.next_attempt_at.tzinfo is UTC


def test_a_key_reused_for_another_write_is_refused(store: Store, call_id: str) -> None:
    with store.begin() as tx:
        tx.enqueue("it-snow", call_id, "create", {}, "key-1")
    with pytest.raises(StoreError, match="already used"), store.begin() as tx:
        tx.enqueue("it-snow", call_id, "update", {}, "key-1")


def test_unknown_operations_are_refused(store: Store, call_id: str) -> None:
    with pytest.raises(ValueError), store.begin() as tx:
        tx.enqueue("it-snow", call_id, "delete", {}, "key-1")


def test_claim_takes_due_items_oldest_first_and_leases_them(store: Store, call_id: str) -> None:
    now = datetime.now(UTC)
    with store.begin() as tx:
        late = tx.enqueue(
            "it-snow", call_id, "update", {"n": 2}, "k2", not_before=now - timedelta(seconds=10)
        ).item
        early = tx.enqueue(
            "it-snow", call_id, "update", {"n": 1}, "k1", not_before=now - timedelta(minutes=1)
        ).item
        tx.enqueue(
            "it-snow", call_id, "update", {"n": 3}, "k3", not_before=now + timedelta(hours=1)
        )
        tx.enqueue(
            "fm-mail", call_id, "comment", {"n": 4}, "k4", not_before=now - timedelta(hours=1)
        )
    with store.begin() as tx:
        claimed = tx.claim_outbox(instance="it-snow", now=now, lease=timedelta(minutes=5))
    assert [item.id for item in claimed] == [early.id, late.id]
    assert all(item.attempts == 1 for item in claimed)
    assert all(item.next_attempt_at == now + timedelta(minutes=5) for item in claimed)
    with store.begin() as tx:
        # Leased: not due again for another worker until the lease runs out.
        assert tx.claim_outbox(instance="it-snow", now=now + timedelta(minutes=1)) == []
        again = tx.claim_outbox(instance="it-snow", now=now + timedelta(minutes=6))
    # Same lease, same due time: then the order they were enqueued in.
    assert [item.id for item in again] == [late.id, early.id]
    assert all(item.attempts == 2 for item in again)


def test_claim_respects_the_limit_and_all_instances(store: Store, call_id: str) -> None:
    with store.begin() as tx:
        for n in range(5):
            tx.enqueue(f"inst-{n % 2}", call_id, "update", {"n": n}, f"k{n}")
    with store.begin() as tx:
        assert len(tx.claim_outbox(limit=3)) == 3
        assert len(tx.claim_outbox(limit=3)) == 2
        assert tx.claim_outbox() == []


def test_done_retry_dead_flow(store: Store, call_id: str) -> None:
    with store.begin() as tx:
        ok = tx.enqueue("it-snow", call_id, "create", {"n": 1}, "ok").item
        flaky = tx.enqueue("it-snow", call_id, "update", {"n": 2}, "flaky").item
        broken = tx.enqueue("it-snow", call_id, "comment", {"body": "hi"}, "broken").item
        now = datetime.now(UTC)
        assert len(tx.claim_outbox(now=now)) == 3

    with store.begin() as tx:
        done = tx.mark_outbox_done(ok.id)
        assert tx.mark_outbox_done(ok.id) == done  # idempotent
        retry_at = now + timedelta(seconds=30)
        failed = tx.mark_outbox_failed(flaky.id, "HTTP 503", retry_at=retry_at)
        letter = tx.mark_outbox_dead(broken.id, "HTTP 400: field 'x' unknown")
    assert done.status is OutboxStatus.DONE
    assert failed.status is OutboxStatus.PENDING and failed.last_error == "HTTP 503"
    assert failed.next_attempt_at == retry_at

    assert letter.stage is DeadLetterStage.PUSH and letter.outbox_id == broken.id
    assert letter.call_id == call_id and letter.attempts == 1
    assert letter.reason == "HTTP 400: field 'x' unknown"
    assert letter.payload == {
        "outbox_id": broken.id,
        "operation": "comment",
        "call_id": call_id,
        "target_instance": "it-snow",
        "idempotency_key": "broken",
        "payload": {"body": "hi"},
    }

    with store.begin() as tx:
        assert tx.claim_outbox(now=now + timedelta(seconds=10)) == []
        [due] = tx.claim_outbox(now=retry_at)
        assert due.id == flaky.id and due.attempts == 2
        dead = tx.get_outbox_item(broken.id)
        assert dead is not None and dead.status is OutboxStatus.DEAD
        assert tx.mark_outbox_dead(broken.id, "again") == letter  # idempotent
        assert tx.list_outbox(status="dead") == [dead]
        assert [i.id for i in tx.list_outbox(status=OutboxStatus.DONE)] == [ok.id]


def test_wrong_transitions_are_refused(store: Store, call_id: str) -> None:
    with store.begin() as tx:
        done = tx.enqueue("it-snow", call_id, "create", {}, "a").item
        dead = tx.enqueue("it-snow", call_id, "update", {}, "b").item
        tx.mark_outbox_done(done.id)
        tx.mark_outbox_dead(dead.id, "gone")
    for action in (
        lambda tx: tx.mark_outbox_failed(done.id, "x", retry_at=datetime.now(UTC)),
        lambda tx: tx.mark_outbox_dead(done.id, "x"),
        lambda tx: tx.requeue_outbox(done.id),
        lambda tx: tx.mark_outbox_done(dead.id),
        lambda tx: tx.mark_outbox_done(999_999),
    ):
        with pytest.raises(StoreError), store.begin() as tx:
            action(tx)


def test_a_dead_item_can_be_requeued(store: Store, call_id: str) -> None:
    with store.begin() as tx:
        item = tx.enqueue("it-snow", call_id, "update", {}, "k").item
        tx.mark_outbox_dead(item.id, "remote down for a week")
    with store.begin() as tx:
        requeued = tx.requeue_outbox(item.id)
        [claimed] = tx.claim_outbox()
    assert requeued.status is OutboxStatus.PENDING
    assert claimed.id == item.id


def test_naive_timestamps_are_refused(store: Store, call_id: str) -> None:
    with pytest.raises(StoreError, match="time-zone aware"), store.begin() as tx:
        tx.enqueue("it-snow", call_id, "update", {}, "k", not_before=datetime(2026, 1, 1))


def test_the_outbox_needs_a_stored_call(store: Store) -> None:
    with pytest.raises(StoreError), store.begin() as tx:
        tx.enqueue("it-snow", "call_missing", "create", {}, "k")
