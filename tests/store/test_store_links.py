"""Identities (call <-> remote record), chain links between units, and cursors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from usm_bridge.errors import StoreError
from usm_bridge.store import Store
from usm_bridge.store.schema import identities


@pytest.fixture
def two_calls(store: Store, make_call) -> tuple[str, str]:
    with store.begin() as tx:
        first = tx.upsert_call(make_call()).call_id
        second = tx.upsert_call(make_call(unit="it")).call_id
    return first, second


def test_link_and_get_an_identity(store: Store, two_calls) -> None:
    call_id, _ = two_calls
    with store.begin() as tx:
        identity = tx.link_identity(
            call_id,
            "it-snow",
            "a1b2c3",
            remote_key="INC0010001",
            url="https://snow.example/inc?sys_id=a1b2c3",
            correlation="usm:call-1:create",
        )
    assert identity.call_id == call_id and identity.remote_key == "INC0010001"
    assert identity.pushed_hash is None and identity.created_at.tzinfo is UTC
    with store.begin() as tx:
        assert tx.get_identity(call_id, "it-snow") == identity
        assert tx.find_identity("it-snow", "a1b2c3") == identity
        assert tx.find_identity_by_correlation("it-snow", "usm:call-1:create") == identity
        assert tx.identities_of(call_id) == [identity]
        assert tx.get_identity(call_id, "hr-jira") is None


def test_linking_the_same_pair_again_is_a_no_op_that_fills_in_details(
    store: Store, two_calls
) -> None:
    call_id, _ = two_calls
    with store.begin() as tx:
        tx.link_identity(call_id, "it-snow", "a1")
        again = tx.link_identity(call_id, "it-snow", "a1", remote_key="INC1")
        kept = tx.link_identity(call_id, "it-snow", "a1")
        assert len(tx.list_audit(call_id=call_id, kind="identity_linked")) == 1
    assert again.remote_key == kept.remote_key == "INC1"


def test_a_remote_record_belongs_to_one_call(store: Store, two_calls) -> None:
    first, second = two_calls
    with store.begin() as tx:
        tx.link_identity(first, "it-snow", "a1")
    with pytest.raises(StoreError, match="already linked to call"), store.begin() as tx:
        tx.link_identity(second, "it-snow", "a1")


def test_a_call_has_one_record_per_instance(store: Store, two_calls) -> None:
    first, _ = two_calls
    with store.begin() as tx:
        tx.link_identity(first, "it-snow", "a1")
    with pytest.raises(StoreError, match="already linked to record"), store.begin() as tx:
        tx.link_identity(first, "it-snow", "a2")
    with store.begin() as tx:
        tx.link_identity(first, "hr-jira", "a1")  # another instance may reuse the remote id
        assert {i.instance for i in tx.identities_of(first)} == {"hr-jira", "it-snow"}


@pytest.mark.parametrize(
    ("second_call", "remote_id"),
    [(True, "a1"), (False, "a2")],
    ids=["instance+remote_id", "call+instance"],
)
def test_the_database_enforces_identity_uniqueness(
    store: Store, two_calls, second_call: bool, remote_id: str
) -> None:
    """Even a writer that bypasses the API cannot link twice."""
    first, second = two_calls
    with store.begin() as tx:
        tx.link_identity(first, "it-snow", "a1")
    now = datetime.now(UTC)
    row = {
        "call_id": second if second_call else first,
        "instance": "it-snow",
        "remote_id": remote_id,
        "created_at": now,
        "updated_at": now,
    }
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(identities.insert().values(**row))


def test_record_pushed_hash(store: Store, two_calls) -> None:
    first, _ = two_calls
    with store.begin() as tx:
        tx.link_identity(first, "it-snow", "a1")
        identity = tx.record_pushed_hash(first, "it-snow", "f" * 64)
    assert identity.pushed_hash == "f" * 64 and identity.pushed_at is not None
    with pytest.raises(StoreError, match="no record"), store.begin() as tx:
        tx.record_pushed_hash(first, "nowhere", "f" * 64)


def test_chain_links(store: Store, make_call) -> None:
    with store.begin() as tx:
        upstream = tx.upsert_call(make_call(unit="hr")).call_id
        it = tx.upsert_call(make_call(unit="it")).call_id
        fm = tx.upsert_call(make_call(unit="facilities")).call_id
        link = tx.link_chain(upstream, it, "hr-to-it")
        tx.link_chain(upstream, fm, "hr-to-facilities")
        assert tx.link_chain(upstream, it, "hr-to-it") == link  # idempotent
    with store.begin() as tx:
        suppliers = tx.suppliers_of(upstream)
        assert [(s.supplier_call_id, s.route) for s in suppliers] == [
            (it, "hr-to-it"),
            (fm, "hr-to-facilities"),
        ]
        up = tx.upstream_of(it)
        assert up is not None and up.upstream_call_id == upstream
        assert tx.upstream_of(upstream) is None
        assert tx.suppliers_of(it) == []
    with pytest.raises(StoreError, match="already supplies"), store.begin() as tx:
        tx.link_chain(fm, it, "facilities-to-it")


def test_a_call_cannot_supply_itself(store: Store, make_call) -> None:
    with store.begin() as tx:
        call_id = tx.upsert_call(make_call()).call_id
    with pytest.raises(StoreError), store.begin() as tx:
        tx.link_chain(call_id, call_id, "loop")


def test_cursor_round_trip(store: Store) -> None:
    with store.begin() as tx:
        assert tx.get_cursor("hr-jira") is None
        first = tx.set_cursor("hr-jira", "2026-01-05T09:30:00.000+0000|10042")
    with store.begin() as tx:
        assert tx.get_cursor("hr-jira") == first.cursor
        tx.set_cursor("hr-jira", '{"opaque": "ü", "page": 2}')
        tx.set_cursor("it-snow", "sys_updated_on>=x")
    with store.begin() as tx:
        assert tx.get_cursor("hr-jira") == '{"opaque": "ü", "page": 2}'
        cursors = tx.list_cursors()
    assert [c.instance for c in cursors] == ["hr-jira", "it-snow"]
    assert cursors[0].updated_at >= first.updated_at
    assert cursors[0].updated_at.tzinfo is UTC
