"""Validating a document against the USM-WIF JSON Schema, in words a person can act on.

Each problem names the JSON path of the member (``$.steps[1].process``) and says what is
expected without echoing the document's value: a document comes from another organisation's
tool, and its values may be long or crafted.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .documents import DocumentKind

__all__ = ["SCHEMA_RESOURCE", "schema", "schema_problems"]

SCHEMA_RESOURCE = "schema/usm-workflow.schema.json"

_ARTICLE = {"array": "an array", "object": "an object", "integer": "an integer"}


@cache
def schema() -> dict[str, Any]:
    """The schema document (both kinds; the root chooses by the member ``type``)."""
    text = files("usm_bridge.wif").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator(kind: DocumentKind | None) -> Draft202012Validator:
    document = schema()
    if kind is not None:  # the entry point for a kind the file name already told
        root = {k: v for k, v in document.items() if k not in ("if", "then", "else")}
        document = {**root, "$ref": f"#/$defs/{kind}"}
    return Draft202012Validator(document)


@cache
def _pattern_meanings() -> dict[str, str]:
    defs = schema()["$defs"]
    members = defs["workflow-template"]["properties"]
    return {
        members["slug"]["pattern"]: "must be letters and digits with single dashes between "
        "them (no dash first or last, no two in a row)",
        members["source-system-type"]["pattern"]: "must be VENDOR-DOMAIN:SYSTEM, e.g. "
        "usm-bridge:bridge (letters, digits and dashes; dots between the domain's labels)",
        defs["timestamp"]["pattern"]: "must be an ISO 8601 date and time with a time zone, "
        "e.g. 2021-03-22T07:38:22.800+00:00",
    }


def schema_problems(document: object, kind: DocumentKind | None = None) -> list[str]:
    """Each way ``document`` breaks the schema, as ``at $.path: what is expected``, in the
    order of the paths; empty when it is valid.

    :param kind: the kind the file name says (``.workflow.json``); ``None`` lets the member
        ``type`` decide.
    """
    errors = sorted(_validator(kind).iter_errors(document), key=lambda e: e.json_path)
    return [f"at {error.json_path}: {_expected(error)}" for error in errors]


def _expected(error: ValidationError) -> str:
    value: Any = error.validator_value
    match error.validator:
        case "required":  # names the member from the schema: safe to repeat
            return error.message
        case "enum":
            return "must be one of " + ", ".join(json.dumps(item) for item in value)
        case "const":
            return f"must be {json.dumps(value)}"
        case "type":
            return f"must be {_ARTICLE.get(value, f'a {value}')}"
        case "minimum":
            return f"must be at least {value}"
        case "pattern":
            return _pattern_meanings().get(value, f"must match {value}")
    return _shortened(error.message)


def _shortened(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."
