"""Reading documents: the schema, the draft's rules a schema cannot say, must-ignore, and
every kind of bad input refused with the file and the JSON path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from wif_configs import FULL, config_of, export

from usm_bridge.wif.reader import MAX_DOCUMENT_BYTES, WifDocumentError, read_document
from usm_bridge.wif.schema_check import schema


def minimal_workflow() -> dict[str, Any]:
    return {
        "format-version": "1.0.0",
        "type": "workflow",
        "slug": "fix-outage",
        "name": "Fix an outage",
        "process": "recover",
        "steps": [
            {
                "id": "s1",
                "process": "recover",
                "activities": [{"id": "a1", "responsibilities": {"op": ["R", "A"]}}],
            },
            {"id": "s2", "process": "operate"},
        ],
        "created-by": {"id": "u1"},
        "profiles": [{"id": "op", "name": "Operator"}],
    }


def write(folder: Path, document: object, name: str = "doc.workflow.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def refusal(path: Path) -> str:
    with pytest.raises(WifDocumentError) as refused:
        read_document(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: "), message
    return message


def test_the_schema_is_a_valid_draft_2020_12_schema_that_says_where_each_rule_comes_from() -> None:
    document = schema()
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    for name, definition in document["$defs"].items():
        assert "Draft" in definition["$comment"] or "Ours" in definition["$comment"], name


def test_every_exported_document_passes_the_schema_for_its_extension(tmp_path: Path) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    docs = export(config_of(tmp_path, FULL), tmp_path / "out")
    assert len(docs) == 12
    for name, doc in docs.items():
        assert list(validator.iter_errors(doc)) == [], name
        read = read_document(tmp_path / "out" / name)  # the entry point of its extension
        assert read.members() == doc


def test_a_template_needs_no_member(tmp_path: Path) -> None:
    read = read_document(write(tmp_path, {}, "empty.workflow-template.json"))
    assert read.type is None and read.steps == ()


def test_the_root_chooses_by_type_when_the_name_does_not(tmp_path: Path) -> None:
    assert (
        read_document(write(tmp_path, {"type": "workflow-template"}, "t.json")).type
        == "workflow-template"
    )
    message = refusal(write(tmp_path, {"type": "workflow"}, "w.json"))
    assert "at $: 'slug' is a required property" in message


UNKNOWN = {"x-other-tool": {"nested": [1, 2]}, "colour": "teal"}


def test_unknown_members_are_ignored_at_every_level(tmp_path: Path) -> None:
    plain = minimal_workflow()
    extended = minimal_workflow()
    extended.update(UNKNOWN)
    extended["steps"][0].update(UNKNOWN)
    extended["steps"][0]["activities"][0].update(UNKNOWN)
    extended["created-by"].update(UNKNOWN)
    extended["profiles"][0].update(UNKNOWN)
    assert list(jsonschema.Draft202012Validator(schema()).iter_errors(extended)) == []
    assert read_document(write(tmp_path, extended, "x.workflow.json")) == read_document(
        write(tmp_path, plain, "p.workflow.json")
    )


def test_another_tools_member_spelt_like_a_field_is_not_taken_for_it(tmp_path: Path) -> None:
    document = minimal_workflow() | {"pattern": "W3", "format_version": "9"}
    document["steps"][0]["sort_index"] = 7
    read = read_document(write(tmp_path, document))
    assert read.pattern is None and read.format_version == "1.0.0"
    assert read.steps[0].sort_index is None


@pytest.mark.parametrize("member", ["format-version", "type", "slug", "name"])
def test_a_workflow_without_a_required_member_is_refused(tmp_path: Path, member: str) -> None:
    document = minimal_workflow()
    del document[member]
    assert f"at $: '{member}' is a required property" in refusal(write(tmp_path, document))


@pytest.mark.parametrize("slug", ["-fix", "fix-", "fix--it", "fix_it", "fix it", "fïx", ""])
def test_a_slug_the_draft_does_not_allow_is_refused(tmp_path: Path, slug: str) -> None:
    message = refusal(write(tmp_path, minimal_workflow() | {"slug": slug}))
    assert "at $.slug: must be letters and digits with single dashes between them" in message


BAD_MEMBERS = [
    ("process", "restore", 'at $.process: must be one of "agree", "change", "recover"'),
    ("dynamicity", "sometimes", 'at $.dynamicity: must be one of "static", "dynamic"'),
    ("format-version", "2.0.0", "at $['format-version']: must be \"1.0.0\""),
    ("source-system-type", "foo.com", "at $['source-system-type']: must be VENDOR-DOMAIN:SYSTEM"),
    (
        "source-system-type",
        "foo_com:bar",
        "at $['source-system-type']: must be VENDOR-DOMAIN:SYSTEM",
    ),
    ("created-at", "2021-03-22T07:38:22.800", "at $['created-at']: must be an ISO 8601 date"),
    ("created-at", "22.3.2021", "at $['created-at']: must be an ISO 8601 date"),
    (
        "created-at",
        "2021-02-30T07:38:22.800Z",
        "at $['created-at']: '2021-02-30T07:38:22.800Z' is not a date",
    ),
    ("name", 42, "at $.name: must be a string"),
    ("steps", {"id": "s1"}, "at $.steps: must be an array"),
    ("created-by", {"name": "no id"}, "at $['created-by']: 'id' is a required property"),
]


@pytest.mark.parametrize(("member", "value", "words"), BAD_MEMBERS)
def test_a_bad_member_is_refused_with_its_path(
    tmp_path: Path, member: str, value: object, words: str
) -> None:
    document = minimal_workflow() | {member: value}
    assert words in refusal(write(tmp_path, document))


def test_a_bad_raci_letter_a_bad_step_process_and_a_negative_index_are_named_by_path(
    tmp_path: Path,
) -> None:
    document = minimal_workflow()
    document["steps"][0]["activities"][0]["responsibilities"]["op"] = ["R", "X"]
    document["steps"][1]["process"] = "fix"
    document["steps"][1]["sort-index"] = -1
    message = refusal(write(tmp_path, document))
    assert message.count("at $") == 3
    assert (
        'at $.steps[0].activities[0].responsibilities.op[1]: must be one of "R", "A", "C", "I"'
        in message
    )
    assert "at $.steps[1].process: must be one of" in message
    assert "at $.steps[1]['sort-index']: must be at least 0" in message


def test_steps_and_activities_of_a_workflow_need_ids(tmp_path: Path) -> None:
    document = minimal_workflow()
    del document["steps"][1]["id"]
    del document["steps"][0]["activities"][0]["id"]
    message = refusal(write(tmp_path, document))
    assert "at $.steps[1]: 'id' is a required property" in message
    assert "at $.steps[0].activities[0]: 'id' is a required property" in message


def test_ids_are_unique_where_the_draft_says(tmp_path: Path) -> None:
    document = minimal_workflow()
    document["steps"][1]["id"] = "s1"
    document["steps"][0]["activities"].append({"id": "a1"})
    message = refusal(write(tmp_path, document))
    assert "at $.steps[1].id: the same id as $.steps[0]" in message
    assert "at $.steps[0].activities[1].id: the same id as $.steps[0].activities[0]" in message


def test_the_extension_decides_the_kind(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, {"type": "workflow-template"}, "t.workflow.json"))
    assert 'at $.type: must be "workflow"' in message
    assert "at $: 'slug' is a required property" in message


def test_many_problems_are_counted_after_the_first_ten(tmp_path: Path) -> None:
    document = minimal_workflow()
    document["steps"] = [{"id": str(n), "process": "nope"} for n in range(15)]
    message = refusal(write(tmp_path, document))
    assert message.count("must be one of") == 10 and message.endswith("; and 5 more")


BAD_FILES: list[tuple[str, bytes, str]] = [
    (
        "not JSON",
        b'{"name": "x",}',
        "not JSON: Expecting property name enclosed in double quotes at line 1",
    ),
    ("not an object", b"[1, 2]", "at $: must be an object"),
    (
        "a member twice",
        b'{"name": "a", "name": "b"}',
        'not I-JSON (RFC 7493): member "name" appears twice',
    ),
    ("NaN", b'{"sort": NaN}', "not I-JSON (RFC 7493): NaN is not a JSON number"),
    ("a lone surrogate", b'{"name": "\\ud800"}', "a string holds a lone surrogate"),
    ("too deep", b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
    ("not UTF-8", b'{"name": "\xff"}', "cannot use as a document: not UTF-8 text"),
    ("a NUL byte", b'{"name": "\x00"}', "cannot use as a document: not text: a NUL byte"),
]


@pytest.mark.parametrize(
    ("content", "words"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES]
)
def test_a_file_that_is_not_a_document_is_refused(
    tmp_path: Path, content: bytes, words: str
) -> None:
    path = tmp_path / "bad.workflow-template.json"
    path.write_bytes(content)
    assert words in refusal(path)


def test_a_file_larger_than_the_cap_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "big.workflow-template.json"
    path.write_bytes(b"{" + b" " * MAX_DOCUMENT_BYTES + b"}")
    assert "cannot use as a document: larger than" in refusal(path)
    path.write_bytes(b"{" + b" " * (MAX_DOCUMENT_BYTES - 2) + b"}")  # exactly the cap
    assert read_document(path).type is None


def test_a_missing_file_and_a_folder_are_refused(tmp_path: Path) -> None:
    assert "cannot read: No such file or directory" in refusal(tmp_path / "gone.workflow.json")
    assert "not a regular file (a directory)" in refusal(tmp_path)
