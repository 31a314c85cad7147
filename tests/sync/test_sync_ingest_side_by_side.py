"""A record ingested by ``dead-letters retry`` leaves the store as the same record read by a cycle.

Two bridges on two stores of the same back end go through the same history: a request goes from
hr to fac, a fac agent marks it done (the write of that to hr fails for a while, so hr still
shows the old status), and a person in hr edits its description. Bridge A reads the edit in an
hr cycle; bridge B's hr cycle dead-letters it (a mapping plugin's bug), and after the fix
``dead-letters retry`` ingests it. The store (calls, identities, chain links, remote states,
comment links), the audit log and the outbox must then be the same, and after both
settle the tools must hold the same: the agent's status survives in fac.
A retry that stored along a thinner path (no merge, no echo check, no keeping of unmapped
fields) would take hr's stale status, audit a conflict, and queue a write undoing the agent's
status.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sync.memory_tool import Bridge, BuggyInbound, make_bridge, make_config
from usm_bridge.connector import RawRecord
from usm_bridge.dead_letters import retry_dead_letters
from usm_bridge.errors import RetriableRemoteError
from usm_bridge.store import Store
from usm_bridge.store import schema as t

TITLE = "Chair for Ann"
#: Compared tables. Dead letters and run records differ by design (B had one of each), and so
#: does hr's cursor: A's cycle stops after the record, before the checkpoint, not to push.
TABLES = (
    t.calls,
    t.identities,
    t.chain_links,
    t.remote_states,
    t.comment_links,
    t.outbox,
    t.audit_log,
)
_HASH = re.compile(r"\b[0-9a-f]{64}\b")
_HEX_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
#: A time the bridge took from the wall clock (a created supplier call's ``created``).
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")


@pytest.fixture
def twins(store: Store, second_store_url: str, tmp_path: Path) -> Iterator[tuple[Bridge, Bridge]]:
    other = Store.open(second_store_url)
    a = make_bridge(store, make_config(tmp_path))
    b = make_bridge(other, make_config(tmp_path))
    b.clock.now = a.clock.now  # the tools stamp their records with it: the same history
    try:
        yield a, b
    finally:
        a.engine.close()
        b.engine.close()
        other.close()


def _history_until_the_edit(bridge: Bridge) -> str:
    """The request in hr and fac, the agent's "done" in fac whose write to hr waits, the edit in
    hr not read yet; the hr record's id."""
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ann = hr.add(title=TITLE, service="chair", description="A chair")
    bridge.settle()
    (supplier,) = fac.tickets
    bridge.clock.advance(seconds=1)
    fac.edit(supplier, status="done")
    bridge.connectors["hr-tool"].faults["update"] = [RetriableRemoteError("HTTP 503")]
    bridge.cycle("fac-tool")
    assert (
        hr.tickets[ann]["status"] == "hold"
    )  # waiting on fac: the agent's "done" is not in hr yet
    bridge.clock.advance(seconds=1)
    hr.edit(ann, description="A black chair")
    return ann


def _dump(store: Store) -> dict[str, list[Any]]:
    """The compared tables, normalized: call ids named by their records; row ids, hashes (of
    content holding random ids), wall clock times and dead letter events left out; rows sorted."""
    with store.engine.connect() as conn:
        names = {
            row.call_id: f"<call of {row.instance}/{row.remote_id}>"
            for row in conn.execute(sa.select(t.identities))
        }

        def norm(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: norm(v) for k, v in value.items() if k != "dead_letter_id"}
            if isinstance(value, list):
                return [norm(v) for v in value]
            if isinstance(value, str):
                for call_id, name in names.items():
                    value = value.replace(call_id, name)
                return _TIME.sub("<time>", _HEX_ID.sub("<id>", _HASH.sub("<hash>", value)))
            return value

        dump: dict[str, list[Any]] = {}
        for table in TABLES:
            order = [table.c.id] if table is t.audit_log else []
            rows = []
            for row in conn.execute(sa.select(table).order_by(*order)).mappings():
                if table is t.audit_log and str(row["kind"]).startswith("dead_letter"):
                    continue
                rows.append(
                    norm({k: v for k, v in row.items() if k not in ("id", "at") and
                          not k.endswith("_at")})
                )  # fmt: skip
            dump[table.name] = rows if order else sorted(rows, key=repr)
    return dump


