"""Broken mapping files give one MappingFileError with file, line and key; bad records a
MappingError naming field and value."""

from __future__ import annotations

from pathlib import Path

import pytest
from shipped_transforms import TRANSFORMS

from usm_bridge.connector import RawRecord
from usm_bridge.errors import MappingError, MappingFileError
from usm_bridge.mapping import (
    MappingContext,
    apply_inbound,
    apply_outbound,
    check_mapping,
    load_mapping,
    loads_mapping,
)
from usm_bridge.mapping.loader import MAX_MAPPING_BYTES
from usm_bridge.model import Call, Status

GOOD = """\
version: 1
tool: servicenow
fields:
  title: {path: short_description, required: true}
  status:
    path: state
    values: {"1": registered, "2": in_progress, "7": closed}
  created:
    path: opened_at
    transform: servicenow_datetime
classify:
  rules:
    - type: rfc
      when: {path: type, matches: '^normal$'}
  default: incident
"""


def write(tmp_path: Path, text: str, name: str = "broken.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_base_file_is_good(tmp_path: Path) -> None:
    assert "broken" in check_mapping(write(tmp_path, GOOD), TRANSFORMS)


# (description, replace this, with this, expected line, expected key, expected words)
BROKEN = [
    ("yaml syntax", "    values: {", "    values: {{", 8, None, "(started at line 7)"),
    (
        "unknown key",
        "  title: {path:",
        "  title: {pth:",
        4,
        "fields.title.pth",
        "did you mean 'path'",
    ),
    ("unknown section", "classify:", "clasify:", 11, "clasify", "did you mean 'classify'"),
    (
        "wrong type",
        "required: true}",
        "required: maybe}",
        4,
        "fields.title.required",
        "valid boolean",
    ),
    (
        "ambiguous outbound",
        '"7": closed}',
        '"7": closed, "9": closed}',
        7,
        "fields.status.values",
        "write: {closed: '7'}",
    ),
    (
        "unknown status",
        '"7": closed}',
        '"7": finished}',
        7,
        "fields.status.values",
        "'finished' is not a status",
    ),
    (
        "bad regex",
        "matches: '^normal$'",
        "matches: '^(normal'",
        14,
        "classify.rules.0.when.0.matches",
        "regular expression",
    ),
    (
        "unknown call type",
        "- type: rfc",
        "- type: change",
        13,
        "classify.rules.0.type",
        "Input should be",
    ),
    (
        "missing title",
        "  title: {path: short_description, required: true}\n",
        "",
        3,
        "fields.title",
        "required key is missing",
    ),
    ("bad path", "path: opened_at", "path: opened..at", 9, "fields.created.path", "dotted path"),
    ("version", "version: 1", "version: 2", 1, "version", "Input should be 1"),
    ("duplicate key", "  created:", "  status: {path: x}\n  created:", 8, None, "appears twice"),
    (
        "python tag",
        "tool: servicenow",
        "tool: !!python/object/apply:os.system ['true']",
        2,
        None,
        "bad value",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "line", "key", "words"),
    [case[1:] for case in BROKEN],
    ids=[case[0] for case in BROKEN],
)
def test_broken_file_names_file_line_and_key(
    tmp_path: Path, old: str, new: str, line: int, key: str | None, words: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(MappingFileError) as caught:
        check_mapping(path, TRANSFORMS)
    message = str(caught.value)
    assert f"{path}:{line}" in message, message
    if key is not None:
        assert f"key {key}" in message, message
    assert words in message, message
    assert "Traceback" not in message


def test_unknown_transform_is_found_with_the_transforms_given(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("servicenow_datetime", "servicenow_datetim"))
    load_mapping(path)  # the format is fine; only the installed plugins tell
    with pytest.raises(MappingFileError) as caught:
        check_mapping(path, TRANSFORMS)
    message = str(caught.value)
    assert f"{path}:10: key fields.created.transform" in message
    assert "unknown transform 'servicenow_datetim'" in message
    assert "did you mean 'servicenow_datetime'" in message


def test_write_must_name_a_raw_value_of_the_table(tmp_path: Path) -> None:
    text = GOOD.replace('"7": closed}', '"7": closed}\n    write: {closed: "8"}')
    with pytest.raises(MappingFileError, match=r":8: key fields\.status\.write\.closed.*'8'"):
        load_mapping(write(tmp_path, text))


def test_a_read_only_ambiguous_table_is_fine(tmp_path: Path) -> None:
    text = GOOD.replace('"7": closed}', '"7": closed, "9": closed}\n    read_only: true')
    load_mapping(write(tmp_path, text))


def test_waiting_without_whom_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace('"7": closed}', '"7": closed, "3": waiting}')
    with pytest.raises(MappingFileError, match=r":7: key fields\.status\.values.*waits on"):
        load_mapping(write(tmp_path, text))


def test_two_writers_of_one_path_are_refused(tmp_path: Path) -> None:
    text = GOOD.replace("  created:", "  description: {path: state}\n  created:")
    with pytest.raises(
        MappingFileError, match=r":6: key fields\.status\.path.*fields\.description"
    ):
        load_mapping(write(tmp_path, text))


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(MappingFileError) as caught:
        load_mapping(path)
    assert f"{path}:" in str(caught.value)
    assert "alias" in str(caught.value)


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "version: &x [*x]\n")
    with pytest.raises(MappingFileError, match=r"broken\.yaml"):
        load_mapping(path)


def test_huge_file_is_refused_without_parsing(tmp_path: Path) -> None:
    path = write(tmp_path, "# " + "x" * MAX_MAPPING_BYTES + "\n")
    with pytest.raises(MappingFileError, match="larger than"):
        load_mapping(path)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("- a\n- b\n", "top level is a list"),
        ("just text\n", "top level is a str"),
        ("", "empty"),
        ("a: 1\n---\nb: 2\n", "single document"),
    ],
)
def test_not_a_mapping(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(MappingFileError, match=words) as caught:
        load_mapping(path)
    assert str(path) in str(caught.value)


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(MappingFileError, match="not found"):
        load_mapping(tmp_path / "nope.yaml")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"tool: caf\xe9\n")
    with pytest.raises(MappingFileError, match="not UTF-8"):
        load_mapping(path)


