"""Reading a USM-WIF document from a file another tool (or this one) wrote.

A document is untrusted: it is read only up to :data:`MAX_DOCUMENT_BYTES`, must be I-JSON
(RFC 7493, which the draft cites: no duplicate member names, no NaN or Infinity), must pass the
JSON Schema for its kind, and must keep the draft's rules a schema cannot say (step ids unique
in the workflow, activity ids unique in their step, times that exist). Every refusal names the
file and the JSON path. Members the bridge does not know are ignored (must-ignore).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from ..bounded_read import UnreadableFile, read_text_or_explain
from ..errors import ConfigurationError
from .documents import DocumentKind, WorkflowDocument
from .schema_check import schema_problems

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "WifDocumentError",
    "kind_of_file",
    "parse_document",
    "read_document",
]

#: Largest document read. A unit's workflow with dozens of steps is a few tens of KiB.
MAX_DOCUMENT_BYTES = 1_000_000
#: Problems named in one error; the count of the others follows.
_MAX_REPORTED = 10

_EXTENSIONS: tuple[tuple[str, DocumentKind], ...] = (
    (".workflow-template.json", "workflow-template"),
    (".workflow.json", "workflow"),
)


class WifDocumentError(ConfigurationError):
    """A document that cannot be read or is not valid USM-WIF; ``where`` names the file."""


def kind_of_file(path: Path) -> DocumentKind | None:
    """The kind the draft's file extension says, or ``None`` for another name."""
    for extension, kind in _EXTENSIONS:
        if path.name.endswith(extension):
            return kind
    return None


def read_document(path: Path) -> WorkflowDocument:
    """The valid document in ``path``.

    :raises WifDocumentError: naming the file, and the JSON path of each problem.
    """
    try:
        text = read_text_or_explain(path, limit=MAX_DOCUMENT_BYTES, use="a document")
    except UnreadableFile as exc:
        raise WifDocumentError(exc.reason, where=exc.where) from None
    return parse_document(text, source=str(path), kind=kind_of_file(path))


def parse_document(text: str, *, source: str, kind: DocumentKind | None = None) -> WorkflowDocument:
    """The valid document in ``text``; ``source`` names it in errors.

    :raises WifDocumentError: as :func:`read_document`.
    """
    data = _load_json(text, source)
    _refuse_surrogates(data, source)
    problems = schema_problems(data, kind) or _rule_problems(data)
    if problems:
        message = "; ".join(problems[:_MAX_REPORTED])
        if len(problems) > _MAX_REPORTED:
            message += f"; and {len(problems) - _MAX_REPORTED} more"
        raise WifDocumentError(f"not a valid USM-WIF document: {message}", where=source)
    # by_name=False: a member called "pattern" or "sort_index" is some other tool's, and
    # must be ignored, not taken for the field of that name.
    return WorkflowDocument.model_validate(data, by_alias=True, by_name=False)


def _load_json(text: str, source: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique_members, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise WifDocumentError(
            f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", where=source
        ) from None
    except RecursionError:
        raise WifDocumentError(
            "not JSON a reader can take: nested too deep", where=source
        ) from None
    except ValueError as exc:  # a duplicate member, NaN, an integer of thousands of digits
        raise WifDocumentError(f"not I-JSON (RFC 7493): {exc}", where=source) from None


def _refuse_surrogates(data: Any, source: str) -> None:
    """I-JSON allows no surrogate code point (``"\\ud800"`` alone): no text file can hold it,
    so a config printed from it could not be written."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise WifDocumentError(
            "not I-JSON (RFC 7493): a string holds a lone surrogate (\\ud800-\\udfff)",
            where=source,
        ) from None


def _unique_members(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for name, value in pairs:
        if name in members:
            raise ValueError(f"member {json.dumps(name)[:80]} appears twice in one object")
        members[name] = value
    return members


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _rule_problems(data: dict[str, Any]) -> list[str]:
    """The draft's rules the schema cannot express; ``data`` has passed the schema."""
    problems = [
        f"at $['{member}']: {data[member]!r:.60} is not a date and time that exists"
        for member in ("created-at", "modified-at")
        if member in data and not _exists(data[member])
    ]
    steps = data.get("steps", [])
    problems += _repeated_ids(steps, "$.steps", "a step id is unique in its workflow")
    for index, step in enumerate(steps):
        activities = step.get("activities", [])
        path = f"$.steps[{index}].activities"
        problems += _repeated_ids(activities, path, "an activity id is unique in its step")
    return problems


def _repeated_ids(items: list[dict[str, Any]], path: str, rule: str) -> Iterator[str]:
    """Each item of the list at ``path`` whose id an earlier item has already."""
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        if "id" in item and first.setdefault(item["id"], index) != index:
            yield f"at {path}[{index}].id: the same id as {path}[{first[item['id']]}] ({rule})"


def _exists(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