def _tickets(bridge: Bridge) -> dict[str, list[dict[str, Any]]]:
    """What each tool holds, the bridge's correlation markers (random call ids) left out."""
    return {
        name: [
            {k: _HEX_ID.sub("<id>", str(v)) for k, v in ticket.items() if k != "version"}
            for ticket in tool.tickets.values()
        ]
        for name, tool in bridge.tools.items()
    }


def _then_settle(bridge: Bridge) -> None:
    bridge.stop.clear()
    bridge.clock.advance(minutes=10)  # the write to hr is due again
    bridge.settle()


def test_a_record_retried_leaves_store_audit_and_outbox_as_a_cycle_reading_it(
    twins: tuple[Bridge, Bridge],
) -> None:
    a, b = twins
    ann = _history_until_the_edit(a)
    assert _history_until_the_edit(b) == ann

    # A: a cycle reads the edit; it stops before pushing, as B's retry does not push either.
    read = a.engine.run_cycle("hr-tool", progress=lambda _: a.stop.set())
    assert (read.read, read.stored, read.routed, read.dead_letters) == (1, 1, 1, 0)

    # B: the cycle dead-letters the edit (a plugin's bug); after the fix, retry ingests it.
    buggy = BuggyInbound(TITLE, KeyError("status"), instance="hr-tool")
    b.host.register(buggy)
    failed = b.engine.run_cycle("hr-tool")
    assert (failed.read, failed.stored, failed.dead_letters) == (1, 0, 1)
    buggy.armed = False
    outcome = retry_dead_letters(b.engine)
    assert len(outcome.resolved) == 1 and not outcome.failed and not outcome.skipped

    first, second = _dump(a.store), _dump(b.store)
    for table in TABLES:
        assert first[table.name] == second[table.name], table.name
    kinds = [event["kind"] for event in first["audit_log"]]
    assert "conflict" not in kinds  # the status was the agent's, the edit the person's: no clash

    _then_settle(a)
    _then_settle(b)
    assert _tickets(a) == _tickets(b)
    (supplier,) = a.tools["fac-tool"].tickets.values()
    assert supplier["status"] == "done"
    assert a.tools["hr-tool"].tickets[ann]["description"] == "A black chair"


def _outbox_in_order(store: Store) -> list[tuple[str, str, str]]:
    """Every outbox item as (operation, target, key) in the order queued, each call id in its
    key named by the call's title."""
    with store.engine.connect() as conn:
        titles = {row.id: row.canonical["title"] for row in conn.execute(sa.select(t.calls))}
        items = conn.execute(sa.select(t.outbox).order_by(t.outbox.c.id)).mappings().all()
    out = []
    for item in items:
        key = str(item["idempotency_key"])
        for call_id, title in titles.items():
            key = key.replace(call_id, f"<{title}>")
        out.append((str(item["operation"]), str(item["target_instance"]), _HEX_ID.sub("<id>", key)))
    return out


def test_a_chained_backfill_page_leaves_store_audit_and_outbox_as_record_by_record(
    twins: tuple[Bridge, Bridge],
) -> None:
    """The same new records, A's in one page (the supplier calls it opens held with its
    writes), B's each in a unit of work of its own: requests open a supplier call in fac (and
    a desk request one in ext from there, two links in the page), incidents open none, every
    comment is copied down. Store, audit log and the outbox's order end up the same."""
    a, b = twins
    for bridge in (a, b):
        hr = bridge.tools["hr-tool"]
        for n in range(9):
            desk = {"service": "desk"} if n % 2 else {}
            ticket = hr.add(title=f"Desk {n}", kind="incident" if n % 3 == 0 else "request", **desk)
            hr.comment(ticket, f"For room {n}")
    records = [
        [item for item in bridge.connectors["hr-tool"].read_changes(None)
         if isinstance(item, RawRecord)]
        for bridge in (a, b)
    ]  # fmt: skip
    together = a.engine.ingest.ingest_page("hr-tool", records[0])
    stage = b.engine.ingest
    alone = [stage.ingest("hr-tool", record) for record in records[1]]
    stage._backfill_forks("hr-tool", alone)

    assert [(o.outcome, o.targets) for o in together] == [(o.outcome, o.targets) for o in alone]
    assert sum("fac-tool" in o.targets for o in together) == 6
    assert sum("ext-tool" in o.targets for o in together) == 3
    first, second = _dump(a.store), _dump(b.store)
    for table in TABLES:
        assert first[table.name] == second[table.name], table.name
    assert len(first["chain_links"]) == 6 + 3  # hr -> fac for each request, fac -> ext for desks
    assert _outbox_in_order(a.store) == _outbox_in_order(b.store)
