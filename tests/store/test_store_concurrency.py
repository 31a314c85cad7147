"""Units of work that meet: chain locks and conflicts (PostgreSQL; SQLite runs writers one at
a time and needs neither)."""

from __future__ import annotations

import threading

import pytest

from usm_bridge.errors import StoreError
from usm_bridge.store import Store, StoreConflictError


def _chain(store: Store, make_call) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """hr-jira 1 -> fac-snow 2 -> ext-mail 3, and an unrelated hr-jira 9; their call ids."""
    with store.begin() as tx:
        ids = {
            remote: tx.upsert_call(make_call(remote_id=remote, instance=instance)).call_id
            for remote, instance in (("1", "hr-jira"), ("2", "fac-snow"), ("3", "ext-mail"),
                                     ("9", "hr-jira"))
        }  # fmt: skip
        tx.link_chain(ids["1"], ids["2"], "hr-to-fac")
        tx.link_chain(ids["2"], ids["3"], "fac-to-ext")
    return ids


def test_lock_chain_locks_the_whole_chain_of_a_record(pg_store: Store, make_call) -> None:  # type: ignore[no-untyped-def]
    ids = _chain(pg_store, make_call)
    with pg_store.begin() as tx:
        # A second supplier of the hr call: the chain branches, and is walked both ways.
        ids["4"] = tx.upsert_call(make_call(remote_id="4", instance="it-jira")).call_id
        tx.link_chain(ids["1"], ids["4"], "hr-to-it")
    chain = sorted([ids["1"], ids["2"], ids["3"], ids["4"]])
    with pg_store.begin() as tx:
        assert tx.lock_chain("fac-snow", "2") == chain
        assert tx.lock_chain("ext-mail", "3") == chain
        assert tx.lock_chain("it-jira", "4") == chain
        assert tx.lock_chain("hr-jira", "9") == [ids["9"]]
        assert tx.lock_chain("hr-jira", "unknown") == []


def test_a_unit_of_work_waits_for_another_that_holds_its_chain(pg_store: Store, make_call) -> None:  # type: ignore[no-untyped-def]
    ids = _chain(pg_store, make_call)
    with pg_store.begin() as holder:
        holder.lock_chain("hr-jira", "1")
        # Another unit of work, through another record of the chain: it would wait.
        with pytest.raises(StoreError, match="lock timeout"), pg_store.begin() as other:
            other.connection.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
            other.lock_chain("ext-mail", "3")
        with pg_store.begin() as other:  # a call of no chain the holder took is free
            other.connection.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
            assert other.lock_chain("hr-jira", "9") == [ids["9"]]


def test_lock_chain_does_nothing_on_sqlite(tmp_path, make_call) -> None:  # type: ignore[no-untyped-def]
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        _chain(store, make_call)
        with store.begin() as tx:
            assert tx.lock_chain("fac-snow", "2") == []


def test_a_deadlock_is_a_conflict_to_run_again(pg_store: Store, make_call) -> None:  # type: ignore[no-untyped-def]
    """Two units of work lock two calls in opposite orders: the database breaks the deadlock
    by rolling one back, and the store says so with StoreConflictError."""
    _chain(pg_store, make_call)
    both_hold_one = threading.Barrier(2, timeout=30)
    outcomes: dict[str, BaseException | None] = {}

    def work(name: str, first: tuple[str, str], second: tuple[str, str]) -> None:
        try:
            with pg_store.begin() as tx:
                tx.lock_chain(*first)
                both_hold_one.wait()
                tx.lock_chain(*second)
            outcomes[name] = None
        except BaseException as exc:
            outcomes[name] = exc

    threads = [
        threading.Thread(target=work, args=("a", ("hr-jira", "1"), ("hr-jira", "9"))),
        threading.Thread(target=work, args=("b", ("hr-jira", "9"), ("hr-jira", "1"))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(map(type, outcomes.values()), key=str) == sorted(
        [type(None), StoreConflictError], key=str
    ), outcomes
    (error,) = [e for e in outcomes.values() if e is not None]
    assert "deadlock detected" in str(error)
