"""Reading a report's stored calls row by row, where a row the model refuses is a finding.

An auditor signs the report: a call that no longer validates against the model (a row
edited by hand, a bug of an older version that stored ``updated`` before ``created``) must
neither stop the report nor vanish from it. Each such row becomes an
:class:`UnreadableCall`, which the report lists as an exception with the call's id
(:mod:`.unreadable_calls`); every other row is read as the store reads it.

Why the model's schema still validates every row: building the model's objects by hand from
the trusted JSON (``model_construct`` and nested constructors, or a reader in Python that
checks each member) was measured slower than pydantic-core's validation (about 35 against 20
microseconds of CPU per call's facts), and it would risk letting a row the model refuses
through. What makes the pass over every call cheaper is reading less: :func:`stored_facts_query`
reads each call's facts (``calls.facts``, :mod:`usm_bridge.store.call_facts`: the document
without its texts, people, comments and attributes, about 20 us to validate against 85 for
the whole document; a row without facts is read from its document), and validating them
through the model's twin (:mod:`.facts_reader`: the model's schema with its per-call Python
validators done in Rust, about 12 us), the model itself deciding every row the twin doubts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from ..model import Call
from ..store import StoredCall
from ..store import schema as tables
from .facts_reader import read_call_facts

__all__ = [
    "CANONICAL_AS_STORED",
    "UnreadableCall",
    "read_stored_calls",
    "stored_calls_query",
    "stored_facts_query",
]

#: The canonical call as the driver hands it back, not decoded by SQLAlchemy: a row whose
#: JSON text is broken then reaches :func:`read_stored_calls` instead of failing the fetch.
_AS_STORED = sa.type_coerce(tables.calls.c.canonical, sa.Text)
CANONICAL_AS_STORED = _AS_STORED.label("canonical")


_DOCUMENT_COLUMNS = ("canonical", "facts")
#: The row's own columns (not revision 0016's fact columns: the pass reads the facts).
_ROW_COLUMNS = tuple(c for c in tables.CALL_ROW if c.name not in _DOCUMENT_COLUMNS)


def stored_calls_query() -> sa.Select[tuple[object, ...]]:
    """The row's columns of ``calls``, the canonical call as stored (see above): whole calls."""
    return sa.select(*_ROW_COLUMNS, CANONICAL_AS_STORED)


def stored_facts_query() -> sa.Select[tuple[object, ...]]:
    """The columns of ``calls`` with each call's facts, and its document only where the row
    has no facts: calls as a report judges them (see the module docstring)."""
    facts = tables.calls.c.facts
    document = sa.case((facts.is_(None), _AS_STORED), else_=sa.null())
    return sa.select(*_ROW_COLUMNS, document.label("canonical"), facts)


@dataclass(frozen=True)
class UnreadableCall:
    """A stored call the model refuses: what the report lists in its place."""

    id: str
    unit: str
    #: Why, in the model's words (its first error), never the row's content.
    reason: str
    #: When the store first stored it.
    created_at: datetime | None


def _reason(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


def read_stored_calls(
    rows: Iterable[Mapping[Any, Any]],
) -> tuple[list[StoredCall], list[UnreadableCall]]:
    """The rows of the ``calls`` table as stored calls, and those the model refuses, each
    list in row order. A row's facts are read where it has them, else its document."""
    calls: list[StoredCall] = []
    unreadable: list[UnreadableCall] = []
    for row in rows:
        canonical = row.get("facts")  # stored_calls_query reads the document alone
        if canonical is None:
            canonical = row["canonical"]
        elif isinstance(canonical, str):
            # The facts through the model's twin (:mod:`.facts_reader`): the same call for
            # about 60% of the CPU; a row it is not sure of is the model's, just below.
            fast = read_call_facts(canonical)
            if fast is not None:
                calls.append(StoredCall.from_row(fast, row))
                continue
        try:
            # Text as SQLite hands it back (:data:`CANONICAL_AS_STORED`): the model parses it,
            # so text that is not even JSON is refused like any other invalid row.
            if isinstance(canonical, str | bytes):
                call = Call.model_validate_json(canonical)
            else:
                call = Call.model_validate(canonical)
        except ValidationError as exc:
            unreadable.append(
                UnreadableCall(
                    id=str(row["id"]),
                    unit=str(row["unit"]),
                    reason=_reason(exc),
                    created_at=row["created_at"],
                )
            )
            continue
        calls.append(StoredCall.from_row(call, row))
    return calls, unreadable
