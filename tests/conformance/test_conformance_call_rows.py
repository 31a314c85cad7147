"""The report's row reader (``call_rows``) accepts a row only where the model accepts the call
the row's facts hold, and then reads every member the report reads as the model does; every
row it doubts is the model's to read (so a call the model refuses is listed, as before).

The rows are derived the way the store and the upgrade derive them (``fact_columns`` of the
facts), from facts mutated in every member the columns show, the ways a hand edit or an older
version may leave them (``test_conformance_facts_reader``'s mutations)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_conformance_facts_reader import _AT, _ODD_VALUES, _by_model, _facts, _valid_calls, mutate

from usm_bridge.call_view import CallView
from usm_bridge.conformance import call_rows
from usm_bridge.conformance.call_rows import ROW_COLUMNS, CallRow, call_row, with_customer_unit
from usm_bridge.model import Call
from usm_bridge.store.call_facts import fact_columns

#: The members the columns show, as key paths in the facts (the leaves ``fact_columns``
#: reads). What only the facts hold (a confirmation's person, the chain's suppliers) leaves no
#: trace in the columns: a row the store never writes, judged by its columns (``call_rows``).
_SHOWN: list[tuple[str | int, ...]] = [
    ("unit",),
    ("call_type",),
    ("status",),
    ("source", "instance"),
    ("source", "remote_id"),
    ("source", "remote_key"),
    ("source", "url"),
    ("waiting_on",),
    ("waiting_process",),
    ("customer_unit",),
    ("service",),
    ("agreement",),
    ("impact",),
    ("urgency",),
    ("priority",),
    ("created",),
    ("updated",),
    ("fulfilled",),
    ("confirmed",),
    ("closed",),
    ("confirmation", "kind"),
    ("confirmation", "at"),
    ("confirmation", "how"),
    ("chain", "upstream"),
    ("chain", "forks"),
    ("chain", "forks", 0, "role"),
    ("chain", "forks", 0, "ref"),
    ("chain", "forks", 0, "instance"),
    ("chain", "forks", 0, "process"),
    ("chain", "forks", 0, "via"),
    ("chain", "forks", 0, "call"),
    ("chain", "forks", 0, "colour"),
]


def _row(facts: dict[str, Any], *, key: str = "call_1", missing: bool = False) -> tuple[Any, ...]:
    """The row the store keeps for ``facts`` (its key ``key``), as the pass selects it."""
    columns = fact_columns(facts)
    own = {
        "id": key,
        "unit": facts.get("unit"),
        "call_type": facts.get("call_type", "unclassified"),
        "status": facts.get("status", "registered"),
        "facts_missing": int(missing),
    }
    return tuple({**own, **columns}[name] for name in ROW_COLUMNS)


def _read_alike(row: CallView, model: Call) -> None:
    """Every member the report reads, the same (the title as the column keeps it)."""
    for name in (
        "id", "unit", "call_type", "status", "process", "priority", "impact", "urgency",
        "service", "agreement", "customer_unit", "waiting_on", "waiting_process",
    ):  # fmt: skip
        mine, theirs = getattr(row, name), getattr(model, name)
        assert mine == theirs and type(mine) is type(theirs), name
    assert row.title == model.title[:200]
    for name in ("created", "updated", "fulfilled", "confirmed", "closed"):
        mine, theirs = getattr(row, name), getattr(model, name)
        assert mine == theirs, name
        if theirs is not None:
            assert mine.utcoffset() == theirs.utcoffset(), name
    if model.source is None:
        assert row.source is None
    else:
        assert row.source is not None
        for name in ("instance", "remote_id", "remote_key", "url"):
            assert getattr(row.source, name) == getattr(model.source, name), name
    assert row.chain.upstream == model.chain.upstream
    assert list(row.chain.forks) == model.chain.forks
    if model.confirmation is None:
        assert row.confirmation is None
    else:
        assert row.confirmation is not None
        assert row.confirmation.kind is model.confirmation.kind
        assert row.confirmation.at == model.confirmation.at
        assert row.confirmation.how == model.confirmation.how


@settings(max_examples=100, deadline=None)
@given(call=_valid_calls())
def test_the_rows_the_store_writes_are_read_as_the_model_reads_their_calls(call: Call) -> None:
    facts = json.loads(_facts(call))
    row = call_row(_row(facts, key=call.id))
    # Taken, never left to the model (what makes the report's pass cheaper) ...
    assert row is not None
    # ... and read alike.
    _read_alike(row, call)


_TIMES = [
    "2026-03-01T09:30:00",
    "2026-03-01 09:30:00Z",
    "2026-03-01T09:30Z",
    "2026-03-01T09:30:00,5Z",
    "2026-03-01T09:30:00+0200",
    "2026-03-01T09:30:00+02:00",
    "2026-03-01T09:30:00.1234567Z",
    "2026-02-30T09:30:00Z",
    "2026-03-01T24:00:00Z",
    "2026-03-01",
    "2000-01-01T00:00:00Z",
    "2030-01-01T00:00:00-05:00",
]
_TEXTS = ["", "hr\n", "HR", "a" * 63, "a" * 64, "é", *("x" * n for n in (100, 101, 300, 301))]
_TEXTS += ["x" * 2000, "x" * 2001]
#: Values aimed at each member's own rule (the odd values of every kind, too, below).
_AIMED = st.sampled_from(_TIMES + _TEXTS + ["Closed", "waiting", "secondary_process", "implicit"])


@st.composite
def _mutated(draw: st.DrawFn, call: Call) -> dict[str, Any]:
    """``call``'s facts with a few members the columns show changed or removed."""
    facts: dict[str, Any] = json.loads(_facts(call))
    mutate(draw, facts, _SHOWN, _AIMED | _ODD_VALUES)
    return facts


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _as_the_columns_show(facts: dict[str, Any]) -> dict[str, Any]:
    """The facts as their columns show them, where the columns cannot tell two apart: the
    title's first 200 characters, no forks for null ones, no source (confirmation) for one
    whose every member the columns keep is null."""
    shown = dict(facts)
    if isinstance(shown.get("title"), str):
        shown["title"] = shown["title"][:200]
    for name, members in (
        ("source", ("instance", "remote_id", "remote_key", "url")),
        ("confirmation", ("kind", "at", "how")),
    ):
        found = shown.get(name)
        if isinstance(found, dict) and all(found.get(member) is None for member in members):
            shown[name] = None
    chain = shown.get("chain")
    if not chain:
        shown.pop("chain", None)
    elif isinstance(chain, dict) and not chain.get("forks"):
        shown["chain"] = {**chain, "forks": []}
    return shown


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), call=_valid_calls())
def test_the_row_reader_accepts_only_what_the_model_accepts_and_reads_it_the_same(
    data: st.DataObject, call: Call
) -> None:
    facts = data.draw(_mutated(call))
    values = _row(facts, key=call.id)
    # A column holds UTF-8 text: a lone surrogate (which the facts' JSON may escape) is no
    # value a row can hold.
    assume(all(_utf8(value) for value in values if isinstance(value, str)))
    row = call_row(values)
    # What the columns cannot tell apart, the reader cannot either: a row it accepts holds a
    # call the model accepts, read alike (a title over 1,000 characters, say, is read as its
    # first 200, a valid title).
    model = _by_model(json.dumps(_as_the_columns_show(facts)))
    if row is not None:
        assert isinstance(model, Call), f"the row reader took what the model refuses: {model}"
        _read_alike(row, model)


