"""Revision 0016: the members the data checks read are columns of the call's row
(``call_facts.FACT_COLUMNS``), written with the document on every path that stores a call and
derived by the migration from the facts of the calls stored before it."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from store.store_revisions import downgrade, upgraded_keeping

from usm_bridge.model import (
    Call,
    CallType,
    ChainLinks,
    Confirmation,
    ConfirmationKind,
    ForkRole,
    Impact,
    ProcessLink,
    SourceRef,
    Status,
    Urgency,
    UsmProcess,
    WaitingOn,
)
from usm_bridge.store import SchemaPolicy, Store
from usm_bridge.store import schema as tables
from usm_bridge.store.call_facts import FACT_COLUMNS, TITLE_CHARS, fact_columns, facts_of
from usm_bridge.store.page_transaction import PageTransaction
from usm_bridge.store.schema_head import VERSIONS

MakeCall = Callable[..., Call]
_TIME = TypeAdapter(datetime)
#: A tool in another zone than UTC: the columns keep its offset, as the document does.
_BERLIN = timezone(timedelta(hours=1))
_T = datetime(2026, 3, 2, 8, 15, 30, 123456, tzinfo=_BERLIN)


def _migration() -> ModuleType:
    """Revision 0016's module, loaded from its file (Alembic does not import it by name)."""
    spec = importlib.util.spec_from_file_location(
        "revision_0016", VERSIONS / "0016_call_fact_columns.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_MIGRATION = _migration()


def _full(make_call: MakeCall, key: str, **fields: Any) -> Call:
    """A call with every member a column keeps set (the title longer than a column keeps)."""
    values: dict[str, Any] = {
        "source": SourceRef(
            instance="it-snow",
            remote_id=f"sys-{key}",
            remote_key=key,
            url=f"https://it.example.com/{key}",
        ),
        "call_type": CallType.INCIDENT,
        "status": Status.CLOSED,
        "title": "Drucker " + "ä" * 300,
        "priority": "high",
        "impact": Impact.HIGH,
        "urgency": Urgency.MEDIUM,
        "service": "printing",
        "agreement": "sla-it",
        "customer_unit": "hr",
        "created": _T,
        "updated": _T + timedelta(hours=5),
        "fulfilled": _T + timedelta(hours=3),
        "confirmed": _T + timedelta(hours=4),
        "closed": _T + timedelta(hours=5),
        "confirmation": Confirmation(
            kind=ConfirmationKind.IMPLICIT, at=_T + timedelta(hours=4), how="no answer in 5 days"
        ),
        "chain": ChainLinks(
            upstream="call_upstream",
            forks=[
                ProcessLink(role=ForkRole.SECONDARY, process=UsmProcess.CHANGE, ref="CHG-7"),
                ProcessLink(role=ForkRole.PRIMARY, ref="PRB-2", instance="it-jira", call="c-2"),
            ],
        ),
    }
    values.update(fields)
    return make_call(id=key, **values)


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else str(_TIME.dump_python(moment, mode="json"))


def _expected(call: Call) -> dict[str, Any]:
    """The columns of ``call``, worked out from the model's values (not from the document)."""
    source, confirmation, forks = call.source, call.confirmation, call.chain.forks
    return {
        "priority": call.priority,
        "impact": call.impact.value if call.impact else None,
        "urgency": call.urgency.value if call.urgency else None,
        "service": call.service,
        "agreement": call.agreement,
        "customer_unit": call.customer_unit,
        "waiting_on": call.waiting_on.value if call.waiting_on else None,
        "waiting_process": call.waiting_process.value if call.waiting_process else None,
        "title": call.title[:200],
        "source_instance": source.instance if source else None,
        "source_remote_id": source.remote_id if source else None,
        "source_remote_key": source.remote_key if source else None,
        "source_url": source.url if source else None,
        "tool_created": _when(call.created),
        "tool_updated": _when(call.updated),
        "tool_fulfilled": _when(call.fulfilled),
        "tool_confirmed": _when(call.confirmed),
        "tool_closed": _when(call.closed),
        "upstream": call.chain.upstream,
        "confirmation_kind": confirmation.kind.value if confirmation else None,
        "confirmation_at": _when(confirmation.at) if confirmation else None,
        "confirmation_how": confirmation.how if confirmation else None,
        "forks": ([fork.model_dump(mode="json") for fork in forks] if forks else None),
    }


def _stored(store: Store) -> dict[str, dict[str, Any]]:
    """Each row's fact columns (the forks decoded) and its facts, by call id."""
    calls = tables.calls
    with store.begin(readonly=True) as tx:
        rows = tx.connection.execute(
            sa.select(calls.c.id, calls.c.facts, *(calls.c[name] for name in FACT_COLUMNS))
        ).mappings()
        found = {}
        for row in rows:
            columns = {name: row[name] for name in FACT_COLUMNS}
            if columns["forks"] is not None:
                columns["forks"] = json.loads(columns["forks"])
            found[str(row["id"])] = {**columns, "_facts": row["facts"]}
        return found


def _assert_columns_of(store: Store, calls: list[Call]) -> None:
    stored = _stored(store)
    assert set(stored) == {call.id for call in calls}
    for call in calls:
        row = stored[call.id]
        facts = row.pop("_facts")
        assert row == _expected(call), call.id
        # The same as the store's function over the row's own facts (what 0016 derives from).
        derived = fact_columns(json.loads(facts))
        derived["forks"] = json.loads(derived["forks"]) if derived["forks"] else None
        assert row == derived


def test_every_path_that_stores_a_call_writes_its_fact_columns(
    store: Store, make_call: MakeCall
) -> None:
    alone = _full(make_call, "IT-1")
    bare = make_call(id="IT-9", title="x")  # every optional member absent: NULL columns
    with store.begin() as tx:
        tx.upsert_call(alone, instance="it-snow")
        tx.upsert_call(bare)
    assert _stored(store)["IT-9"]["priority"] is None
    assert _stored(store)["IT-1"]["title"] == "Drucker " + "ä" * (TITLE_CHARS - 8)
    # A page of several new calls (COPY on PostgreSQL, tuples on SQLite).
    paged = [_full(make_call, f"IT-{n}", priority=f"p{n}", service=f"svc-{n}") for n in range(2, 6)]
    with store.begin() as tx:
        page = PageTransaction.begin(tx, "it-snow", [f"sys-IT-{n}" for n in range(2, 6)])
        for call in paged:
            page._store_mapped_call(call, instance="it-snow")
        page.flush()
    _assert_columns_of(store, [alone, bare, *paged])

    # A change rewrites the columns with the document, alone and on a page; a member removed
    # becomes NULL.
    changed = alone.model_copy(
        update={
            "priority": "low",
            "confirmation": None,
            "chain": ChainLinks(),
            "waiting_on": WaitingOn.SUPPLIER,
            "status": Status.WAITING,
        }
    )
    repaged = paged[0].model_copy(update={"service": "scanning", "source": None})
    with store.begin() as tx:
        tx.upsert_call(changed, instance="it-snow")
    with store.begin() as tx:
        page = PageTransaction.begin(tx, "it-snow", ["sys-IT-2"])
        page._store_mapped_call(repaged, instance="it-snow")
        page.flush()
    _assert_columns_of(store, [changed, bare, repaged, *paged[1:]])
    assert _stored(store)["IT-1"]["confirmation_kind"] is None
    assert _stored(store)["IT-1"]["waiting_on"] == "supplier"


def _insert_0015(conn: sa.Connection, rows: list[tuple[str, str | None]]) -> None:
    """Rows (id, facts) as revision 0015 had them, written with plain SQL (their documents a
    stand-in)."""
    conn.execute(
        sa.text(
            "INSERT INTO calls (id, unit, call_type, status, canonical, facts, version, "
            "content_hash, created_at, updated_at, open_forks) VALUES (:id, 'it', "
            "'incident', 'registered', '{}', :facts, 1, :hash, :at, :at, :no)"
        ),
        [
            {
                "id": call_id,
                "facts": facts,
                "hash": "0" * 64,
                "at": "2026-12-01 10:00:00.000000",
                "no": False,
            }
            for call_id, facts in rows
        ],
    )


def test_revision_0016_derives_the_columns_of_the_calls_stored_before_it(
    store_url: str, make_call: MakeCall
) -> None:
    kept = _full(make_call, "IT-1")
    batch = _MIGRATION._BATCH
    with Store.open(store_url) as store:
        with store.begin() as tx:
            tx.upsert_call(kept, instance="it-snow")
        facts = _stored(store)[kept.id]["_facts"]
        downgrade(store, "0015")
        columns = {c["name"] for c in sa.inspect(store.engine).get_columns("calls")}
        assert columns.isdisjoint(FACT_COLUMNS)
        # More rows than one batch derives, each with its own members (a row given another
        # row's columns shows), ...
        template = json.loads(facts)
        rows: list[tuple[str, str | None]] = []
        for n in range(batch + 5):
            varied = {**template, "priority": f"p{n}", "title": f"call {n}"}
            varied["source"] = {**template["source"], "remote_key": f"IT-{n}"}
            rows.append((f"call_{n:05d}", json.dumps(varied)))
        # ... a row without facts, facts that are not an object, and members the model would
        # refuse (not text, too long for the column): NULL, the rest derived.
        refused = {**template, "priority": 7, "service": "s" * 301, "chain": "none"}
        rows += [
            ("odd_no_facts", None),
            ("odd_not_an_object", "[1, 2]"),
            ("odd_refused", json.dumps(refused)),
        ]
        with store.engine.begin() as conn:
            _insert_0015(conn, rows)
    with upgraded_keeping(store_url, kept) as store:
        stored = _stored(store)
        assert len(stored) == batch + 5 + 4
        for n in range(batch + 5):
            row = stored[f"call_{n:05d}"]
            assert (row["priority"], row["title"], row["source_remote_key"]) == (
                f"p{n}",
                f"call {n}",
                f"IT-{n}",
            )
            assert row["tool_created"] == _when(kept.created)
            assert row["forks"] == _expected(kept)["forks"]
        row = stored.pop(kept.id)
        row.pop("_facts")
        assert row == _expected(kept)
        for odd in ("odd_no_facts", "odd_not_an_object"):
            assert all(stored[odd][name] is None for name in FACT_COLUMNS), odd
        refused_row = stored["odd_refused"]
        assert refused_row["priority"] is None and refused_row["service"] is None
        assert refused_row["upstream"] is None and refused_row["forks"] is None
        assert refused_row["agreement"] == "sla-it" and refused_row["tool_closed"] is not None
    # Downgrading drops the columns; the calls read back as they were.
    with Store.open(store_url, schema=SchemaPolicy.INSPECT) as store:
        downgrade(store, "0015")
        columns = {c["name"] for c in sa.inspect(store.engine).get_columns("calls")}
        assert columns.isdisjoint(FACT_COLUMNS)
    with upgraded_keeping(store_url, kept):
        pass


@st.composite
def _calls(draw: st.DrawFn) -> Call:
    """Calls with each member a column keeps absent or present, times in several zones."""
    zone = timezone(timedelta(minutes=draw(st.sampled_from([0, 60, -300, 330]))))
    created = datetime(2026, 3, 1, tzinfo=zone) + timedelta(
        microseconds=draw(st.integers(0, 10**12))
    )
    later = created + timedelta(microseconds=draw(st.integers(0, 10**10)))
    maybe = st.none() | st.just(later)
    status = draw(st.sampled_from(Status))
    waiting_on = draw(st.sampled_from(WaitingOn)) if status is Status.WAITING else None
    forks = [
        ProcessLink(
            role=draw(st.sampled_from(ForkRole)),
            process=draw(st.none() | st.sampled_from(UsmProcess)),
            ref=draw(st.text(min_size=1, max_size=5)),
            call=draw(st.none() | st.just("call_other")),
        )
        for _ in range(draw(st.integers(0, 2)))
    ]
    confirmation = draw(
        st.none()
        | st.builds(
            Confirmation,
            kind=st.sampled_from(ConfirmationKind),
            at=maybe,
            how=st.none() | st.text(max_size=5),
        )
    )
    source = draw(
        st.none()
        | st.builds(
            SourceRef,
            instance=st.just("hr-mail"),
            remote_id=st.text(min_size=1, max_size=8),
            remote_key=st.none() | st.text(max_size=5),
            url=st.none() | st.just("https://jira.example/browse/HR-2"),
        )
    )
    return Call(
        unit="hr",
        source=source,
        call_type=CallType.INCIDENT,
        status=status,
        waiting_on=waiting_on,
        waiting_process=(UsmProcess.CHANGE if waiting_on is WaitingOn.SECONDARY_PROCESS else None),
        title=draw(st.text(max_size=300)),
        customer_unit=draw(st.none() | st.just("it")),
        service=draw(st.none() | st.text(max_size=5)),
        agreement=draw(st.none() | st.text(max_size=5)),
        impact=draw(st.none() | st.sampled_from(Impact)),
        urgency=draw(st.none() | st.sampled_from(Urgency)),
        priority=draw(st.none() | st.text(max_size=5)),
        created=created,
        updated=later,
        fulfilled=draw(maybe),
        confirmed=draw(maybe),
        closed=draw(maybe),
        confirmation=confirmation,
        chain=ChainLinks(upstream=draw(st.none() | st.just("call_up")), forks=forks),
    )


@settings(max_examples=100, deadline=None)
@given(_calls())
def test_the_store_and_revision_0016_derive_the_same_columns(call: Call) -> None:
    """The store's function (new rows) and the migration's frozen copy (rows stored before)
    give each call the columns its model values say."""
    document = call.model_dump(mode="json")
    written = fact_columns(document)
    derived = _MIGRATION._columns(str(facts_of(document)))
    assert derived is not None
    assert {name.removeprefix("b_"): value for name, value in derived.items()} == written
    assert list(written) == list(FACT_COLUMNS)
    written["forks"] = json.loads(written["forks"]) if written["forks"] else None
    assert written == _expected(call)
