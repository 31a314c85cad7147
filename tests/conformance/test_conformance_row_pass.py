"""The report's pass over the calls' rows (``call_rows``) writes the very JSON report the pass
through the model writes (``USM_BRIDGE_REPORT_BY_MODEL``), byte for byte, over a store of
``bench/fill_store.py`` with odd rows among its calls: a call the model refuses, a row without
facts, a row whose fact columns were never derived, one without facts but with its columns, and
the forks, waiting calls and
confirmations the filled store holds; with the calls' identities, chain links and change events
read as rows (``related_rows``), but for a few odd ones the record reads; and over a store of
a third party's data, the real ServiceNow event log through the shipped mapping."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from conformance_eventlog import build, vocabulary
from test_conformance_report_at_scale import NOW, _corrupt, _standalone_calls, _streamed

from usm_bridge.conformance.call_rows import CallRow
from usm_bridge.conformance.call_stream import BY_MODEL_ENV, CallSource
from usm_bridge.conformance.context import build_context
from usm_bridge.conformance.engine import build_report
from usm_bridge.conformance.period import Period
from usm_bridge.conformance.related_rows import EventRow, IdentityRow, LinkRow
from usm_bridge.conformance.renderers import JsonRenderer
from usm_bridge.conformance.unreadable_calls import CHECK_ID
from usm_bridge.model import ForkRole, ProcessLink, UsmProcess
from usm_bridge.plugins import PluginHost
from usm_bridge.store import AuditEvent, Identity, Store
from usm_bridge.store import schema as tables
from usm_bridge.store.call_facts import FACT_COLUMNS

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

from fill_store import fill_store

CALLS = 3000
#: Rows of the real event log read (one row an update; some 250 incidents).
EVENT_LOG_ROWS = 1200


def _forks(store: Store) -> None:
    """Forks on a few incidents (the filled store has none): to another stored call of their
    unit, and to a record the bridge does not hold, stored as the bridge stores a call."""
    calls = tables.calls
    with store.begin() as tx:
        incidents = tx.connection.execute(
            sa.select(calls.c.id, calls.c.unit)
            .where(calls.c.call_type == "incident", calls.c.status != "waiting")
            .order_by(calls.c.id)
            .limit(6)
        ).all()
        for number, (call_id, unit) in enumerate(incidents):
            other = tx.connection.execute(
                sa.select(calls.c.id).where(calls.c.unit == unit, calls.c.id != call_id).limit(1)
            ).scalar_one()
            stored = tx.get_call(call_id)
            assert stored is not None
            forks = [
                ProcessLink(role=ForkRole.SECONDARY, process=UsmProcess.CHANGE, ref=f"CHG{number}",
                            call=other, via="incident.rfc"),
                ProcessLink(role=ForkRole.PRIMARY, ref=f"INC{number}"),
            ][: 1 + number % 2]  # fmt: skip
            chain = stored.call.chain.model_copy(update={"forks": forks})
            tx.upsert_call(stored.call.model_copy(update={"chain": chain}))


def _odd_rows(store: Store) -> list[str]:
    """Four calls made odd: refused by the model (``updated`` before ``created``), without
    facts (its document broken), with facts but no fact columns (not derived), and without
    facts but with fact columns (a hand edit: the columns, which SQLite's pass reads from an
    index, say nothing of the facts)."""
    victims = _standalone_calls(store)
    for victim, how in zip(victims, ["updated-before-created", "no-facts"], strict=True):
        _corrupt(store, victim, how)
    calls = tables.calls
    with store.begin() as tx:
        underived, unfacted = tx.connection.execute(
            sa.select(calls.c.id)
            .where(calls.c.unit == "it", calls.c.status == "closed")
            .order_by(calls.c.id)
            .limit(2)
        ).scalars()
        tx.connection.execute(
            calls.update().where(calls.c.id == underived).values(dict.fromkeys(FACT_COLUMNS))
        )
        # Its columns say another title than its document: the model reads the document.
        tx.connection.execute(
            calls.update().where(calls.c.id == unfacted).values(facts=None, title="not the title")
        )
    return [*victims, underived, unfacted]


def _changes(store: Store) -> list[int]:
    """Change events on a few calls (the filled store has none): status moves and a type
    change, one with a number in its detail; on SQLite, an event and an identity whose time
    is in another form than SQLAlchemy writes (the record reads those). The ids of the odd
    rows: the event's, the identity's."""
    calls, log, identities = tables.calls, tables.audit_log, tables.identities
    odd: list[int] = []
    with store.begin() as tx:
        conn = tx.connection
        chosen = conn.execute(
            sa.select(calls.c.id, calls.c.created_at).order_by(calls.c.id).limit(4)
        ).all()
        moves = [
            ({"status": "registered"}, {"status": "in_progress"}, {"version": 2}),
            ({"status": "in_progress"}, {"status": "waiting"}, {"version": 3.5}),
            ({"call_type": "wish"}, {"call_type": "incident"}, None),
            ({"status": "registered"}, {"status": "classified"}, {"note": "ünïcode"}),
        ]
        sqlite = conn.dialect.name == "sqlite"
        for number, ((call_id, at), (before, after, detail)) in enumerate(
            zip(chosen, moves, strict=True)
        ):
            event = {
                "at": at, "call_id": call_id, "instance": None, "kind": "call_updated",
                "actor": "bridge", "before": before, "after": after, "detail": detail,
            }  # fmt: skip
            if sqlite and number == len(moves) - 1:
                # The log is append-only: the odd time is written as it is inserted.
                event.update(at="2026-03-01 10:00:00", before=json.dumps(before),
                             after=json.dumps(after), detail=json.dumps(detail))  # fmt: skip
                conn.exec_driver_sql(
                    "INSERT INTO audit_log (at, call_id, instance, kind, actor, before, after,"
                    " detail) VALUES (:at, :call_id, :instance, :kind, :actor, :before, :after,"
                    " :detail)",
                    event,
                )
            else:
                conn.execute(log.insert().values(event))
        if sqlite:
            odd_event = conn.execute(sa.select(sa.func.max(log.c.id))).scalar_one()
            identity = conn.execute(
                sa.select(identities.c.id).where(identities.c.call_id == chosen[0][0])
            ).scalar_one()
            conn.exec_driver_sql(
                "UPDATE identities SET created_at = '2026-03-01 10:00:00' WHERE id = ?",
                (identity,),
            )
            odd = [odd_event, identity]
    return odd


def test_the_row_pass_writes_the_model_pass_report_byte_for_byte(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill_store(store_url, CALLS, seed=17, now=NOW)
    host = PluginHost()
    with Store.open(store_url) as store:
        _forks(store)
        odd = _odd_rows(store)
        odd_related = _changes(store)
        calls = tables.calls
        with store.begin(readonly=True) as tx:
            held = [
                tx.connection.execute(sa.select(sa.func.count()).where(column)).scalar_one()
                for column in (
                    calls.c.forks.is_not(None),
                    calls.c.waiting_on.is_not(None),
                    calls.c.confirmation_kind.is_not(None),
                    calls.c.upstream.is_not(None),
                    tables.identities.c.correlation.is_not(None),
                    tables.chain_links.c.id.is_not(None),
                )
            ]
        assert all(held), held  # the odd members the report reads are in the store
        # The related rows are read as rows, but the odd ones (SQLite), which the records read.
        pages = list(CallSource(store.engine).pages())
        events = [event for page in pages for event in page.events()]
        identities = [
            each for page in pages for found in page.identities.values() for each in found
        ]
        assert len(events) >= 4 and len(identities) == CALLS  # and the forks' updates
        assert sum(len(page.links) for page in pages) == held[-1]
        assert all(
            isinstance(linked.link, LinkRow) for page in pages for linked in page.links.values()
        )
        records = [
            each.id for each in [*events, *identities] if isinstance(each, AuditEvent | Identity)
        ]
        assert records == odd_related
        assert all(
            isinstance(each, EventRow | IdentityRow | AuditEvent | Identity)
            for each in [*events, *identities]
        )
        # The row pass reads every call from its row but the odd ones, which the model reads:
        # it refuses the first two (listed, not judged) and reads the other two.
        entries = [stored for page in CallSource(store.engine).pages() for stored in page.calls]
        modelled = [stored for stored in entries if not isinstance(stored, CallRow)]
        assert sorted(stored.id for stored in modelled) == sorted(odd[2:])
        assert all(stored.call.title != "not the title" for stored in modelled)
        assert len(entries) == CALLS - 2
        # A report of some units reads theirs alone, both ways.
        some = [
            [(stored.id, stored.call.unit) for page in source.pages() for stored in page.calls]
            for source in (
                CallSource(store.engine, units=["it", "hr"], rows=rows) for rows in (True, False)
            )
        ]
        assert some[0] == some[1] and {unit for _, unit in some[0]} == {"it", "hr"}

        monkeypatch.delenv(BY_MODEL_ENV, raising=False)
        rows = JsonRenderer().render(build_report(_streamed(store, host), host))
        monkeypatch.setenv(BY_MODEL_ENV, "1")
        model = JsonRenderer().render(build_report(_streamed(store, host), host))
    assert rows == model
    assert CHECK_ID in rows and odd[0] in rows and odd[1] in rows
    # The report reads what the related rows hold: the status moves, the links' routes.
    report = json.loads(rows)
    observed = [o["metrics"].get("transitions_observed", 0) for o in report["outcomes"]]
    assert sum(observed) > 0 and "hr-to-facilities" in rows


def test_the_row_pass_writes_the_model_pass_report_over_the_real_event_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fill_store's calls take the shapes our own filler gives them; these come of a third
    # party's data (the UCI ServiceNow event log) through the shipped mapping and the ingest
    # stage: real texts, times and status histories.
    config = build(tmp_path, f"sqlite:///{tmp_path / 'it.db'}", EVENT_LOG_ROWS)
    vocab = vocabulary(EVENT_LOG_ROWS)
    vocabularies = {name: (vocab, "file", None) for name in config.instances}
    host = PluginHost()

    def rendered() -> str:
        with Store.open(config.store.url) as store:
            context = build_context(
                store, config, Period(), host=host, vocabularies=vocabularies, now=NOW
            )
            return JsonRenderer().render(build_report(context, host))

    with Store.open(config.store.url) as store, store.begin(readonly=True) as tx:
        stored = tx.connection.execute(sa.select(sa.func.count()).select_from(tables.calls))
        count = stored.scalar_one()
        entries = [each for page in CallSource(store.engine).pages() for each in page.calls]
    # Every incident of the log is read, each from its row (none doubted).
    assert count > 100 and len(entries) == count
    assert all(isinstance(each, CallRow) for each in entries)
    monkeypatch.delenv(BY_MODEL_ENV, raising=False)
    rows = rendered()
    monkeypatch.setenv(BY_MODEL_ENV, "1")
    assert rows == rendered()
    report = json.loads(rows)
    observed = [o["metrics"].get("transitions_observed", 0) for o in report["outcomes"]]
    assert sum(observed) > 0  # the log's real status moves were read from the related rows
