"""Revision 0014: ``queue_sends``, the tasks sent to the workers' RabbitMQ queues. The oldest
of the N tasks waiting in a queue is its N-th newest send not expired (a queue is first in,
first out); fewer recorded: the oldest of them, flagged as a lower bound; a send deletes its
queue's expired rows; the revision downgrades without the table."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from store.store_revisions import downgrade, upgraded_keeping

from usm_bridge.model import Call
from usm_bridge.store import Store
from usm_bridge.workers.send_log import QueueAge, oldest_recorded, store_recorder

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
MakeCall = Callable[..., Call]


def _rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM queue_sends")).scalar_one())


def test_the_oldest_waiting_task_is_the_nth_newest_send_not_expired(store_url: str) -> None:
    with Store.open(store_url) as store:
        with store.begin() as tx:
            for seconds in (0, 10, 20, 30):  # four sends, each expiring 100 s after it
                at = T0 + timedelta(seconds=seconds)
                tx.record_queue_send("tool.a", sent_at=at, expires_at=at + timedelta(seconds=100))
            tx.record_queue_send("tool.b", sent_at=T0, expires_at=T0 + timedelta(seconds=100))
        now = T0 + timedelta(seconds=40)
        with store.begin(readonly=True) as tx:
            assert tx.nth_newest_send("tool.a", 1, now=now) == (T0 + timedelta(seconds=30), 1)
            assert tx.nth_newest_send("tool.a", 3, now=now) == (T0 + timedelta(seconds=10), 3)
            assert tx.nth_newest_send("tool.a", 9, now=now) == (T0, 4)  # fewer recorded
            assert tx.nth_newest_send("tool.c", 1, now=now) == (None, 0)
            # Expired tasks wait no more (RabbitMQ drops them at the head).
            late = T0 + timedelta(seconds=115)
            assert tx.nth_newest_send("tool.a", 9, now=late) == (T0 + timedelta(seconds=20), 2)
        # As status reads it: seconds, and whether all the waiting tasks were recorded.
        assert oldest_recorded(store, "tool.a", 2, now=now.timestamp()) == QueueAge(20.0)
        assert oldest_recorded(store, "tool.a", 6, now=now.timestamp()) == QueueAge(40.0, False)
        assert oldest_recorded(store, "tool.a", 0, now=now.timestamp()) is None

        # A send clears its queue's expired rows (and only its queue's).
        record = store_recorder(store)
        record("tool.a", (T0 + timedelta(seconds=125)).timestamp(), 60.0)
        with store.begin(readonly=True) as tx:
            moment = T0 + timedelta(seconds=126)
            assert tx.nth_newest_send("tool.a", 9, now=moment) == (
                T0 + timedelta(seconds=30), 2,
            )  # fmt: skip
        # a's three that expired by 125 s went with the send; b's, expired too, is b's.
        assert _rows(store) == 2 + 1


def test_a_send_the_store_cannot_record_is_logged_and_not_raised(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.open(store_url)
    store.close()
    caplog.set_level(logging.WARNING, logger="usm_bridge.workers")
    store_recorder(store)("tool.a", T0.timestamp(), 60.0)  # the task went: only logged
    (warned,) = [r for r in caplog.records if getattr(r, "event", None) == "send_unrecorded"]
    assert warned.queue == "tool.a"  # type: ignore[attr-defined]
    assert "could not record a task sent to tool.a" in warned.getMessage()
    assert "closed" in warned.getMessage()


def test_revision_0014_adds_the_table_and_downgrades_without_it(
    store_url: str, make_call: MakeCall
) -> None:
    call = make_call("HR-1")
    with Store.open(store_url) as store:
        with store.begin() as tx:
            tx.upsert_call(call, instance="hr-jira")
        downgrade(store, "0013")
        assert "queue_sends" not in sa.inspect(store.engine).get_table_names()
    with upgraded_keeping(store_url, call) as store:
        assert "queue_sends" in sa.inspect(store.engine).get_table_names()
        assert _rows(store) == 0
