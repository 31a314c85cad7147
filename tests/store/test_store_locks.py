"""Locks that die with their holder (:mod:`usm_bridge.store.locks`): lock files on SQLite,
advisory locks on PostgreSQL, contended by real processes; outbox claims that name their holder
(revision 0008)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from store.lock_holders import held_elsewhere, take_elsewhere, wait_until_free
from store.store_revisions import downgrade

from usm_bridge.errors import StoreError
from usm_bridge.model import Call
from usm_bridge.store import SchemaPolicy, Store
from usm_bridge.store.locks import Holder, lock_key

pytestmark = pytest.mark.skipif(os.name != "posix", reason="flock and SIGKILL")

NAME = "cycle:hr-mail"
MakeCall = Callable[..., Call]


def test_a_second_process_cannot_take_a_held_lock_and_is_told_who_holds_it(
    store: Store, store_url: str
) -> None:
    with held_elsewhere(store_url, NAME) as other:
        busy = store.locks.acquire(NAME)
        assert busy is not None and busy.name == NAME and not busy.here
        assert busy.holder is not None
        assert (busy.holder.pid, busy.holder.host) == (other.pid, socket.gethostname())
        assert busy.holder.since is not None
        assert f"pid {other.pid} on {socket.gethostname()} since " in str(busy)
        # Another name is free all the same.
        assert store.locks.acquire("push:hr-mail") is None
        store.locks.release("push:hr-mail")
    # Released by the holder as it ends: free for this process.
    assert store.locks.acquire(NAME) is None
    store.locks.release(NAME)


def test_the_lock_of_a_killed_holder_is_free_at_once(store: Store, store_url: str) -> None:
    with held_elsewhere(store_url, NAME) as other:
        assert store.locks.acquire(NAME) is not None
        other.kill()
        wait_until_free(store, NAME)


def test_a_lock_held_here_cannot_be_had_by_another_process(store: Store, store_url: str) -> None:
    assert store.locks.acquire(NAME) is None
    code, said = take_elsewhere(store_url, NAME)
    assert code == 3
    assert said["busy"].startswith(f"the lock {NAME!r} is held by pid {os.getpid()} on ")
    store.locks.release(NAME)
    code, said = take_elsewhere(store_url, NAME)
    assert code == 0 and said["claimed"] == []


def test_a_thread_may_take_its_lock_again_another_thread_may_not(store: Store) -> None:
    locks = store.locks
    assert locks.acquire(NAME) is None
    assert locks.acquire(NAME) is None  # re-entrant for the thread holding it
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(locks.acquire(NAME)))
    thread.start()
    thread.join()
    (busy,) = seen
    assert busy is not None and getattr(busy, "here", False)
    assert str(busy) == f"the lock {NAME!r} is held by this process"
    refused: list[BaseException] = []

    def release_elsewhere() -> None:
        try:
            locks.release(NAME)
        except RuntimeError as exc:
            refused.append(exc)

    other = threading.Thread(target=release_elsewhere)
    other.start()
    other.join()
    assert [str(exc) for exc in refused] == [f"the lock {NAME!r} is not held by this thread"]
    locks.release(NAME)
    assert _taken_by_a_thread(store) is not None  # still held once
    locks.release(NAME)
    assert _taken_by_a_thread(store) is None
    with pytest.raises(RuntimeError, match="not held by this thread"):
        locks.release(NAME)


def _taken_by_a_thread(store: Store) -> object:
    seen: list[object] = []

    def take() -> None:
        busy = store.locks.acquire(NAME)
        seen.append(busy)
        if busy is None:
            store.locks.release(NAME)

    thread = threading.Thread(target=take)
    thread.start()
    thread.join()
    return seen[0]


def test_closing_the_store_releases_its_locks(store_url: str) -> None:
    first = Store.open(store_url)
    try:
        assert first.locks.acquire(NAME) is None
        with Store.open(store_url) as second:
            assert second.locks.acquire(NAME) is not None
            first.close()
            assert second.locks.acquire(NAME) is None
            second.locks.release(NAME)
    finally:
        first.close()


def test_sqlite_lock_files_sit_beside_the_database_owner_only_naming_a_live_holder_only(
    tmp_path: Path,
) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'bridge.db'}") as store:
        assert store.locks.acquire(NAME) is None
        folder = tmp_path / "bridge.db.locks"
        (lock,) = folder.iterdir()
        assert lock.name.startswith("cycle_hr-mail-") and lock.suffix == ".lock"
        assert folder.stat().st_mode & 0o777 == 0o700
        assert lock.stat().st_mode & 0o077 == 0
        holder = Holder.parse(lock.read_text())
        assert holder is not None and holder.pid == os.getpid()
        store.locks.release(NAME)
        assert lock.read_text() == ""  # a free lock names nobody


def test_an_in_memory_store_has_locks_of_this_process_only() -> None:
    with Store.open("sqlite://") as store:
        assert store.locks.kind == "in-process locks"
        assert store.locks.acquire(NAME) is None
        with Store.open("sqlite://") as other:  # another database altogether
            assert other.locks.acquire(NAME) is None
            other.locks.release(NAME)
        store.locks.release(NAME)


@pytest.mark.parametrize(
    "text",
    ["", "pid= host=x", "pid=12 host=", "pid=-1 host=x", "pid=12 host=x since=yesterday",
     "pid=12 host=x since=2026-01-01T00:00:00", "garbage", "=== pid"],
)  # fmt: skip
def test_a_lock_file_that_names_nobody_is_read_as_an_unknown_holder(text: str) -> None:
    assert Holder.parse(text) is None


def test_a_holder_line_reads_back_as_written() -> None:
    holder = Holder(4242, "bridge-1", datetime(2026, 12, 6, 3, 0, tzinfo=UTC))
    assert Holder.parse(holder.line()) == holder
    assert str(holder) == "pid 4242 on bridge-1 since 2026-12-06 03:00:00 UTC"


def test_lock_keys_are_stable_signed_64_bit_and_distinct() -> None:
    names = ["daemon", "cycle:a", "cycle:b", "push:a", "push:b"]
    keys = [lock_key(name) for name in names]
    assert len(set(keys)) == len(names)
    assert all(-(2**63) <= key < 2**63 for key in keys)
    assert lock_key("daemon") == lock_key("daemon")


def test_the_store_locks_are_closed_with_the_store(store_url: str) -> None:
    store = Store.open(store_url)
    locks = store.locks
    store.close()
    with pytest.raises(Exception, match="closed"):
        locks.acquire(NAME)


# --- outbox claims name their holder -------------------------------------------------------------


def _pending_item(store: Store, call: Call, key: str) -> int:
    with store.begin() as tx:
        tx.upsert_call(call, instance="hr-jira")
        return tx.enqueue("it-snow", call.id, "create", {"title": "x"}, key).item.id


def test_a_claim_names_its_holder_until_the_item_is_settled(
    store: Store, make_call: MakeCall
) -> None:
    first = _pending_item(store, make_call("HR-1"), "k1")
    second = _pending_item(store, make_call("HR-2"), "k2")
    with store.begin() as tx:
        claimed = tx.claim_outbox(instance="it-snow", holder="me")
        assert [item.claimed_by for item in claimed] == ["me", "me"]
        assert tx.mark_outbox_done(first).claimed_by is None
        retry = datetime.now(UTC) + timedelta(minutes=1)
        assert tx.mark_outbox_failed(second, "later", retry_at=retry).claimed_by is None


def test_claims_of_another_holder_are_reclaimed_at_once_ones_own_wait_their_lease(
    store: Store, make_call: MakeCall
) -> None:
    mine = _pending_item(store, make_call("HR-1"), "k1")
    theirs = _pending_item(store, make_call("HR-2"), "k2")
    settled = _pending_item(store, make_call("HR-3"), "k3")
    now = datetime.now(UTC)
    with store.begin() as tx:
        assert [i.id for i in tx.claim_outbox(instance="it-snow", limit=1, holder="me")] == [mine]
        assert [i.id for i in tx.claim_outbox(instance="it-snow", holder="dead")] == [
            theirs, settled,
        ]  # fmt: skip
        tx.mark_outbox_failed(settled, "later", retry_at=now + timedelta(hours=1))
        assert tx.reclaim_outbox(instance="other", holder="me", now=now) == 0
        assert tx.reclaim_outbox(instance="it-snow", holder="me", now=now) == 1
        due = tx.claim_outbox(instance="it-snow", holder="me", now=now)
    assert [item.id for item in due] == [theirs]  # at once; its attempt stays counted
    assert due[0].attempts == 2


def test_revision_0008_adds_claimed_by_and_downgrades_without_it(
    store_url: str, make_call: MakeCall
) -> None:
    with Store.open(store_url) as store:
        _pending_item(store, make_call("HR-1"), "k1")
        downgrade(store, "0007")
    with Store.open(store_url, schema=SchemaPolicy.UPGRADE) as store:
        assert store.schema_revision() == store.head_revision()
        with store.begin() as tx:
            (item,) = tx.list_outbox()
            assert item.claimed_by is None and item.idempotency_key == "k1"


def test_a_lock_folder_that_cannot_be_made_is_a_store_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "bridge.db.locks").write_text("not a folder")
    with Store.open(f"sqlite:///{tmp_path / 'bridge.db'}") as store:
        with pytest.raises(StoreError) as caught:
            store.locks.acquire(NAME)
        assert str(caught.value).startswith(
            f"cannot open the lock file for {NAME!r} in {tmp_path / 'bridge.db.locks'}: "
        )
        # Nothing is left half-held: once the folder can be made, the lock can be had.
        (tmp_path / "bridge.db.locks").unlink()
        assert store.locks.acquire(NAME) is None
        store.locks.release(NAME)


def test_a_lock_session_the_server_ended_is_replaced_by_the_next_lock(pg_store: Store) -> None:
    locks = pg_store.locks
    assert locks.acquire("first") is None
    locks.release("first")
    with pg_store.engine.connect() as admin:
        ended = admin.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name LIKE :mine"
            ),
            {"mine": f"usm-bridge pid={os.getpid()} %"},
        ).scalars()
        assert list(ended) == [True]
    with pytest.raises(StoreError, match="the lock session failed"):
        locks.acquire(NAME)
    assert locks.acquire(NAME) is None
    locks.release(NAME)
