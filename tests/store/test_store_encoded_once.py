"""A call's JSON is encoded once on its way into the store, and reads back as it was stored.

The row's document, the content hash and the ``call_created`` event's content are one encoding
of the call (``usm_bridge/store/call_rows.py``), handed to the database as it is
(``JsonText``); the hash is the one ``content_hash`` gives, as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from usm_bridge.connector import RemoteDraft
from usm_bridge.errors import StoreError
from usm_bridge.model import Call, utcnow
from usm_bridge.store import Store, content_hash
from usm_bridge.store import schema as t
from usm_bridge.store.audit_log import audit_row
from usm_bridge.store.call_facts import DERIVED, LEFT_OUT
from usm_bridge.store.call_rows import encode_call
from usm_bridge.store.copy_rows import COPY_FROM, insert_rows
from usm_bridge.store.encoded_json import JsonText, encode_json, store_dumps
from usm_bridge.store.page_transaction import PageTransaction, remember_base
from usm_bridge.sync.calls import draft_json

#: Builds a call (tests/store/conftest.py's ``make_call`` fixture).
MakeCall = Callable[..., Call]

ATTRIBUTES = {
    "jira": {"labels": ["ünïcode", "tab\there"], "nested": {"b": 2, "a": [1.5, None, True]}},
}


@pytest.fixture
def rich_call(make_call: MakeCall) -> Call:
    """A call with non-ASCII text, quotes, backslashes and nested attributes."""
    return make_call(
        "10001",
        title='Drucker "3. OG" kaputt \\ Ärger',
        description="Zeile 1\nZeile 2 — ✓",
        attributes=ATTRIBUTES,
    )


@pytest.fixture
def encodings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every object the JSON encoder encodes that looks like a call (a title and a unit)."""
    seen: list[Any] = []
    original = json.JSONEncoder.encode

    def counting(self: json.JSONEncoder, value: Any) -> str:
        if isinstance(value, dict) and "title" in value and "unit" in value:
            seen.append(value)
        return original(self, value)

    monkeypatch.setattr(json.JSONEncoder, "encode", counting)
    yield seen


def _column(store: Store, column: sa.Column[Any], where: sa.ColumnElement[bool]) -> Any:
    with store.begin(readonly=True) as tx:
        return tx.connection.execute(sa.select(column).where(where)).scalar_one()


def _text_of(store: Store, column: sa.Column[Any], where: sa.ColumnElement[bool]) -> str:
    """The column's JSON as the database holds it."""
    return str(_column(store, sa.cast(column, sa.Text), where))


def test_a_new_call_is_encoded_once_and_reads_back_equal(
    store: Store, rich_call: Call, encodings: list[Any]
) -> None:
    with store.begin() as tx:
        result = tx.upsert_call(rich_call, instance="hr-jira")

    # The content once (row, hash and audit event share it), and the call's facts once: the
    # content without what a report does not read (call_facts.LEFT_OUT).
    content, facts = encodings
    assert "description" in content
    assert set(facts) == set(content) - set(LEFT_OUT + DERIVED) | {"id", "updated"}
    assert result.content_hash == content_hash(rich_call)
    with store.begin(readonly=True) as tx:
        stored = tx.get_call(rich_call.id)
        (created,) = tx.list_audit(call_id=rich_call.id, kind="call_created")
    assert stored is not None and stored.call == rich_call
    assert stored.content_hash == result.content_hash
    assert created.after == rich_call.content_fingerprint()
    document = _column(store, t.calls.c.canonical, t.calls.c.id == rich_call.id)
    assert document == rich_call.model_dump(mode="json")
    # Compact, as the store writes all its JSON now (revision 0011 matches either spelling).
    text = _text_of(store, t.calls.c.canonical, t.calls.c.id == rich_call.id)
    assert json.loads(text) == document and '", "' not in text and '": ' not in text


def test_a_changed_call_is_encoded_once_and_its_diff_is_recorded(
    store: Store, rich_call: Call, encodings: list[Any]
) -> None:
    with store.begin() as tx:
        tx.upsert_call(rich_call, instance="hr-jira")
    encodings.clear()
    changed = rich_call.model_copy(update={"title": "Drucker läuft wieder"})

    with store.begin() as tx:
        result = tx.upsert_call(changed, instance="hr-jira")

    assert len(encodings) == 2  # the content and the facts, as for a new call
    assert (result.changed, result.new_version, result.content_hash) == (
        True,
        2,
        content_hash(changed),
    )
    with store.begin(readonly=True) as tx:
        stored = tx.get_call(rich_call.id)
        (updated,) = tx.list_audit(call_id=rich_call.id, kind="call_updated")
    assert stored is not None and stored.call == changed
    assert (updated.before, updated.after) == (
        {"title": rich_call.title},
        {"title": "Drucker läuft wieder"},
    )


