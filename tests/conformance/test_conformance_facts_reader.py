"""The report's reader of stored facts (the model's twin, ``facts_reader``) accepts a row only
where the model accepts it, and then builds the very call the model builds; every row it
doubts is decided by the model, so a row the model refuses is listed with the model's reason.

The facts are mutated the ways a hand edit, an older version or a broken disk may leave them:
wrong enum values, naive and oddly written timestamps, ``updated`` before ``created``, bad
names, missing and unknown members, values of the wrong type, nulls, huge texts, text that is
not JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from usm_bridge.conformance.facts_reader import read_call_facts
from usm_bridge.conformance.stored_rows import read_stored_calls
from usm_bridge.model import (
    Call,
    CallType,
    ChainLinks,
    Confirmation,
    ConfirmationKind,
    ForkRole,
    Person,
    ProcessLink,
    SourceRef,
    Status,
    UsmProcess,
    WaitingOn,
)
from usm_bridge.store.call_facts import facts_of

_AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def _facts(call: Call) -> str:
    return str(facts_of(call.model_dump(mode="json")))


@st.composite
def _valid_calls(draw: st.DrawFn) -> Call:
    """Calls as the store keeps them: every member the facts hold, in its valid forms."""
    status = draw(st.sampled_from(Status))
    waiting_on = draw(st.sampled_from(WaitingOn)) if status is Status.WAITING else None
    call_type = draw(st.sampled_from(CallType))
    if call_type is CallType.UNCLASSIFIED and status in (Status.IN_PROGRESS, Status.WAITING):
        call_type = CallType.INCIDENT
    created = _AT + timedelta(microseconds=draw(st.integers(0, 10**12)))
    updated = created + timedelta(microseconds=draw(st.integers(0, 10**10)))
    forks = [
        ProcessLink(
            role=draw(st.sampled_from(ForkRole)),
            process=draw(st.none() | st.sampled_from(UsmProcess)),
            ref=draw(st.text(min_size=1, max_size=5)),
            instance=draw(st.none() | st.just("it-requests")),
            call=draw(st.none() | st.just("call_other")),
            via=draw(st.none() | st.just("incident.rfc")),
        )
        for _ in range(draw(st.integers(0, 2)))
    ]
    confirmation = draw(
        st.none()
        | st.builds(
            Confirmation,
            kind=st.sampled_from(ConfirmationKind),
            by=st.none() | st.just(Person(name="Ann", email="ann@example.com")),
            at=st.none() | st.just(updated),
            how=st.none() | st.text(max_size=5),
        )
    )
    return Call(
        id=draw(st.sampled_from(["call_1", "call_" + "f" * 32, ""])),
        unit=draw(st.sampled_from(["hr", "it", "facilities", "a" * 63])),
        source=draw(
            st.none()
            | st.builds(
                SourceRef,
                instance=st.just("hr-mail"),
                remote_id=st.text(min_size=1, max_size=8),
                remote_key=st.none() | st.just("HR-2"),
                url=st.none() | st.just("https://jira.example/browse/HR-2"),
            )
        ),
        call_type=call_type,
        status=status,
        waiting_on=waiting_on,
        waiting_process=UsmProcess.CHANGE
        if waiting_on is WaitingOn.SECONDARY_PROCESS and draw(st.booleans())
        else None,
        title=draw(st.text(max_size=10)),
        description="left out of the facts",
        customer_unit=draw(st.none() | st.just("hr")),
        service=draw(st.none() | st.just("people")),
        agreement=draw(st.none() | st.just("sla-hr")),
        impact=draw(st.none() | st.sampled_from(["high", "nil"])),
        urgency=draw(st.none() | st.sampled_from(["low", "medium"])),
        priority=draw(st.none() | st.just("planning")),
        created=created,
        updated=updated,
        fulfilled=draw(st.none() | st.just(updated)),
        confirmed=draw(st.none() | st.just(updated)),
        closed=draw(st.none() | st.just(updated)),
        confirmation=confirmation,
        chain=ChainLinks(
            upstream=draw(st.none() | st.just("call_up")),
            suppliers=draw(st.lists(st.just("call_sup"), max_size=2)),
            forks=forks,
        ),
    )


#: Values a member may be found holding: each member's neighbours in every JSON type.
_ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            # enum values, near misses among them
            "wish",
            "Wish",
            "incident ",
            "waiting",
            "in_progress",
            "secondary_process",
            "closed",
            "explicit",
            "implicit",
            "primary",
            "agree",
            "improve",
            "high",
            "nil",
            # timestamps in the store's form, and in every other form
            "2026-03-01T09:30:00Z",
            "2026-03-01T09:30:00.123456Z",
            "2026-03-01T09:30:00+02:00",
            "2026-03-01T09:30:00-00:00",
            "2026-03-01T09:30:00",
            "2026-03-01 09:30:00Z",
            "2026-03-01t09:30:00z",
            "2026-03-01T09:30Z",
            "2026-03-01T09:30:00.1234567Z",
            "2026-03-01T09:30:00,5Z",
            "2026-03-01T09:30:00+0200",
            "2026-03-01T09:30:00+24:00",
            "2026-13-01T09:30:00Z",
            "2026-02-30T09:30:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "2026-03-01",
            "1772357400",
            "2000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999-23:59",
            # names and texts
            "hr",
            "HR",
            "hr\n",
            "hr\r\n",
            " hr",
            "h r",
            "1hr",
            "a" * 63,
            "a" * 64,
            "é",
            "",
            "x" * 100,
            "x" * 101,
            "x" * 200,
            "x" * 201,
            "x" * 300,
            "x" * 301,
            "x" * 320,
            "x" * 321,
            "x" * 1000,
            "x" * 1001,
            "x" * 2000,
            "x" * 2001,
            "\ud800",
            "\x00",
        ]
    ),
    st.text(max_size=4),
    st.lists(st.sampled_from(["call_1", 1, None]), max_size=2),
    st.dictionaries(st.sampled_from(["name", "email", "ref", "x"]), st.none() | st.just("a")),
    st.just({"role": "primary", "ref": "r"}),
)

#: Where in a call's facts a mutation lands (a key path).
_PATHS: list[tuple[str | int, ...]] = [
    ("id",),
    ("unit",),
    ("source",),
    ("source", "instance"),
    ("source", "remote_id"),
    ("source", "remote_key"),
    ("source", "url"),
    ("call_type",),
    ("status",),
    ("waiting_on",),
    ("waiting_process",),
    ("title",),
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
    ("confirmation",),
    ("confirmation", "kind"),
    ("confirmation", "by"),
    ("confirmation", "at"),
    ("confirmation", "how"),
    ("chain",),
    ("chain", "upstream"),
    ("chain", "suppliers"),
    ("chain", "forks"),
    ("chain", "forks", 0, "role"),
    ("chain", "forks", 0, "ref"),
    ("chain", "forks", 0, "instance"),
    ("chain", "forks", 0, "process"),
    ("chain", "forks", 0, "via"),
    ("chain", "forks", 0, "call"),
    # members the facts never hold: left out, derived, unknown
    ("description",),
    ("requester",),
    ("comments",),
    ("attributes",),
    ("process",),
    ("colour",),
    ("source", "colour"),
    ("chain", "colour"),
]


def mutate(
    draw: st.DrawFn,
    facts: dict[str, Any],
    paths: list[tuple[str | int, ...]],
    values: st.SearchStrategy[Any],
) -> None:
    """Change or remove one to three members of ``facts`` at ``paths`` (where the path is
    there to follow), each changed to one of ``values``."""
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        parent: Any = facts
        for step in path[:-1]:
            try:
                parent = parent[step]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        if not isinstance(parent, dict):
            continue
        if draw(st.integers(0, 4)) == 0:
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(values)


@st.composite
def _mutated(draw: st.DrawFn, call: Call) -> str:
    """``call``'s facts with a few members changed, removed or added, or its text broken."""
    facts: dict[str, Any] = json.loads(_facts(call))
    mutate(draw, facts, _PATHS, _ODD_VALUES)
    text = json.dumps(facts, ensure_ascii=draw(st.booleans()))
    how = draw(st.integers(0, 9))
    if how == 0:  # cut short, or not JSON at all
        text = text[: draw(st.integers(0, len(text)))]
    elif how == 1:  # a member twice: JSON parsers keep the last
        text = text[:-1] + ', "status": ' + json.dumps(draw(_ODD_VALUES)) + "}"
    elif how == 2:
        text = draw(st.sampled_from(["null", "[]", "1", '"x"', "", "{}", "NaN", "{"]))
    return text


