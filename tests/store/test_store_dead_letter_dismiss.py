"""Dismissing a dead letter: kept, audited with who and why, no longer open (revision 0006)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from store.store_revisions import downgrade

from usm_bridge.dead_letters import dismiss_dead_letters
from usm_bridge.errors import StoreError
from usm_bridge.store import DeadLetterStatus, SchemaPolicy, Store
from usm_bridge.sync.metrics import BridgeMetrics
from usm_bridge.sync.status import store_counts


def _open_gauge(counts: dict[str, int], instance: str) -> float:
    """What /metrics says for the instance's open letters, fed the way the daemon feeds it."""
    metrics = BridgeMetrics()
    metrics.set_store_gauges(instance, backlog=0, open_dead_letters=counts.get(instance, 0))
    text = generate_latest(metrics.registry).decode()
    return next(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "usm_bridge_dead_letters_open" and s.labels == {"instance": instance}
    )


def test_a_dismissed_letter_is_kept_audited_and_no_longer_open(store: Store) -> None:
    with store.begin() as tx:
        gone = tx.record_dead_letter("hr-jira", "map", {"v": 1}, "bad", subject="10042").letter
        kept = tx.record_dead_letter("hr-jira", "map", {"v": 2}, "bad", subject="10043").letter
    with store.begin() as tx:
        dismissed = tx.dismiss_dead_letter(gone.id, reason="deleted in Jira by HR", actor="alice")
    assert dismissed.status is DeadLetterStatus.DISMISSED
    assert dismissed.resolution == "dismissed by alice: deleted in Jira by HR"
    assert dismissed.resolved_at is not None and dismissed.payload == {"v": 1}
    with store.begin(readonly=True) as tx:
        assert [d.id for d in tx.list_dead_letters()] == [kept.id]
        assert [d.id for d in tx.list_dead_letters(status="dismissed")] == [gone.id]
        assert tx.count_dead_letters() == {"hr-jira": 1}
        counts = store_counts(tx)
        (event,) = [e for e in tx.list_audit() if e.kind == "dead_letter_dismissed"]
    assert counts.dead_letters == {"hr-jira": 1}  # status's backlog and the daemon's gauge
    assert _open_gauge(dict(counts.dead_letters), "hr-jira") == 1
    assert event.actor == "alice" and event.instance == "hr-jira"
    assert event.detail == {
        "dead_letter_id": gone.id,
        "stage": "map",
        "subject": "10042",
        "reason": "deleted in Jira by HR",
    }


def test_a_closed_letter_cannot_be_dismissed_and_a_dismissal_is_not_undone(store: Store) -> None:
    with store.begin() as tx:
        done = tx.record_dead_letter("hr-jira", "map", {}, "bad", subject="1").letter
        tx.resolve_dead_letter(done.id, resolution="fixed")
        dropped = tx.record_dead_letter("hr-jira", "map", {}, "bad", subject="2").letter
        tx.dismiss_dead_letter(dropped.id, reason="test data", actor="bob")
    for letter_id, status in ((done.id, "resolved"), (dropped.id, "dismissed")):
        refused = f"dead letter {letter_id} is {status}, not open"
        with pytest.raises(StoreError, match=refused), store.begin() as tx:
            tx.dismiss_dead_letter(letter_id, reason="again", actor="bob")
    with store.begin() as tx:  # a late retry result does not reopen or resolve it
        after = tx.resolve_dead_letter(dropped.id, resolution="stored on retry")
    assert after.status is DeadLetterStatus.DISMISSED
    assert after.resolution == "dismissed by bob: test data"


@pytest.mark.parametrize(
    ("reason", "actor", "message"),
    [(" ", "alice", "needs a reason"), ("why", "", "needs who"), ("why", "x" * 101, "needs who")],
)
def test_a_dismissal_needs_a_reason_and_someone(
    store: Store, reason: str, actor: str, message: str
) -> None:
    with store.begin() as tx:
        letter = tx.record_dead_letter("hr-jira", "map", {}, "bad", subject="1").letter
    with pytest.raises(StoreError, match=message), store.begin() as tx:
        tx.dismiss_dead_letter(letter.id, reason=reason, actor=actor)
    with store.begin(readonly=True) as tx:
        assert tx.list_dead_letters()[0].status is DeadLetterStatus.OPEN


