"""Revision 0015: every call row keeps the call's facts (``calls.facts``: its document without
texts, people, comments and attributes), written with the document on every path that stores
a call, derived by the migration for the calls stored before it; the model reads the facts as
the call less those members."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from store.store_revisions import downgrade, upgraded_keeping

from usm_bridge.model import Call, Person
from usm_bridge.store import SchemaPolicy, Store
from usm_bridge.store import schema as tables
from usm_bridge.store.call_facts import DERIVED, LEFT_OUT
from usm_bridge.store.page_transaction import PageTransaction

MakeCall = Callable[..., Call]


def _rows(store: Store) -> dict[str, tuple[Any, str | None]]:
    """Each call's document (decoded where it is JSON) and facts (as stored), by id."""
    calls = tables.calls
    with store.begin(readonly=True) as tx:
        rows = tx.connection.execute(
            sa.select(calls.c.id, sa.cast(calls.c.canonical, sa.Text), calls.c.facts)
        )
        return {str(call_id): (_decoded(text), facts) for call_id, text, facts in rows}


def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _rich(make_call: MakeCall, key: str, **fields: Any) -> Call:
    person = Person(name="Anna Öztürk", email="anna@example.com")
    return make_call(
        key,
        description='Zeile 1\n"quoted" \\ ✓',
        requester=person,
        customer=person,
        assignee=person,
        attributes={"jira": {"labels": ["a", "b"]}},
        **fields,
    )


def _assert_facts_of_documents(store: Store, calls: list[Call]) -> None:
    rows = _rows(store)
    assert set(rows) == {call.id for call in calls}
    for call in calls:
        document, facts = rows[call.id]
        assert facts is not None
        # The document less the members left out, and nothing else.
        assert json.loads(facts) == {
            k: v for k, v in document.items() if k not in LEFT_OUT + DERIVED
        }
        # The model reads the facts as the call without those members.
        lean = call.model_copy(update={name: Call.model_fields[name].get_default(
            call_default_factory=True) for name in LEFT_OUT})  # fmt: skip
        assert Call.model_validate_json(facts) == lean
        assert lean.title == call.title and lean.description == ""


def test_every_path_that_stores_a_call_writes_its_facts(store: Store, make_call: MakeCall) -> None:
    alone = _rich(make_call, "IT-1")
    with store.begin() as tx:
        tx.upsert_call(alone, instance="it-snow")
    # A page of several new calls (COPY on PostgreSQL, tuples on SQLite).
    paged = [_rich(make_call, f"IT-{n}", title=f"Drucker {n} kaputt") for n in range(2, 6)]
    with store.begin() as tx:
        page = PageTransaction.begin(tx, "it-snow", [f"IT-{n}" for n in range(2, 6)])
        for call in paged:
            page._store_mapped_call(call, instance="it-snow")
        page.flush()
    _assert_facts_of_documents(store, [alone, *paged])

    # A change rewrites the facts with the document, alone and on a page.
    changed = alone.model_copy(update={"title": "Drucker läuft", "priority": "high"})
    repaged = paged[0].model_copy(update={"service": "printing"})
    with store.begin() as tx:
        tx.upsert_call(changed, instance="it-snow")
    with store.begin() as tx:
        page = PageTransaction.begin(tx, "it-snow", ["IT-2"])
        page._store_mapped_call(repaged, instance="it-snow")
        page.flush()
    _assert_facts_of_documents(store, [changed, repaged, *paged[1:]])
    assert json.loads(str(_rows(store)[changed.id][1]))["priority"] == "high"


def _insert_raw(store: Store, call_id: str, document: str) -> None:
    """A row whose document is ``document``, written with plain SQL as revision 0014 had it."""
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO calls (id, unit, call_type, status, canonical, version, "
                "content_hash, created_at, updated_at, open_forks) VALUES (:id, 'it', "
                "'incident', 'registered', :doc, 1, :hash, :at, :at, :no)"
            ),
            {
                "id": call_id,
                "doc": document,
                "hash": "0" * 64,
                "at": "2026-12-01 10:00:00.000000",
                "no": False,
            },
        )


def test_revision_0015_derives_the_facts_of_the_calls_stored_before_it(
    store_url: str, make_call: MakeCall
) -> None:
    calls = [_rich(make_call, f"IT-{n}") for n in range(1, 4)]
    with Store.open(store_url) as store:
        with store.begin() as tx:
            for call in calls:
                tx.upsert_call(call, instance="it-snow")
        downgrade(store, "0014")
        columns = {c["name"] for c in sa.inspect(store.engine).get_columns("calls")}
        assert "facts" not in columns
        # A document that is JSON but not an object (PostgreSQL's json type refuses text that
        # is not JSON at all; SQLite keeps it: both kinds get no facts).
        _insert_raw(store, "call_not_an_object", "[1, 2]")
        if store.dialect == "sqlite":
            _insert_raw(store, "call_not_json", "{broken")
    with upgraded_keeping(store_url, calls[0]) as store:
        rows = _rows(store)
        for call in calls:
            document, facts = rows[call.id]
            assert facts is not None
            assert json.loads(facts) == {
                k: v for k, v in document.items() if k not in LEFT_OUT + DERIVED
            }
        assert rows["call_not_an_object"][1] is None
        if store.dialect == "sqlite":
            assert rows["call_not_json"][1] is None
    # Downgrading drops the column; the calls read back as they were.
    with Store.open(store_url, schema=SchemaPolicy.INSPECT) as store:
        with store.begin() as tx:
            tx.connection.execute(tables.calls.delete().where(tables.calls.c.id.like("call_not_%")))
        downgrade(store, "0014")
        columns = {c["name"] for c in sa.inspect(store.engine).get_columns("calls")}
        assert "facts" not in columns
    with upgraded_keeping(store_url, calls[1]):
        pass
