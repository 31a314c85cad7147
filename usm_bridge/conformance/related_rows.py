"""The report pass's change events, identities and chain links read as rows, not records.

Validating each related row as its store record (:class:`~usm_bridge.store.AuditEvent`,
:class:`~usm_bridge.store.Identity`, :class:`~usm_bridge.store.ChainLink`) after SQLAlchemy's
row processing was about a sixth of the pass's CPU, for rows the store wrote itself. The pass
reads them through a plain DB-API cursor (as :mod:`.call_rows` reads the calls) and builds per
row a slotted object with the record's attributes, of the same types: what the protocols
:class:`EventView`, :class:`IdentityView` and :class:`LinkView` name, which the consumers read
(the records themselves keep to them, for the reference pass and a unit's page).

Each reader is only ever trusted to *accept*: a value of another type than the record's, a
time in another form than the one SQLAlchemy writes on SQLite, a JSON text that does not
decode, and the reader answers ``None``; the pass then reads that row as before (SQLAlchemy,
then the record's validation), so a row the record refuses fails the report as it did.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from pydantic import JsonValue

from ..store import schema as tables

__all__ = [
    "EVENT_COLUMNS",
    "IDENTITY_COLUMNS",
    "LINK_COLUMNS",
    "EventRow",
    "EventView",
    "IdentityRow",
    "IdentityView",
    "LinkRow",
    "LinkView",
    "event_row",
    "identity_row",
    "link_row",
]


class EventView(Protocol):
    """What the report reads of an audit event (:class:`~usm_bridge.store.AuditEvent`)."""

    @property
    def id(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def call_id(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def before(self) -> JsonValue: ...
    @property
    def after(self) -> JsonValue: ...
    @property
    def detail(self) -> JsonValue: ...


class IdentityView(Protocol):
    """What the report reads of a call's identity (:class:`~usm_bridge.store.Identity`)."""

    @property
    def id(self) -> int: ...
    @property
    def call_id(self) -> str: ...
    @property
    def instance(self) -> str: ...
    @property
    def remote_id(self) -> str: ...
    @property
    def remote_key(self) -> str | None: ...
    @property
    def url(self) -> str | None: ...
    @property
    def correlation(self) -> str | None: ...


class LinkView(Protocol):
    """What the report reads of a chain link (:class:`~usm_bridge.store.ChainLink`)."""

    @property
    def upstream_call_id(self) -> str: ...
    @property
    def supplier_call_id(self) -> str: ...
    @property
    def route(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


#: What the pass selects of each table, in this order (the readers read by place): every
#: column, so that a row the record would refuse anywhere is doubted.
EVENT_COLUMNS: Final = (
    "id",
    "at",
    "call_id",
    "instance",
    "kind",
    "actor",
    "before",
    "after",
    "detail",
)
IDENTITY_COLUMNS: Final = (
    "id", "call_id", "instance", "remote_id", "remote_key", "url", "correlation", "pushed_hash",
    "pushed_at", "created_at", "updated_at",
)  # fmt: skip
LINK_COLUMNS: Final = ("id", "upstream_call_id", "supplier_call_id", "route", "created_at")
for _table, _columns in (
    (tables.audit_log, EVENT_COLUMNS),
    (tables.identities, IDENTITY_COLUMNS),
    (tables.chain_links, LINK_COLUMNS),
):
    assert tuple(_table.c.keys()) == _columns, f"update the readers of {_table.name}"


class EventRow:
    """An audit event as its row gives it (an :class:`EventView`)."""

    __slots__ = ("actor", "after", "at", "before", "call_id", "detail", "id", "instance", "kind")

    def __init__(self, row: Sequence[Any], at: datetime, json_columns: Sequence[Any]) -> None:
        self.id, _, self.call_id, self.instance, self.kind, self.actor = row[:6]
        self.at = at
        self.before, self.after, self.detail = json_columns


class IdentityRow:
    """A call's identity as its row gives it (an :class:`IdentityView`)."""

    __slots__ = IDENTITY_COLUMNS

    def __init__(self, row: Sequence[Any], times: Sequence[datetime | None]) -> None:
        (
            self.id, self.call_id, self.instance, self.remote_id, self.remote_key, self.url,
            self.correlation, self.pushed_hash,
        ) = row[:8]  # fmt: skip
        self.pushed_at, self.created_at, self.updated_at = times


class LinkRow:
    """A chain link as its row gives it (a :class:`LinkView`; its row's id is the table's)."""

    __slots__ = ("created_at", "route", "supplier_call_id", "upstream_call_id")

    def __init__(self, row: Sequence[Any], created_at: datetime) -> None:
        _, self.upstream_call_id, self.supplier_call_id, self.route = row[:4]
        self.created_at = created_at


class _Doubt(Exception):
    """A value the record might refuse or read otherwise: the row is read as before."""


#: The one form SQLAlchemy writes a time in on SQLite (always six digits of fraction); any
#: other is SQLAlchemy's to parse.
_SQLITE_TIME: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}"
).fullmatch


