"""Stores at a chosen schema revision, made with Alembic's own API, for the upgrade tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

import usm_bridge.store.migrations
from usm_bridge.model import Call
from usm_bridge.store import SchemaPolicy, Store
from usm_bridge.store.schema import VERSION_TABLE


def _alembic_config() -> Config:
    config = Config()
    folder = Path(usm_bridge.store.migrations.__file__).parent
    config.set_main_option("script_location", str(folder).replace("%", "%%"))
    return config


def head_and_previous() -> tuple[str, str]:
    """The code's head and the revision before it (whatever they are today)."""
    script = ScriptDirectory.from_config(_alembic_config())
    head = script.get_current_head()
    assert head is not None
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str), "the upgrade tests need at least two revisions"
    return head, previous


def make_store_at(url: str, revision: str) -> None:
    """Create the store at ``url`` (empty) at ``revision`` through ``alembic.command.upgrade``."""
    config = _alembic_config()
    with Store.open(url, schema=SchemaPolicy.INSPECT) as store, store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def revision_of(url: str) -> str | None:
    """The revision recorded in the store, read with plain SQL (no usm-bridge code)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    finally:
        engine.dispose()


def set_revision(url: str, revision: str) -> None:
    """Pretend a later usm-bridge wrote the store: record a revision this code does not know."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = :r"), {"r": revision})
    finally:
        engine.dispose()


def downgrade(store: Store, revision: str) -> None:
    """Downgrade the open ``store`` to ``revision`` through its own Alembic config."""
    config = store._alembic_config()
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
    assert store.schema_revision() == revision


def index_names(store: Store, *tables: str) -> set[tuple[str, str]]:
    """Each index of ``tables`` as (table, index name)."""
    inspector = sa.inspect(store.engine)
    return {
        (table, str(index["name"])) for table in tables for index in inspector.get_indexes(table)
    }


@contextmanager
def upgraded_keeping(url: str, call: Call) -> Iterator[Store]:
    """The store at ``url`` opened with :attr:`SchemaPolicy.UPGRADE`: at the code's head, with
    ``call`` (stored before a downgrade) read back unchanged."""
    with Store.open(url, schema=SchemaPolicy.UPGRADE) as store:
        assert store.schema_revision() == store.head_revision()
        with store.begin(readonly=True) as tx:
            stored = tx.get_call(call.id)
            assert stored is not None and stored.call == call
        yield store
