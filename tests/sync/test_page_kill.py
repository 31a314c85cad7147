"""A SIGKILL in the middle of a chained backfill page: the page's supplier calls, chain links,
comment copies, outbox items and audit events, all held and sent together, are kept whole or
not at all; the next cycle reads the page again and every request gets one supplier call, one
create and one copy of its comment, in the store and in fac's tool."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync.memory_tool import make_config, running_bridge
from usm_bridge.store import OutboxOperation, Store
from usm_bridge.store import schema as t

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL")

KILLER = Path(__file__).with_name("chained_page_killer.py")
HR, FAC = "hr-tool", "fac-tool"
COUNT, PAGE = 30, 10


def _rows(store: Store) -> dict[str, int]:
    """Rows by table, of the tables a chained page writes."""
    tables = (t.calls, t.identities, t.chain_links, t.comment_links, t.outbox, t.audit_log)
    with store.engine.connect() as conn:
        count = sa.select(sa.func.count())
        return {
            table.name: int(conn.execute(count.select_from(table)).scalar_one()) for table in tables
        }


def test_a_kill_in_the_middle_of_a_chained_backfill_page_loses_and_duplicates_nothing(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    tests = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, *sys.path])}
    killed = subprocess.run(
        [sys.executable, str(KILLER), store_url, str(tmp_path), str(COUNT), str(PAGE)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    # The first page whole (each request: its call, identity, supplier call, link, comment
    # copy; the supplier's create and comment, the request's update; five audit events),
    # nothing of the second.
    assert _rows(store) == {
        "calls": 2 * PAGE, "identities": PAGE, "chain_links": PAGE, "comment_links": PAGE,
        "outbox": 3 * PAGE, "audit_log": 5 * PAGE,
    }  # fmt: skip

    with running_bridge(store, make_config(tmp_path)) as bridge:
        hr = bridge.tools[HR]
        saved = json.loads((tmp_path / "hr-tickets.json").read_text())
        hr.tickets, hr.version = saved["tickets"], saved["version"]
        hr._ids, hr._comment_ids = saved["ids"], saved["comment_ids"]
        bridge.connectors[HR].page = PAGE
        (cycle,) = bridge.cycle(HR)
        assert cycle.ok and cycle.dead_letters == 0
        assert cycle.stored == COUNT - PAGE  # read again from the page the kill cut off
        bridge.cycle(FAC)
        bridge.cycle(HR)  # its own updates come back as echoes: nothing more
        fac = bridge.tools[FAC]
        assert Counter(ticket["title"] for ticket in fac.tickets.values()) == {
            f"Chair {n}": 1 for n in range(COUNT)
        }
        assert Counter(op for op, _ in fac.writes)["create"] == COUNT
        comments = [c["body"] for ticket in fac.tickets.values() for c in ticket["comments"]]
        assert len(comments) == COUNT and len(set(comments)) == COUNT

    # The supplier calls now have their records in fac; the audit log grew with the pushes.
    after = _rows(store)
    assert after.pop("audit_log") > 5 * COUNT
    assert after == {
        "calls": 2 * COUNT, "identities": 2 * COUNT, "chain_links": COUNT,
        "comment_links": COUNT, "outbox": 3 * COUNT,
    }  # fmt: skip
    with store.begin(readonly=True) as tx:
        for ticket in hr.tickets:
            found = tx.find_call(HR, ticket)
            assert found is not None
            (link,) = tx.suppliers_of(found.call.id)
            items = tx.list_outbox(call_id=link.supplier_call_id)
            assert [i.operation for i in items] == [OutboxOperation.CREATE, OutboxOperation.COMMENT]
            assert [e.kind for e in tx.list_audit(call_id=found.call.id, kind="chain_linked")] == [
                "chain_linked"
            ]
        keys = [item.idempotency_key for item in tx.list_outbox()]
    assert len(keys) == len(set(keys))