def _by_model(text: str) -> Call | str:
    try:
        return Call.model_validate_json(text)
    except ValidationError as exc:
        return str(exc.errors(include_url=False, include_input=False)[0])


def _same(fast: Call, model: Call) -> None:
    assert fast == model
    assert fast.model_dump() == model.model_dump()
    assert fast.model_dump_json() == model.model_dump_json()
    assert fast.__pydantic_fields_set__ == model.__pydantic_fields_set__
    zones = [(a.tzinfo, b.tzinfo) for a, b in zip(_stamps(fast), _stamps(model), strict=True)]
    assert all(type(a) is type(b) and a == b for a, b in zones)


def _stamps(call: Call) -> list[datetime]:
    stamps = [call.created, call.updated, call.fulfilled, call.confirmed, call.closed]
    if call.confirmation is not None:
        stamps.append(call.confirmation.at)
    return [stamp for stamp in stamps if stamp is not None]


@settings(max_examples=100, deadline=None)
@given(call=_valid_calls())
def test_the_twin_reads_the_facts_the_store_writes_as_the_model_does(call: Call) -> None:
    text = _facts(call)
    fast = read_call_facts(text)
    # Taken, never left to the model (what makes the report's pass cheaper) ...
    assert fast is not None
    model = _by_model(text)
    assert isinstance(model, Call)
    # ... and the same call, the same values, the same zones.
    _same(fast, model)
    assert fast.description == "" and fast.comments == [] and fast.attributes == {}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), call=_valid_calls())