def _time(value: Any) -> datetime:
    """The aware UTC time ``UTCDateTime`` reads from the value (text on SQLite, a datetime
    on PostgreSQL)."""
    if type(value) is str:
        if _SQLITE_TIME(value) is None:
            raise _Doubt
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    if type(value) is not datetime:
        raise _Doubt
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json(value: Any) -> JsonValue:
    """A JSON column's value on SQLite: its text decoded as the engine decodes it (SQL NULL
    is ``None``)."""
    if value is None:
        return None
    if type(value) is not str:
        raise _Doubt
    decoded: JsonValue = json.loads(value)
    return decoded


def _text(value: Any) -> str:
    if type(value) is not str:
        raise _Doubt
    return value


def _optional_texts(values: Sequence[Any]) -> None:
    for value in values:
        if value is not None and type(value) is not str:
            raise _Doubt


def _key(value: Any) -> None:
    if type(value) is not int:
        raise _Doubt


def event_row(row: Sequence[Any], *, sqlite: bool) -> EventRow | None:
    """The event a row of :data:`EVENT_COLUMNS` holds; ``None`` where the record is to read
    it. ``sqlite``: the JSON columns hold text (on PostgreSQL, a text is a JSON string)."""
    try:
        _key(row[0])
        _text(row[4])
        _text(row[5])
        _optional_texts(row[2:4])
        if sqlite:
            decoded = [_json(value) for value in row[6:9]]
        else:
            decoded = list(row[6:9])
            for value in decoded:
                if not _plain_json(value):
                    raise _Doubt
        return EventRow(row, _time(row[1]), decoded)
    except (_Doubt, TypeError, ValueError):
        return None


def _plain_json(value: Any) -> bool:
    """Whether psycopg's decoded value is one the record keeps as it is (JSON's own types)."""
    kind = type(value)
    if kind is dict:
        return all(type(key) is str and _plain_json(item) for key, item in value.items())
    if kind is list:
        return all(_plain_json(item) for item in value)
    return value is None or kind in (str, int, float, bool)


def identity_row(row: Sequence[Any]) -> IdentityRow | None:
    """The identity a row of :data:`IDENTITY_COLUMNS` holds; ``None`` where the record is to
    read it."""
    try:
        _key(row[0])
        _text(row[1])
        _text(row[2])
        _text(row[3])
        _optional_texts(row[4:8])
        pushed = row[8]
        times = (None if pushed is None else _time(pushed), _time(row[9]), _time(row[10]))
        return IdentityRow(row, times)
    except (_Doubt, TypeError, ValueError):
        return None


def link_row(row: Sequence[Any]) -> LinkRow | None:
    """The link a row of :data:`LINK_COLUMNS` holds; ``None`` where the record is to read it."""
    try:
        _key(row[0])
        _text(row[1])
        _text(row[2])
        _text(row[3])
        return LinkRow(row, _time(row[4]))
    except (_Doubt, TypeError, ValueError):
        return None