def test_a_page_stores_the_encoded_call_and_draft_as_they_read_back(
    store: Store, rich_call: Call
) -> None:
    draft = RemoteDraft(fields={"summary": "Ärger", "labels": ["a", "b"]}, status="Open")
    with store.begin() as tx:
        page = PageTransaction.begin(tx, "hr-jira", ["10001"])
        result = page._store_mapped_call(rich_call, instance="hr-jira")
        remember_base(
            page.as_transaction(), "hr-jira", "10001", draft, encoded=encode_json(
                draft.model_dump(mode="json")
            ),
        )  # fmt: skip
        # The page serves the call it stored without reading it back.
        served = page.get_call(result.call_id)
        assert served is not None and served.call == rich_call
        page.flush()

    with store.begin(readonly=True) as tx:
        stored = tx.get_call(result.call_id)
    assert stored is not None and stored.call == rich_call
    assert stored.content_hash == content_hash(rich_call)
    state = _column(store, t.remote_states.c.draft, t.remote_states.c.remote_id == "10001")
    assert RemoteDraft.model_validate(state) == draft


def test_the_content_hash_is_the_one_content_hash_gives(rich_call: Call) -> None:
    encoded = encode_call(rich_call)
    assert encoded.content_hash == content_hash(rich_call)
    assert json.loads(encoded.content) == rich_call.content_fingerprint()
    assert json.loads(encoded.document) == rich_call.model_dump(mode="json")


def test_a_value_that_is_not_json_is_refused_naming_the_call(
    store: Store, make_call: MakeCall
) -> None:
    try:
        call = make_call("10002", attributes={"jira": {"ratio": float("nan")}})
    except ValueError:
        pytest.skip("the model itself refuses NaN")
    with pytest.raises(StoreError, match=call.id), store.begin() as tx:
        tx.upsert_call(call)
    with store.begin(readonly=True) as tx:
        assert tx.get_call(call.id) is None  # nothing of it kept


def test_the_serializer_writes_encoded_text_as_it_is() -> None:
    text = JsonText('{"b":1,"a":[true,null]}')
    assert store_dumps(text) == text and type(store_dumps(text)) is str
    assert store_dumps({"a": "ü", "b": [1, 2]}) == '{"a":"\\u00fc","b":[1,2]}'
    assert store_dumps("plain text") == '"plain text"'  # a str not marked is a JSON string
    with pytest.raises(ValueError):
        store_dumps({"a": float("inf")})
    with pytest.raises(ValueError, match="not JSON"):
        encode_json({"a": object()})


def test_copy_writes_encoded_text_as_it_is(store: Store) -> None:
    """A page's rows go out by COPY on PostgreSQL (executemany on SQLite): encoded JSON is
    written exactly as encoded there too, not as a JSON string holding it."""
    text = JsonText('{"b":1,"a":"\\u00fc","c":[true,null]}')
    rows = [
        audit_row("call_created", call_id=None, instance="hr-jira", after=text, now=utcnow())
        for _ in range(COPY_FROM + 1)
    ]
    with store.begin() as tx:
        insert_rows(tx.connection, t.audit_log, rows)
    with store.begin(readonly=True) as tx:
        stored = tx.connection.execute(
            sa.select(sa.cast(t.audit_log.c.after, sa.Text)).where(
                t.audit_log.c.instance == "hr-jira"
            )
        ).scalars()
        assert list(stored) == [str(text)] * len(rows)
        events = tx.list_audit(instance="hr-jira")
    assert [event.after for event in events] == [json.loads(text)] * len(rows)


def test_every_text_of_a_call_is_the_plain_encoders_own(rich_call: Call) -> None:
    """Byte for byte what ``json.dumps`` with the store's options writes (the definition the
    rows stored before were written with): the content, its hash, the facts, the forks and the
    read draft. The encoders built once skip the check for cycles, which must change nothing."""
    numbers = {"ratio": 1e16, "big": 2**70, "neg": -0.0, "tiny": 2.5e-300}
    call = rich_call.model_copy(update={"attributes": {**rich_call.attributes, "more": numbers}})
    encoded = encode_call(call)
    canonical = call.model_dump(mode="json")
    content = {k: v for k, v in canonical.items() if k not in ("id", "updated")}
    sorted_ascii = {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": True}
    assert encoded.content == json.dumps(content, **sorted_ascii)  # type: ignore[arg-type]
    assert encoded.content_hash == hashlib.sha256(encoded.content.encode()).hexdigest()
    facts = {k: v for k, v in canonical.items() if k not in (*LEFT_OUT, *DERIVED)}
    assert encoded.facts == json.dumps(facts, separators=(",", ":"), ensure_ascii=True)
    assert store_dumps({"before": canonical}) == json.dumps(
        {"before": canonical}, separators=(",", ":")
    )
    draft = RemoteDraft(fields={"summary": 'Ärger \\ "x"', "n": [1.5, 2**70, None]}, status="open")
    assert draft_json(draft) == json.dumps(draft.model_dump(mode="json"), **sorted_ascii)  # type: ignore[arg-type]
