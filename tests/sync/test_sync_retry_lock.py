"""``dead-letters retry`` stores a record under the chain lock a sync cycle takes.

Retrying while the daemon runs must take turns with the cycles storing calls of the same chain
(PostgreSQL; SQLite runs writers one at a time), or it would route the chain from what it read
before their commit. The retry here waits for a unit of work that holds only the supplier call
of the record's chain, which a retry that locks nothing but its own call never notices.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sync.memory_tool import Bridge, make_bridge, make_config, write_mapping
from usm_bridge.dead_letters import retry_dead_letters
from usm_bridge.runtime import build_runtime
from usm_bridge.store import Store


@pytest.fixture
def pg_bridge(fresh_postgres_url: str, tmp_path: Path) -> Iterator[Bridge]:
    store = Store.open(fresh_postgres_url)
    built = make_bridge(store, make_config(tmp_path))
    try:
        yield built
    finally:
        built.engine.close()
        store.close()


@pytest.fixture
def impatient(fresh_postgres_url: str) -> Iterator[Store]:
    """The same database, through connections that give up waiting for a lock at once."""
    opened = Store.open(fresh_postgres_url)

    def no_waiting(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")

    sa.event.listen(opened.engine, "connect", no_waiting)
    opened.engine.dispose()  # the connections opened to migrate were made without it
    try:
        yield opened
    finally:
        opened.close()


def test_a_retry_waits_for_a_unit_of_work_holding_a_call_of_its_chain(
    pg_bridge: Bridge, impatient: Store, tmp_path: Path
) -> None:
    bridge = pg_bridge
    hr = bridge.tools["hr-tool"]
    ann = hr.add(title="Chair for Ann", service="chair")
    bridge.settle()
    hr.edit(ann, status="weird")
    assert bridge.engine.run_cycle("hr-tool").dead_letters == 1
    write_mapping(tmp_path / "memory.yaml", knows_weird=True)
    with bridge.store.begin(readonly=True) as tx:
        (supplier,) = tx.list_calls(unit="fac")

    # The CLI's engine: its own, on connections that give up waiting at once.
    retrying = build_runtime(bridge.config, impatient, host=bridge.host).engine
    with bridge.store.begin() as cycle:  # a cycle of fac storing the supplier call, say
        cycle.connection.execute(
            sa.text("SELECT id FROM calls WHERE id = :id FOR UPDATE"), {"id": supplier.id}
        )
        held = retry_dead_letters(retrying)
    assert not held.resolved
    ((letter_id, reason),) = held.failed
    assert "lock timeout" in reason
    with bridge.store.begin(readonly=True) as tx:
        letter = tx.get_dead_letter(letter_id)
    assert letter is not None and letter.attempts == 2  # kept, one more attempt counted

    free = retry_dead_letters(retrying)
    assert [i for i, _ in free.resolved] == [letter_id] and not free.failed