def test_a_row_without_facts_or_with_odd_values_is_the_models() -> None:
    """Each doubt alone: no facts (never derived), an unknown member, a time without a zone or
    no date, ``updated`` before ``created``, a name off the pattern, a source without its id,
    a text too long, a fork the model refuses."""
    call = Call(unit="hr", title="t", created=_AT, updated=_AT)
    facts = json.loads(_facts(call))
    assert call_row(_row(facts, key=call.id)) is not None
    assert call_row(_row(facts, key=call.id, missing=True)) is None
    for member, value in [
        ("status", "Closed"),
        ("created", "2026-03-01T09:30:00"),
        ("updated", "2026-02-01T09:30:00Z"),
        ("unit", "hr\n"),
        ("source", {"instance": "hr-mail", "remote_key": "HR-1"}),
        ("source", {"instance": "hr-mail", "remote_id": ""}),
        ("source", {"instance": "hr_mail!", "remote_id": "1"}),
        ("confirmation", {"at": "2026-03-01T09:30:00Z"}),
        ("confirmation", {"kind": "implicit", "at": "2026-03-01T09:30:00"}),
        ("fulfilled", "2026-03-01T09:30:00"),
        ("closed", "2026-02-30T09:30:00Z"),
        ("priority", "x" * 101),
        ("customer_unit", "a" * 64),
        ("impact", "High"),
        ("chain", {"forks": [{"role": "sideways", "ref": "r"}]}),
    ]:
        odd = {**facts, member: value}
        assert call_row(_row(odd, key=call.id)) is None, member
        assert isinstance(_by_model(json.dumps(odd)), str), member


def test_a_call_asked_about_another_customer_is_a_copy_of_its_own_kind() -> None:
    call = Call(unit="hr", title="t", created=_AT, updated=_AT, customer_unit="it")
    row = call_row(_row(json.loads(_facts(call)), key=call.id))
    assert isinstance(row, CallRow)
    for given_call in (call, row):
        other = with_customer_unit(given_call, "facilities")
        assert type(other) is type(given_call) and other is not given_call
        assert (other.customer_unit, given_call.customer_unit) == ("facilities", "it")
        assert (other.unit, other.created, other.id) == ("hr", _AT, call.id)


def test_the_names_checked_once_are_kept_up_to_a_bound_and_still_checked_past_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(call_rows, "_NAMES", set())
    monkeypatch.setattr(call_rows, "_NAMES_KEPT", 3)
    call = Call(unit="hr", title="t", created=_AT, updated=_AT)
    facts = json.loads(_facts(call))
    for index in range(6):
        row = call_row(_row({**facts, "unit": f"unit-{index}"}, key=call.id))
        assert row is not None and row.unit == f"unit-{index}"
    assert {"unit-0", "unit-1", "unit-2"} == call_rows._NAMES
    # Past the bound each name is still held to the model's pattern.
    assert call_row(_row({**facts, "unit": "unit 7!"}, key=call.id)) is None
