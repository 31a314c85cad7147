"""Opening a store: migrations, back-end settings, and clear errors for bad URLs."""

from __future__ import annotations

import socket
import threading

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from usm_bridge.errors import ConfigurationError, StoreError, StoreSchemaError
from usm_bridge.store import Store
from usm_bridge.store.schema import VERSION_TABLE, in_dialect, metadata

TABLES = {
    "calls",
    "identities",
    "chain_links",
    "cursors",
    "outbox",
    "dead_letters",
    "audit_log",
    VERSION_TABLE,
}


def _tables(store: Store) -> set[str]:
    return set(sa.inspect(store.engine).get_table_names())


def test_migrations_create_every_table_on_a_fresh_database(store: Store) -> None:
    assert _tables(store) >= TABLES
    assert store.schema_revision() == store.head_revision() is not None


def test_reopening_migrates_nothing_and_keeps_data(store_url: str, make_call) -> None:
    with Store.open(store_url) as first:
        with first.begin() as tx:
            tx.upsert_call(make_call(id="call_keep"))
        tables = _tables(first)
        revision = first.schema_revision()
    with Store.open(store_url) as second, Store.open(store_url) as third:
        assert _tables(second) == _tables(third) == tables
        assert second.schema_revision() == revision
        with second.begin() as tx:
            stored = tx.get_call("call_keep")
        assert stored is not None and stored.version == 1


def test_the_migrated_schema_matches_the_table_definitions(store: Store) -> None:
    """The runtime tables (schema.py) and the migrations must describe the same schema."""
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "version_table": VERSION_TABLE,
                "include_object": in_dialect(conn.dialect.name),
            },
        )
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    finally:
        store.close()
    assert (tmp_path / "wal.db").exists()


def test_sqlite_creates_the_folder_of_the_database(tmp_path) -> None:
    path = tmp_path / "state" / "nested" / "usm-bridge.db"
    with Store.open(f"sqlite:///{path}") as store:
        assert store.dialect == "sqlite"
    assert path.exists()


def test_in_memory_sqlite_works_for_quick_tools() -> None:
    with Store.open("sqlite://") as store, store.begin() as tx:
        assert tx.get_cursor("x") is None


def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(StoreError), store.begin() as tx:
        tx.link_identity("call_missing", "hr-jira", "1")


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "postgresql+psycopg://bridge:hunter2secret@db.example:notaport/usm",
        "   ",
    ],
)
def test_a_malformed_url_is_a_configuration_error_without_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Store.open(url)
    assert "hunter2secret" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert "expected" in str(caught.value)


def test_an_unsupported_back_end_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unsupported store back end 'mysql'") as caught:
        Store.open("mysql://root:hunter2secret@localhost/usm")
    assert "hunter2secret" not in str(caught.value)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_postgresql_is_a_store_error_without_the_password() -> None:
    url = f"postgresql+psycopg://bridge:hunter2secret@127.0.0.1:{_closed_port()}/usm"
    with pytest.raises(StoreError) as caught:
        Store.open(url, connect_timeout=2)
    message = str(caught.value)
    assert "hunter2secret" not in message
    assert "bridge:***@127.0.0.1" in message
    assert "cannot open the store" in message
    cause = caught.value.__cause__
    while cause is not None:
        assert "hunter2secret" not in str(cause)
        cause = cause.__cause__


def test_a_plain_postgresql_url_uses_psycopg_3() -> None:
    url = f"postgresql://bridge:hunter2secret@127.0.0.1:{_closed_port()}/usm"
    with pytest.raises(StoreError) as caught:
        Store.open(url, connect_timeout=2)
    assert "postgresql+psycopg://bridge:***@" in str(caught.value)


def test_an_unwritable_sqlite_location_is_a_store_error(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create the folder"):
        Store.open(f"sqlite:///{blocker / 'sub' / 'usm-bridge.db'}")


def test_a_database_from_a_newer_release_is_refused(store_url: str) -> None:
    with Store.open(store_url) as store, store.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(StoreSchemaError, match="newer usm-bridge"):
        Store.open(store_url)


def test_a_closed_store_refuses_work(store_url: str) -> None:
    store = Store.open(store_url)
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="closed"), store.begin():
        pass


def test_the_store_shows_its_url_without_password() -> None:
    store = Store.open("sqlite://")
    try:
        assert repr(store) == "Store('sqlite://')"
    finally:
        store.close()


def test_processes_opening_a_fresh_database_at_once_migrate_it_once(store_url: str) -> None:
    """Migrations are serialised (SQLite write lock, PostgreSQL advisory lock)."""
    errors: list[BaseException] = []
    revisions: list[str | None] = []

    def open_and_close() -> None:
        try:
            with Store.open(store_url) as store:
                revisions.append(store.schema_revision())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_close) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(revisions) == 4 and len(set(revisions)) == 1 and revisions[0] is not None
