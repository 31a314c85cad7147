"""A mapping compiled once: the compiled form follows the installed transforms, paths read and
write as the format says, and a record is validated once, also one a classifier types (with
the errors of a bad record as they always were)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from shipped_transforms import CORE

from usm_bridge.connector import RawRecord
from usm_bridge.errors import MappingError
from usm_bridge.mapping import MappingContext, apply_inbound, apply_outbound, loads_mapping
from usm_bridge.mapping.compiled import compiled
from usm_bridge.mapping.paths import MISSING, get_path, set_path
from usm_bridge.model import Call, CallType

ACME_TEXT = """
version: 1
tool: acme
fields:
  title: {path: t, transform: shout}
  status: {path: s, values: {"o": registered, "w": in_progress, "d": fulfilled}}
  created: {path: c, transform: parse_datetime}
  updated: {path: u, transform: parse_datetime}
comments:
  path: notes
  body: {path: text}
  created: {path: at, transform: parse_datetime}
"""
ACME = loads_mapping(ACME_TEXT, source="acme.yaml")
RECORD = {
    "t": "printer jams",
    "s": "w",
    "c": "2026-01-05T10:00:00+00:00",
    "u": "2026-01-05T11:00:00+00:00",
    "notes": [{"text": "Tray 2.", "at": "2026-01-05T10:30:00+00:00"}],
}


def shout(value: Any) -> str:
    return str(value).upper()


def record(**changes: Any) -> RawRecord:
    return RawRecord(remote_id="7", remote_key="ACME-7", data={**RECORD, **changes})


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The calls validated, by title (``Call.model_validate`` wrapped to count)."""
    seen: list[str] = []
    original = Call.model_validate

    def counting(cls: type[Call], obj: Any, **kwargs: Any) -> Call:
        seen.append(str(obj.get("title")) if isinstance(obj, dict) else "?")
        return original(obj, **kwargs)

    monkeypatch.setattr(Call, "model_validate", classmethod(counting))
    yield seen


def test_a_transform_installed_later_is_used_by_the_records_after_it() -> None:
    transforms = dict(CORE)
    context = MappingContext(unit="lab", instance="lab-acme", transforms=transforms)
    typed = record(s="o")
    with pytest.raises(MappingError, match="field title: transform 'shout' is not installed"):
        apply_inbound(ACME, typed, context)
    transforms["shout"] = shout  # the same mapping of transforms, changed in place
    assert apply_inbound(ACME, typed, context).title == "PRINTER JAMS"
    # Equal transforms share the compiled form; other transforms have their own.
    assert compiled(ACME, dict(transforms)) is compiled(ACME, transforms)
    assert compiled(ACME, CORE) is not compiled(ACME, transforms)


def test_outbound_writes_through_the_compiled_form() -> None:
    context = MappingContext(unit="lab", instance="lab-acme", transforms={**CORE, "shout": shout})
    call = apply_inbound(ACME, record(s="d"), context)
    draft = apply_outbound(ACME, call, context)
    times = {"c": RECORD["c"], "u": RECORD["u"]}  # parsed and written back in ISO 8601
    assert (draft.status, draft.fields) == ("d", {"t": "PRINTER JAMS", **times})


def test_paths_read_keys_and_list_indexes_and_write_both() -> None:
    data = {"a": [{"b": 1}, {"b": 2}], "7": {"x": None}}
    assert get_path(data, "a.1.b") == 2
    assert get_path(data, "a.-1.b") == 2
    assert get_path(data, "a.2.b") is MISSING
    assert get_path(data, "a.b") is MISSING  # a list has no keys
    assert get_path(data, "7.x") is None  # digits name an object's key
    assert get_path(data, "7.x.y") is MISSING
    assert get_path(data, "$") is data
    nested = {"a": {"b": {"c": 3}, "n": None}, "s": "text"}  # two and three keys: unrolled
    assert (get_path(nested, "a.b.c"), get_path(nested, "a.n")) == (3, None)
    assert get_path(nested, "a.b.x") is MISSING and get_path(nested, "a.x") is MISSING
    assert get_path(nested, "a.n.c") is MISSING and get_path(nested, "s.x") is MISSING
    assert get_path(nested, "s.x.y") is MISSING and get_path([nested], "a.b") is MISSING
    out: dict[str, Any] = {}
    set_path(out, "f.2.name", "x")
    set_path(out, "f.0", "first")
    assert out == {"f": ["first", None, {"name": "x"}]}
    with pytest.raises(ValueError, match="cannot write the whole record"):
        set_path(out, "$", 1)


def test_a_record_is_validated_once(validations: list[str]) -> None:
    context = MappingContext(unit="lab", instance="lab-acme", transforms={**CORE, "shout": shout})
    for n in range(3):
        apply_inbound(ACME, record(s="o", t=f"call {n}"), context)
    assert validations == ["CALL 0", "CALL 1", "CALL 2"]


def test_a_record_a_classifier_types_is_validated_once(validations: list[str]) -> None:
    """The classifier sees the call as registered (no status, nothing read after the type),
    the call keeps the tool's status with the classifier's type, validated once."""
    shown: list[tuple[str, int]] = []

    def classifier(call: Call, raw: RawRecord) -> CallType | None:
        shown.append((call.status.value, len(call.comments)))
        return CallType.INCIDENT

    context = MappingContext(unit="lab", instance="lab-acme", transforms={**CORE, "shout": shout})
    call = apply_inbound(ACME, record(), context, classifier=classifier)
    assert (call.call_type, call.status.value, len(call.comments)) == (
        CallType.INCIDENT,
        "in_progress",
        1,
    )
    assert shown == [("registered", 0)]
    assert validations == ["PRINTER JAMS"]
    assert call.model_dump(exclude={"id"}) == Call.model_validate(
        {**call.model_dump(exclude={"id", "process"}), "id": call.id}
    ).model_dump(exclude={"id"})


@pytest.mark.parametrize(
    ("verdict", "error"),
    [
        # Nobody types it: refused for its status first, as always (the bad comment unread).
        (None, "record 'ACME-7' is in_progress but unclassified"),
        # Typed: the bad comment is what fails.
        (CallType.INCIDENT, "field comments[0].created: no value at path 'at'"),
    ],
)
def test_a_record_that_fails_twice_fails_as_it_always_did(
    verdict: CallType | None, error: str
) -> None:
    asked: list[str] = []

    def classifier(call: Call, raw: RawRecord) -> CallType | None:
        asked.append(call.status.value)
        return verdict

    context = MappingContext(unit="lab", instance="lab-acme", transforms={**CORE, "shout": shout})
    with pytest.raises(MappingError) as failed:
        apply_inbound(ACME, record(notes=[{"text": "no time"}]), context, classifier=classifier)
    assert str(failed.value).startswith(error)
    assert asked == ["registered"]


def test_a_typed_record_with_a_status_the_model_refuses_fails_in_the_validation() -> None:
    """A status without a table is taken as the tool says it: the validation's own message."""
    mapping = loads_mapping(
        ACME_TEXT.replace('{path: s, values: {"o": registered, "w": in_progress, "d": fulfilled}}',
                          "{path: s}"),
        source="acme.yaml",
    )  # fmt: skip
    context = MappingContext(unit="lab", instance="lab-acme", transforms={**CORE, "shout": shout})
    with pytest.raises(MappingError) as failed:
        apply_inbound(
            mapping, record(s="busy"), context, classifier=lambda call, raw: CallType.INCIDENT
        )
    assert str(failed.value).startswith(
        "the mapped call is invalid: field status: Input should be 'registered'"
    )
    assert str(failed.value).endswith("(value 'busy')")
