"""Revision 0012: identities are found by remote key or remote id in any instance through indexes
of their own (the lookup of what a page's forks name), and four indexes no query read are gone;
downgrading brings them back, on both back ends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from store.store_revisions import downgrade, index_names, upgraded_keeping

from usm_bridge.model import Call
from usm_bridge.store import Store
from usm_bridge.store import schema as t
from usm_bridge.store.page_state import load_page_state

MakeCall = Callable[..., Call]
T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
ADDED = {("identities", "ix_identities_remote_key"), ("identities", "ix_identities_remote_id")}
DROPPED = {
    ("calls", "ix_calls_call_type"),
    ("calls", "ix_calls_updated_at"),
    ("audit_log", "ix_audit_log_at"),
    ("identities", "ix_identities_instance_remote_key"),
}


def _indexes(store: Store) -> set[tuple[str, str]]:
    return index_names(store, "calls", "identities", "audit_log")


def test_revision_0012_swaps_the_indexes_and_downgrades_to_the_old_ones(
    store_url: str, make_call: MakeCall
) -> None:
    call = make_call("HR-1")
    with Store.open(store_url) as store:
        assert _indexes(store) >= ADDED and not DROPPED & _indexes(store)
        with store.begin() as tx:
            tx.upsert_call(call, instance="hr-jira")
        downgrade(store, "0011")
        assert _indexes(store) >= DROPPED and not ADDED & _indexes(store)
    with upgraded_keeping(store_url, call) as store:
        assert _indexes(store) >= ADDED and not DROPPED & _indexes(store)


def _fill(store: Store, count: int) -> None:
    """``count`` calls with their identities in two instances, written with plain SQL."""
    with store.engine.begin() as conn:
        conn.execute(
            t.calls.insert(),
            [
                {"id": f"call_{n}", "unit": "hr", "call_type": "incident", "status": "registered",
                 "canonical": {"d": "x" * 1500}, "version": 1, "content_hash": "",
                 "created_at": T0, "updated_at": T0}
                for n in range(count)
            ],
        )  # fmt: skip
        conn.execute(
            t.identities.insert(),
            [
                {"call_id": f"call_{n}", "instance": ("hr-jira", "fac-jira")[n % 2],
                 "remote_id": str(10000 + n), "remote_key": f"HR-{n}",
                 "created_at": T0, "updated_at": T0}
                for n in range(count)
            ],
        )  # fmt: skip
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE calls, identities")
        else:
            conn.exec_driver_sql("ANALYZE")


def test_what_a_page_forks_name_is_found_through_the_key_and_id_indexes(
    store_url: str,
) -> None:
    with Store.open(store_url) as store:
        _fill(store, 5000)
        references = ["HR-7", "HR-4000", "10020", "NOPE-1"]
        plans: list[str] = []
        engine = store.engine
        explain = "EXPLAIN " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "

        def capture(_conn: object, cursor: object, statement: str, parameters: object,
                    *_: object) -> None:  # fmt: skip
            if statement.startswith("SELECT identities.") and "remote_key IN" in statement:
                cursor.execute(explain + statement, parameters)  # type: ignore[attr-defined]
                plans.append("\n".join(str(row) for row in cursor.fetchall()))  # type: ignore[attr-defined]

        sa.event.listen(engine, "before_cursor_execute", capture)
        try:
            with store.begin(readonly=True) as tx:
                state = load_page_state(tx.connection, "hr-jira", ["1"], references=references)
        finally:
            sa.event.remove(engine, "before_cursor_execute", capture)
    found = {ref: [(i.instance, i.remote_id) for i in found] for ref, found in
             state.by_reference.items()}  # fmt: skip
    assert found == {
        "HR-7": [("fac-jira", "10007")],
        "HR-4000": [("hr-jira", "14000")],
        "10020": [("hr-jira", "10020")],
        "NOPE-1": [],
    }
    assert len(plans) == 1
    assert "ix_identities_remote_key" in plans[0] and "ix_identities_remote_id" in plans[0]
    assert "Seq Scan" not in plans[0] and "SCAN identities" not in plans[0]