def test_the_same_record_failing_again_opens_a_new_letter(store: Store) -> None:
    with store.begin() as tx:
        old = tx.record_dead_letter("hr-jira", "map", {}, "bad", subject="7").letter
        tx.dismiss_dead_letter(old.id, reason="ignored", actor="alice")
    with store.begin() as tx:
        fresh = tx.record_dead_letter("hr-jira", "map", {}, "bad again", subject="7")
    assert fresh.new and fresh.letter.id != old.id


def test_unknown_or_closed_ids_dismiss_nothing(store: Store) -> None:
    with store.begin() as tx:
        a = tx.record_dead_letter("hr-jira", "map", {}, "bad", subject="1").letter
        b = tx.record_dead_letter("hr-jira", "map", {}, "bad", subject="2").letter
        tx.resolve_dead_letter(b.id, resolution="fixed")
    with pytest.raises(StoreError, match=r"no dead letter with id 998, 999; nothing dismissed"):
        dismiss_dead_letters(store, reason="x", by="alice", ids=[999, a.id, 998])
    with pytest.raises(StoreError, match=rf"not open: dead letter {b.id} \(resolved\)"):
        dismiss_dead_letters(store, reason="x", by="alice", ids=[a.id, b.id])
    with store.begin(readonly=True) as tx:
        assert [d.id for d in tx.list_dead_letters()] == [a.id]
        assert not [e for e in tx.list_audit() if e.kind == "dead_letter_dismissed"]


def test_dismissing_by_filter_takes_only_the_open_letters_it_selects(store: Store) -> None:
    with store.begin() as tx:
        hr_map = tx.record_dead_letter("hr-jira", "map", {}, "x", subject="1").letter
        hr_store = tx.record_dead_letter("hr-jira", "store", {}, "x", subject="1").letter
        it_map = tx.record_dead_letter("it-snow", "map", {}, "x", subject="1").letter
    done = dismiss_dead_letters(store, reason="old", by="carol", instance="hr-jira", stage="map")
    assert [d.id for d in done] == [hr_map.id]
    done = dismiss_dead_letters(store, reason="old", by="carol", instance="hr-jira")
    assert [d.id for d in done] == [hr_store.id]
    with store.begin(readonly=True) as tx:
        assert [d.id for d in tx.list_dead_letters()] == [it_map.id]
    with pytest.raises(ValueError, match="not both"):
        dismiss_dead_letters(store, reason="x", by="c", ids=[it_map.id], instance="it-snow")


def test_revision_0006_allows_dismissed_and_its_downgrade_keeps_the_letters(
    store_url: str,
) -> None:
    with Store.open(store_url) as store:
        with store.begin() as tx:
            letter = tx.record_dead_letter("hr-jira", "map", {}, "bad", subject="1").letter
            tx.dismiss_dead_letter(letter.id, reason="noise", actor="alice")
        downgrade(store, "0005")
        with store.engine.begin() as conn:
            row = conn.execute(
                sa.text("SELECT status, resolution FROM dead_letters WHERE id = :i"),
                {"i": letter.id},
            ).one()
            assert tuple(row) == ("resolved", "dismissed by alice: noise")
    with Store.open(store_url, schema=SchemaPolicy.UPGRADE) as store:  # back to the head
        with store.begin() as tx:
            again = tx.record_dead_letter("hr-jira", "map", {}, "bad", subject="2").letter
            tx.dismiss_dead_letter(again.id, reason="noise", actor="alice")
        # The CHECK constraint still refuses anything else, and the partial unique index that
        # merges repeat failures survived the table copy.
        with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE dead_letters SET status = 'lost'"))
        with store.begin() as tx:
            first = tx.record_dead_letter("hr-jira", "map", {}, "bad", subject="3")
            repeat = tx.record_dead_letter("hr-jira", "map", {}, "bad", subject="3")
        assert first.new and not repeat.new and repeat.letter.id == first.letter.id
