"""Revision 0017: on SQLite, ``ix_calls_pass_rows`` holds the conformance pass's columns in its
order and ``ix_calls_without_facts`` the rows whose facts are missing; PostgreSQL gets neither.
The upgrade keeps the calls, and a downgrade drops both indexes."""

from __future__ import annotations

from collections.abc import Callable

from store.store_revisions import downgrade, index_names, upgraded_keeping

from usm_bridge.model import Call
from usm_bridge.store import Store
from usm_bridge.store.schema import SQLITE_ONLY

MakeCall = Callable[..., Call]


def _sqlite_only(store: Store) -> set[str]:
    return {name for _, name in index_names(store, "calls")} & SQLITE_ONLY


def test_revision_0017_indexes_the_pass_on_sqlite_alone_and_downgrades_without_them(
    store_url: str, make_call: MakeCall
) -> None:
    call = make_call("HR-1")
    on_sqlite = store_url.startswith("sqlite")
    with Store.open(store_url) as store:
        assert _sqlite_only(store) == (set(SQLITE_ONLY) if on_sqlite else set())
        with store.begin() as tx:
            tx.upsert_call(call, instance="hr-jira")
        downgrade(store, "0016")
        assert _sqlite_only(store) == set()
    with upgraded_keeping(store_url, call) as store:
        assert _sqlite_only(store) == (set(SQLITE_ONLY) if on_sqlite else set())
        # Revision 0016 drops the columns the index holds: it downgrades past it too.
        downgrade(store, "0015")
    with upgraded_keeping(store_url, call):
        pass