def test_the_twin_accepts_only_what_the_model_accepts_and_reads_it_the_same(
    data: st.DataObject, call: Call
) -> None:
    text = data.draw(_mutated(call))
    fast, model = read_call_facts(text), _by_model(text)
    if fast is not None:
        assert isinstance(model, Call), f"the twin took what the model refuses: {model}"
        _same(fast, model)
    # Whatever the twin says, the report's reading is the model's: the same calls, and the
    # same reason for a row the model refuses.
    row = {
        "id": "call_1",
        "unit": "hr",
        "facts": text,
        "canonical": None,
        "version": 1,
        "content_hash": "h",
        "created_at": _AT,
        "updated_at": _AT,
        "vanished_at": None,
    }
    calls, unreadable = read_stored_calls([row])
    if isinstance(model, Call):
        assert not unreadable and len(calls) == 1
        if "id" in model.__pydantic_fields_set__:
            _same(calls[0].call, model)
        else:  # the model made one up, afresh on each reading (as before the twin)
            assert calls[0].call.model_dump(exclude={"id"}) == model.model_dump(exclude={"id"})
    else:
        assert not calls and len(unreadable) == 1
        refused = Call.model_validate_json  # the reason in the model's words, as before
        try:
            refused(text)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            assert unreadable[0].reason == (f"{where}: {first['msg']}" if where else first["msg"])


def test_a_name_with_a_final_newline_a_naive_time_and_updated_before_created_go_to_the_model() -> (
    None
):
    """The three rules the twin moves out of Python, each broken alone."""
    call = Call(unit="hr", title="t", created=_AT, updated=_AT)
    facts = json.loads(_facts(call))
    for member, value in [
        ("unit", "hr\n"),
        ("created", "2026-03-01T09:30:00"),
        ("updated", "2026-02-01T09:30:00Z"),
    ]:
        text = json.dumps({**facts, member: value})
        assert read_call_facts(text) is None, member
        assert isinstance(_by_model(text), str), member
