"""Building ServiceNow encoded queries that a value cannot change.

An encoded query (``sysparm_query``) is one string: conditions joined by ``^`` (``^OR``,
``^NQ`` for the alternatives, ``^ORDERBY...`` for sorting). ServiceNow has **no escape** for
``^`` inside a value: ``short_description=a^NQactive=true`` is two conditions, and a value that
smuggles ``^NQ`` in widens the query to every record. Invalid parts are silently ignored, so
such a mistake never shows as an error either. A value starting with ``javascript:`` is even
evaluated on the server.

So this module never pastes a value in blindly. A :class:`Condition` refuses (with
:class:`UnsafeQueryValue`) any value holding ``^``, a line break or another control character,
or starting with ``javascript:``; field names and operators are checked against what ServiceNow
accepts. ``=``, ``ORDERBY`` and other text are harmless *inside* a value (ServiceNow splits terms
on ``^`` only, and reads the value as everything after the operator), so they pass unchanged.

A caller that must look up an arbitrary value (a correlation id coming from another tool) uses
:func:`safe_prefix`: query ``STARTSWITH`` the part before the first unsafe character and compare
the full value exactly on the client. That keeps the lookup complete without ever sending the
unsafe part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "OPERATORS",
    "Condition",
    "OrderBy",
    "UnsafeQueryValue",
    "encode_query",
    "is_safe_value",
    "safe_prefix",
]

#: Operators the connector uses (longest first, so ``>=`` is not read as ``>``).
OPERATORS: Final = (
    "NOT IN",
    "STARTSWITH",
    "ENDSWITH",
    "ISNOTEMPTY",
    "ISEMPTY",
    "LIKE",
    "IN",
    ">=",
    "<=",
    "!=",
    "=",
    ">",
    "<",
)
_VALUELESS: Final = frozenset({"ISEMPTY", "ISNOTEMPTY"})
_FIELD: Final = re.compile(r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*")
_UNSAFE_CHARS: Final = re.compile(r"[\^\x00-\x1f\x7f\u2028\u2029]")


class UnsafeQueryValue(ValueError):
    """A value (or field name) that would change the encoded query it is put into.

    The message names the field and the reason, never the value itself, which may be anything
    a remote user typed.
    """


def is_safe_value(value: str) -> bool:
    """True when ``value`` can stand as a condition's value without changing the query."""
    return not _UNSAFE_CHARS.search(value) and not value.strip().lower().startswith("javascript:")


def safe_prefix(value: str) -> str:
    """The longest start of ``value`` that is safe in a query (may be empty).

    Query ``fieldSTARTSWITH<prefix>`` and compare the whole value on the client to find a
    record whose value ServiceNow cannot be asked for exactly.
    """
    match = _UNSAFE_CHARS.search(value)
    prefix = value[: match.start()] if match else value
    return "" if prefix.strip().lower().startswith("javascript:") else prefix


@dataclass(frozen=True)
class Condition:
    """``<field><operator><value>``; ``IN`` / ``NOT IN`` take several values.

    :raises UnsafeQueryValue: at construction, for a field name, operator or value that could
        change the query.
    """

    field: str
    operator: str
    value: str | tuple[str, ...] = ""

    def __post_init__(self) -> None:
        if not _FIELD.fullmatch(self.field):
            raise UnsafeQueryValue(f"{self.field[:40]!r} is not a ServiceNow field name")
        if self.operator not in OPERATORS:
            raise UnsafeQueryValue(f"operator {self.operator[:20]!r} is not supported")
        values = self.value if isinstance(self.value, tuple) else (self.value,)
        for value in values:
            if not is_safe_value(value):
                raise UnsafeQueryValue(
                    f"a value for {self.field} holds '^', a line break or a control "
                    "character, or starts with 'javascript:'; ServiceNow has no escape for "
                    "these in an encoded query, so it is refused rather than sent"
                )
        if self.operator in {"IN", "NOT IN"}:
            if any("," in value for value in values):
                raise UnsafeQueryValue(f"a value of {self.field} {self.operator} holds ','")
        elif isinstance(self.value, tuple):
            raise UnsafeQueryValue(f"operator {self.operator} takes one value")

    def encode(self) -> str:
        """The condition as encoded-query text."""
        if self.operator in _VALUELESS:
            return f"{self.field}{self.operator}"
        value = ",".join(self.value) if isinstance(self.value, tuple) else self.value
        return f"{self.field}{self.operator}{value}"


@dataclass(frozen=True)
class OrderBy:
    """``ORDERBY<field>`` or ``ORDERBYDESC<field>``."""

    field: str
    descending: bool = False

    def __post_init__(self) -> None:
        if not _FIELD.fullmatch(self.field):
            raise UnsafeQueryValue(f"{self.field[:40]!r} is not a ServiceNow field name")

    def encode(self) -> str:
        """The sort as encoded-query text."""
        return f"ORDERBY{'DESC' if self.descending else ''}{self.field}"


def encode_query(conditions: Iterable[Condition], order: Iterable[OrderBy] = ()) -> str:
    """Conditions joined with ``^`` (AND), then the sorts: a ``sysparm_query`` value."""
    return "^".join([*(c.encode() for c in conditions), *(o.encode() for o in order)])