def test_expected_tool_mismatch(tmp_path: Path) -> None:
    with pytest.raises(MappingFileError, match=r":2: key tool.*not 'jira'|:2: key tool"):
        check_mapping(write(tmp_path, GOOD), TRANSFORMS, expected_tool="jira")


# -- records that cannot be mapped -------------------------------------------------------------

CONTEXT = MappingContext(unit="it", instance="sn", transforms=TRANSFORMS)
MAPPING = loads_mapping(GOOD, source="good.yaml")
OK = {"short_description": "Printer", "state": "2", "opened_at": "2016-01-22 14:28:24"}


def _inbound(data: dict[str, object]) -> Call:
    return apply_inbound(MAPPING, RawRecord(remote_id="1", data=data), CONTEXT)  # type: ignore[arg-type]


def test_a_good_record_maps() -> None:
    call = _inbound(OK)
    assert call.status is Status.IN_PROGRESS and call.call_type == "incident"


def test_value_outside_the_table_names_field_and_value() -> None:
    with pytest.raises(MappingError, match=r"field status: value '42' at path 'state'"):
        _inbound({**OK, "state": "42"})


def test_missing_required_title() -> None:
    with pytest.raises(MappingError, match=r"field title: required value is missing"):
        _inbound({**OK, "short_description": ""})


def test_failing_transform_names_field_and_value() -> None:
    with pytest.raises(
        MappingError, match=r"field created: transform 'servicenow_datetime' failed on '22/01/2016'"
    ):
        _inbound({**OK, "opened_at": "22/01/2016"})


def test_a_missing_transform_plugin_is_a_mapping_error() -> None:
    context = MappingContext(unit="it", instance="sn", transforms={})
    with pytest.raises(
        MappingError,
        match="transform 'servicenow_datetime' is provided by usm-bridge-servicenow, which is "
        "not installed",
    ):
        apply_inbound(MAPPING, RawRecord(remote_id="1", data=OK), context)  # type: ignore[arg-type]


def test_a_crashing_plugin_transform_dead_letters_the_record() -> None:
    def broken(value: object) -> object:
        raise ZeroDivisionError("oops")

    context = MappingContext(unit="it", instance="sn", transforms={"servicenow_datetime": broken})
    with pytest.raises(MappingError, match=r"failed on .*oops"):
        apply_inbound(MAPPING, RawRecord(remote_id="1", data=OK), context)  # type: ignore[arg-type]


def test_no_time_at_all() -> None:
    with pytest.raises(MappingError, match="field created"):
        _inbound({"short_description": "x", "state": "2"})


def test_invalid_call_names_the_field() -> None:
    with pytest.raises(MappingError, match=r"field title: .*at most 1000"):
        _inbound({**OK, "short_description": "x" * 1001})


def test_outbound_of_a_status_the_tool_lacks() -> None:
    call = _inbound(OK).model_copy(update={"status": Status.CANCELLED})
    with pytest.raises(MappingError, match=r"field status: canonical value 'cancelled'"):
        apply_outbound(MAPPING, call, CONTEXT)
