"""Units of work: all or nothing, visible to other processes once committed, safe in parallel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta

import pytest

from usm_bridge.errors import StoreError
from usm_bridge.store import Store


class Boom(Exception):
    pass


def test_an_exception_rolls_back_everything(store: Store, make_call) -> None:
    call = make_call(remote_id="HR-1")
    with pytest.raises(Boom), store.begin() as tx:
        tx.upsert_call(call)
        tx.link_identity(call.id, "it-snow", "a1")
        tx.enqueue("it-snow", call.id, "create", {}, "k")
        tx.add_dead_letter("hr-jira", "map", {"raw": 1}, "bad")
        tx.set_cursor("hr-jira", "c1")
        tx.append_audit("note")
        raise Boom
    with store.begin() as tx:
        assert tx.get_call(call.id) is None
        assert tx.find_identity("it-snow", "a1") is None
        assert tx.find_identity("hr-jira", "HR-1") is None
        assert tx.list_outbox() == []
        assert tx.list_dead_letters(status=None) == []
        assert tx.get_cursor("hr-jira") is None
        assert tx.list_audit() == []


def test_a_store_error_rolls_back_the_whole_unit(store: Store, make_call) -> None:
    call = make_call()
    with pytest.raises(StoreError), store.begin() as tx:
        tx.upsert_call(call)
        tx.set_cursor("hr-jira", "c1")
        tx.enqueue("it-snow", "call_missing", "create", {}, "k")  # foreign key fails
    with store.begin() as tx:
        assert tx.get_call(call.id) is None and tx.get_cursor("hr-jira") is None


def test_a_transaction_cannot_be_used_after_it_ended(store: Store) -> None:
    with store.begin() as tx:
        pass
    with pytest.raises(StoreError, match="has ended"):
        tx.get_cursor("x")


def test_another_store_sees_committed_data_only(store_url: str, make_call) -> None:
    call = make_call()
    with Store.open(store_url) as writer, Store.open(store_url) as reader:
        with writer.begin() as tx:
            tx.upsert_call(call)
            with reader.begin(readonly=True) as peek:
                assert peek.get_call(call.id) is None
        with reader.begin(readonly=True) as peek:
            stored = peek.get_call(call.id)
    assert stored is not None and stored.call == call


_CHILD = textwrap.dedent(
    """
    import json, os, sys
    from usm_bridge.store import Store

    with Store.open(os.environ["USM_TEST_STORE_URL"]) as store, store.begin() as tx:
        stored = tx.get_call(sys.argv[1])
        result = {
            "title": stored.call.title if stored else None,
            "version": stored.version if stored else None,
            "cursor": tx.get_cursor("hr-jira"),
            "pending": [item.idempotency_key for item in tx.list_outbox(status="pending")],
        }
        if sys.argv[2] == "write":
            tx.set_cursor("hr-jira", "from-the-child")
    print(json.dumps(result))
    """
)


def _child(url: str, call_id: str, mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, call_id, mode],
        env={**os.environ, "USM_TEST_STORE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_second_process_sees_committed_data(store_url: str, make_call) -> None:
    call = make_call(title="Committed in the parent")
    with Store.open(store_url) as store:
        with store.begin() as tx:
            tx.upsert_call(call)
            tx.upsert_call(call.model_copy(update={"title": "Second version"}))
            tx.set_cursor("hr-jira", "cursor-1")
            tx.enqueue("it-snow", call.id, "create", {}, "key-1")
        seen = _child(store_url, call.id, "write")
        assert seen == {
            "title": "Second version",
            "version": 2,
            "cursor": "cursor-1",
            "pending": ["key-1"],
        }
        # ...and the parent sees what the child committed.
        with store.begin() as tx:
            assert tx.get_cursor("hr-jira") == "from-the-child"


def test_parallel_writers_all_succeed(store: Store, make_call) -> None:
    """Writers queue on the lock (SQLite) or row locks (PostgreSQL) instead of failing."""
    with store.begin() as tx:
        call_id = tx.upsert_call(make_call()).call_id
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for n in range(15):
                with store.begin() as tx:
                    tx.enqueue("it-snow", call_id, "update", {"n": n}, f"w{worker}-{n}")
                    tx.append_audit("note", detail={"worker": worker})
                    tx.set_cursor(f"inst-{worker}", str(n))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with store.begin() as tx:
        assert len(tx.list_outbox()) == 60
        assert {c.cursor for c in tx.list_cursors()} == {"14"}


def test_sqlite_writers_wait_for_each_other_and_readers_never_do(tmp_path, make_call) -> None:
    url = f"sqlite:///{tmp_path / 'locks.db'}"
    with (
        Store.open(url) as first,
        Store.open(url, busy_timeout=0.2) as impatient,
        first.begin() as tx,
    ):
        tx.upsert_call(make_call())
        with impatient.begin(readonly=True) as reader:
            assert reader.list_calls() == []
        with pytest.raises(StoreError, match="locked"), impatient.begin():
            pass


@pytest.mark.postgres
def test_postgresql_workers_claim_disjoint_items(fresh_postgres_url: str, make_call) -> None:
    with Store.open(fresh_postgres_url) as one, Store.open(fresh_postgres_url) as two:
        with one.begin() as tx:
            call_id = tx.upsert_call(make_call()).call_id
            for n in range(4):
                tx.enqueue("it-snow", call_id, "update", {"n": n}, f"k{n}")
        now = datetime.now(UTC) + timedelta(seconds=1)
        with one.begin() as first:
            mine = first.claim_outbox(limit=2, now=now)
            # The first worker still holds its rows: the second skips them, no waiting.
            with two.begin() as second:
                theirs = second.claim_outbox(limit=10, now=now)
        assert len(mine) == 2 and len(theirs) == 2
        assert {i.id for i in mine}.isdisjoint({i.id for i in theirs})


@pytest.mark.postgres
def test_a_readonly_unit_of_work_refuses_writes_on_postgresql(fresh_postgres_url: str) -> None:
    with (
        Store.open(fresh_postgres_url) as store,
        pytest.raises(StoreError, match="read-only"),
        store.begin(readonly=True) as tx,
    ):
        tx.set_cursor("x", "y")
