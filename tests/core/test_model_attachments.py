"""The canonical Attachment: on calls and comments, in the JSON Schema, and invisible to every
call stored before attachments existed (documents, hashes and facts byte for byte)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from usm_bridge.model import Attachment, AttachmentSource, Call, Comment
from usm_bridge.schema import json_schema
from usm_bridge.store import content_hash
from usm_bridge.store.call_facts import fact_columns
from usm_bridge.store.call_rows import encode_call

#: Three calls (plain; with comments, people, chain, forks, attributes and non-ASCII text;
#: closed with a confirmation) as the code before attachments encoded them: made by running
#: main's ``encode_call`` (commit 66917bf) over them, not by this branch's code.
BEFORE = Path(__file__).parent / "data" / "calls-encoded-before-attachments.json"
T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
FORM = Attachment(
    name="signed-form.pdf",
    media_type="application/pdf",
    size=48_213,
    sha256="9f" * 32,
    source=AttachmentSource(instance="hr-mail", remote_id="<m1@x>/2"),
    origin="hr-mail",
)


def _before() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(BEFORE.read_text(encoding="ascii"))
    return entries


@pytest.mark.parametrize("entry", _before(), ids=lambda entry: entry["call"]["id"])
def test_a_call_without_attachments_encodes_as_before_byte_for_byte(entry: dict[str, Any]) -> None:
    call = Call.model_validate(entry["call"])
    assert call.attachments == [] and all(c.attachments == [] for c in call.comments)
    encoded = encode_call(call)
    assert encoded.document == entry["document"]
    assert encoded.content == entry["content"]
    assert encoded.content_hash == entry["content_hash"] == content_hash(call) == entry["call_hash"]
    assert encoded.facts == entry["facts"]
    assert fact_columns(encoded.canonical) == entry["fact_columns"]
    assert call.model_dump(mode="json") == entry["call"]
    assert "attachments" not in call.model_dump_json()


def _call(**fields: Any) -> Call:
    return Call(unit="hr", title="New starter", created=T0, updated=T0, **fields)


def test_attachments_round_trip_through_the_document_and_json() -> None:
    comment = Comment(body="form attached", created=T0, attachments=[FORM])
    call = _call(attachments=[FORM.model_copy(update={"inline": True})], comments=[comment])
    dumped = call.model_dump(mode="json")
    assert dumped["attachments"][0]["sha256"] == "9f" * 32
    assert dumped["comments"][0]["attachments"][0]["name"] == "signed-form.pdf"
    assert Call.model_validate(dumped) == call
    assert Call.model_validate_json(call.model_dump_json()) == call
    assert FORM.identity == ("9f" * 32, "signed-form.pdf")


def test_a_change_of_attachments_alone_is_a_change_of_the_call() -> None:
    plain = _call()
    with_file = _call(attachments=[FORM])
    refused = _call(attachments=[FORM.model_copy(update={"refused": "type not allowed"})])
    on_comment = _call(comments=[Comment(id="c", body="b", created=T0, attachments=[FORM])])
    bare_comment = _call(comments=[Comment(id="c", body="b", created=T0)])
    hashes = {content_hash(c) for c in (plain, with_file, refused, on_comment, bare_comment)}
    assert len(hashes) == 5
    # Facts (what the conformance report reads) are the same: attachments are left out.
    assert encode_call(with_file.model_copy(update={"id": plain.id})).facts == (
        encode_call(plain).facts
    )


def test_the_schema_takes_a_dumped_call_with_attachments_and_refuses_what_the_model_refuses() -> (
    None
):
    schema = json_schema("call")
    comment = Comment(body="b", created=T0, attachments=[FORM])
    document = _call(attachments=[FORM], comments=[comment]).model_dump(mode="json")
    jsonschema.validate(document, schema)
    bad_values = {
        "sha256": "9F" * 32,
        "name": "../etc/passwd",
        "media_type": "Application/PDF; charset=x",
        "size": -1,
    }
    unhashed = {**FORM.model_dump(mode="json"), "sha256": None}
    with pytest.raises(ValidationError, match="needs its sha256"):
        Attachment.model_validate(unhashed)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**document, "attachments": [unhashed]}, schema)
    cut = {**unhashed, "refused": "larger than the 25 MiB this instance takes"}
    jsonschema.validate({**document, "attachments": [cut]}, schema)
    assert Attachment.model_validate(cut).identity == (None, "signed-form.pdf")
    for key, bad in bad_values.items():
        broken = {**FORM.model_dump(mode="json"), key: bad}
        with pytest.raises(ValidationError):
            Attachment.model_validate(broken)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**document, "attachments": [broken]}, schema)


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a/b", "a\\b", "tab\there", "nul\x00", "c1\x85", "x" * 256, "é" * 128]
)
def test_the_model_refuses_names_the_sanitiser_never_makes(name: str) -> None:
    with pytest.raises(ValidationError, match="attachment name"):
        FORM.model_copy().model_validate({**FORM.model_dump(), "name": name})


def test_the_longest_name_by_bytes_is_taken() -> None:
    assert Attachment.model_validate({**FORM.model_dump(), "name": "é" * 127 + "x"}).name
