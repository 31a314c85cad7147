"""Opening a store never upgrades an older schema unless told to; a newer one is refused.

Old stores are made with Alembic's API (an upgrade that stops one revision short of the code's
head), so these tests follow whatever head the migrations have.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from store.store_revisions import head_and_previous, make_store_at, revision_of, set_revision

from usm_bridge.errors import StoreSchemaError
from usm_bridge.store import SchemaPolicy, SchemaState, Store


def test_an_older_store_is_refused_by_default_naming_the_command(store_url: str) -> None:
    head, previous = head_and_previous()
    make_store_at(store_url, previous)
    with pytest.raises(StoreSchemaError) as refused:
        Store.open(store_url)
    message = str(refused.value)
    assert f"revision {previous}" in message and f"needs {head}" in message
    assert "usm-bridge db upgrade" in message and "--migrate" in message
    assert revision_of(store_url) == previous


def test_inspecting_an_older_store_lists_the_pending_migration_and_changes_nothing(
    store_url: str,
) -> None:
    head, previous = head_and_previous()
    make_store_at(store_url, previous)
    with Store.open(store_url, schema=SchemaPolicy.INSPECT) as store:
        status = store.schema_status()
    assert status.state is SchemaState.OLDER
    assert (status.current, status.head) == (previous, head)
    assert [m.revision for m in status.pending] == [head]
    assert status.pending[0].description  # the first line of the migration's docstring
    assert revision_of(store_url) == previous


def test_upgrade_policy_brings_an_older_store_to_head(store_url: str) -> None:
    head, previous = head_and_previous()
    make_store_at(store_url, previous)
    with Store.open(store_url, schema=SchemaPolicy.UPGRADE) as store:
        assert store.schema_status().state is SchemaState.CURRENT
    assert revision_of(store_url) == head
    with Store.open(store_url) as store:  # now accepted without asking
        assert store.schema_revision() == head


def test_store_upgrade_reports_what_it_applied_once(store_url: str) -> None:
    head, previous = head_and_previous()
    make_store_at(store_url, previous)
    with Store.open(store_url, schema=SchemaPolicy.INSPECT) as store:
        applied = store.upgrade()
        assert [m.revision for m in applied] == [head]
        assert store.upgrade() == ()
    assert revision_of(store_url) == head


def test_a_new_empty_store_is_created_by_itself(store_url: str) -> None:
    with Store.open(store_url) as store:
        assert store.schema_status().state is SchemaState.CURRENT
        assert "calls" in sa.inspect(store.engine).get_table_names()


def test_inspecting_an_empty_store_creates_nothing(store_url: str) -> None:
    head, _ = head_and_previous()
    with Store.open(store_url, schema=SchemaPolicy.INSPECT) as store:
        status = store.schema_status()
        assert "calls" not in sa.inspect(store.engine).get_table_names()
    assert status.state is SchemaState.EMPTY and status.current is None
    assert status.pending[-1].revision == head and len(status.pending) >= 2


@pytest.mark.parametrize("policy", [SchemaPolicy.CREATE, SchemaPolicy.UPGRADE])
def test_a_newer_store_is_refused_by_every_opening_that_may_write(
    store_url: str, policy: SchemaPolicy
) -> None:
    with Store.open(store_url):
        pass
    set_revision(store_url, "9999")
    with pytest.raises(StoreSchemaError, match=r"9999.*newer usm-bridge"):
        Store.open(store_url, schema=policy)
    with Store.open(store_url, schema=SchemaPolicy.INSPECT) as store:
        assert store.schema_status().state is SchemaState.NEWER
        with pytest.raises(StoreSchemaError, match="newer usm-bridge"):
            store.upgrade()
    assert revision_of(store_url) == "9999"
