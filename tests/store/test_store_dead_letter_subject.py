"""One open dead letter per (instance, subject, stage); revision 0005 collapses old duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from store.store_revisions import downgrade

from usm_bridge.errors import StoreError
from usm_bridge.store import DeadLetterStatus, SchemaPolicy, Store


def test_a_repeat_failure_updates_the_open_letter_instead_of_adding_one(store: Store) -> None:
    with store.begin() as tx:
        first = tx.record_dead_letter("hr-jira", "map", {"v": 1}, "bad", subject="10042")
    with store.begin() as tx:
        again = tx.record_dead_letter("hr-jira", "map", {"v": 2}, "still bad", subject="10042")
        third = tx.record_dead_letter("hr-jira", "map", {"v": 3}, "worse", subject="10042")
    assert first.new and not again.new and not third.new
    assert first.letter.id == again.letter.id == third.letter.id
    letter = third.letter
    assert letter.attempts == 3 and letter.subject == "10042"
    # The newest sighting wins; the first one stays as created_at.
    assert letter.payload == {"v": 3} and letter.reason == "worse"
    assert letter.created_at == first.letter.created_at
    assert letter.last_seen >= again.letter.last_seen > first.letter.last_seen
    with store.begin(readonly=True) as tx:
        assert [d.id for d in tx.list_dead_letters(status=None)] == [letter.id]
        added = [e for e in tx.list_audit(instance="hr-jira") if e.kind == "dead_letter_added"]
    assert len(added) == 1  # audited once, when it was opened


def test_other_stages_instances_and_subjects_get_their_own_letters(store: Store) -> None:
    with store.begin() as tx:
        results = [
            tx.record_dead_letter("hr-jira", "map", {}, "x", subject="1"),
            tx.record_dead_letter("hr-jira", "store", {}, "x", subject="1"),
            tx.record_dead_letter("it-snow", "map", {}, "x", subject="1"),
            tx.record_dead_letter("hr-jira", "map", {}, "x", subject="2"),
            # Without a subject nothing can be merged: each failure is a letter of its own.
            tx.record_dead_letter("hr-jira", "map", {}, "x"),
            tx.record_dead_letter("hr-jira", "map", {}, "x"),
        ]
    assert [r.new for r in results] == [True] * 6
    assert len({r.letter.id for r in results}) == 6


def test_a_resolved_letter_does_not_absorb_a_new_failure(store: Store) -> None:
    with store.begin() as tx:
        old = tx.record_dead_letter("hr-jira", "map", {}, "bad", subject="7").letter
        tx.resolve_dead_letter(old.id, resolution="fixed")
    with store.begin() as tx:
        fresh = tx.record_dead_letter("hr-jira", "map", {}, "bad again", subject="7")
    assert fresh.new and fresh.letter.id != old.id and fresh.letter.attempts == 1
    with store.begin(readonly=True) as tx:
        resolved = tx.get_dead_letter(old.id)
    assert resolved is not None and resolved.status is DeadLetterStatus.RESOLVED


def test_add_dead_letter_is_the_same_upsert(store: Store) -> None:
    with store.begin() as tx:
        a = tx.add_dead_letter("hr-jira", "store", {"n": 1}, "bad", subject="9")
        b = tx.add_dead_letter("hr-jira", "store", {"n": 2}, "bad", subject="9", attempts=2)
    assert a.id == b.id and b.attempts == 3 and b.payload == {"n": 2}


def test_a_dead_letter_needs_at_least_one_attempt(store: Store) -> None:
    with pytest.raises(StoreError, match="at least one attempt"), store.begin() as tx:
        tx.record_dead_letter("hr-jira", "map", {}, "bad", subject="1", attempts=0)


def test_a_retry_that_fails_again_moves_last_seen(store: Store) -> None:
    with store.begin() as tx:
        letter = tx.record_dead_letter("hr-jira", "map", {}, "bad", subject="1").letter
    with store.begin() as tx:
        retried = tx.increment_dead_letter_attempts(letter.id, reason="still")
    assert retried.attempts == 2 and retried.last_seen > letter.last_seen
    assert retried.created_at == letter.created_at


def test_two_units_of_work_failing_on_one_record_leave_one_letter(store_url: str) -> None:
    """The upsert is one statement: concurrent sightings merge instead of colliding."""
    with Store.open(store_url) as first, Store.open(store_url) as second:
        with first.begin() as tx:
            opened = tx.record_dead_letter("hr-jira", "map", {}, "a", subject="r1")
        with second.begin() as tx:
            seen = tx.record_dead_letter("hr-jira", "map", {}, "b", subject="r1")
        assert opened.new and not seen.new and seen.letter.id == opened.letter.id
        with first.begin(readonly=True) as tx:
            (letter,) = tx.list_dead_letters()
    assert letter.attempts == 2 and letter.reason == "b"


def _insert_0004_letter(
    conn: sa.Connection,
    *,
    stage: str,
    payload: object,
    at: datetime,
    attempts: int = 1,
    outbox_id: int | None = None,
    status: str = "open",
) -> int:
    table = sa.table(
        "dead_letters",
        sa.column("id", sa.Integer()),
        sa.column("instance", sa.String()),
        sa.column("stage", sa.String()),
        sa.column("payload", sa.JSON()),
        sa.column("reason", sa.Text()),
        sa.column("attempts", sa.Integer()),
        sa.column("status", sa.String()),
        sa.column("outbox_id", sa.Integer()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    if conn.dialect.name == "sqlite":
        at = at.replace(tzinfo=None)
    result = conn.execute(
        table.insert()
        .values(
            instance="hr-jira",
            stage=stage,
            payload=payload,
            reason=f"failure at {at:%H:%M}",
            attempts=attempts,
            status=status,
            outbox_id=outbox_id,
            created_at=at,
            updated_at=at,
        )
        .returning(table.c.id)
    )
    return int(result.scalar_one())


def test_revision_0005_collapses_the_duplicates_a_store_of_0004_holds(store_url: str) -> None:
    """Every failed re-read used to add a row: the upgrade keeps one open letter per record."""
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with Store.open(store_url) as store:
        downgrade(store, "0004")
        with store.engine.begin() as conn:
            record = {"remote_id": "10042", "data": {"n": 1}}
            dupes = [
                _insert_0004_letter(
                    conn,
                    stage="map",
                    payload={**record, "data": {"n": i}},
                    at=t0 + timedelta(minutes=5 * i),
                    attempts=1 + (i == 2),
                )
                for i in range(3)
            ]
            other_stage = _insert_0004_letter(conn, stage="store", payload=record, at=t0)
            other_record = _insert_0004_letter(
                conn, stage="map", payload={"remote_id": "7", "data": {}}, at=t0
            )
            no_subject = [
                _insert_0004_letter(conn, stage="map", payload="not a record", at=t0)
                for _ in range(2)
            ]
            resolved = _insert_0004_letter(
                conn, stage="map", payload=record, at=t0, status="resolved"
            )
    with Store.open(store_url, schema=SchemaPolicy.UPGRADE) as store:  # back to the head
        with store.begin(readonly=True) as tx:
            open_ids = [d.id for d in tx.list_dead_letters()]
            keeper = tx.get_dead_letter(dupes[0])
            merged = [tx.get_dead_letter(i) for i in dupes[1:]]
            untouched = tx.get_dead_letter(resolved)
        with store.begin() as tx:  # and the next failure of the record joins the keeper
            next_failure = tx.record_dead_letter(
                "hr-jira", "map", {"remote_id": "10042"}, "again", subject="10042"
            )
    assert open_ids == [dupes[0], other_stage, other_record, *no_subject]
    assert keeper is not None and keeper.subject == "10042"
    # The oldest letter keeps its first sighting, takes the newest payload and reason, counts
    # every attempt and was last seen when the newest was.
    assert keeper.created_at == t0 and keeper.last_seen == t0 + timedelta(minutes=10)
    assert keeper.payload == {"remote_id": "10042", "data": {"n": 2}}
    assert keeper.reason == "failure at 12:10" and keeper.attempts == 4
    for letter in merged:
        assert letter is not None and letter.status is DeadLetterStatus.RESOLVED
        assert letter.resolution is not None and f"dead letter {dupes[0]}" in letter.resolution
    assert untouched is not None and untouched.resolution is None
    assert not next_failure.new and next_failure.letter.id == dupes[0]
    assert next_failure.letter.attempts == 5


def test_a_push_letter_names_its_outbox_item_as_subject(store: Store, make_call) -> None:
    with store.begin() as tx:
        call = tx.upsert_call(make_call())
        item = tx.enqueue("it-snow", call.call_id, "update", {"title": "x"}, "k1").item
        letter = tx.mark_outbox_dead(item.id, "403 forbidden")
    assert letter.subject == f"outbox:{item.id}" and letter.attempts == 1
