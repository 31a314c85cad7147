"""The report's pass reading each call from its row's columns, without building the model.

Revision 0016 keeps, as columns of ``calls`` (:func:`usm_bridge.store.call_facts.fact_columns`),
every member of a call the report's pass reads. Validating each call's facts through the model
(even its twin, :mod:`.facts_reader`) and building its objects was most of the pass's CPU, so
the pass reads these columns through a plain DB-API cursor (no SQLAlchemy row processing) and
builds per row a :class:`CallRow`: a slotted object with the attributes the report's consumers
read of a :class:`~usm_bridge.model.Call` (:class:`.call_view.CallView`), of the same types (the
model's enum members, aware datetimes equal to the model's, the model's own ``ProcessLink`` for
each fork).

:func:`call_row` is only ever trusted to *accept*: it checks what the model would check of the
values the columns show (each enum, each name's pattern, each text's length, each time's form
and zone, the rules between members: :func:`usm_bridge.model.call_rule_broken`), and answers
``None`` for a row it doubts (a NULL fact column: a row whose facts were never derived), which
the pass then reads through the model as before, so an unreadable call is listed exactly as
the model says. The columns are derived from the facts with the document, on every write and
by the upgrade; what only the facts hold (a confirmation's person, the chain's suppliers, the
texts) is not read by the report, so a call whose facts the model refuses there is judged by
its columns (a hand-edited facts column: the store never writes one). The id is the row's key,
which the store writes from the same call. ``tests/conformance/test_conformance_call_rows.py``
checks over mutated rows that a row accepted here is one the model accepts, with equal values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import Any, Final, TypeVar

from pydantic import TypeAdapter, ValidationError

from ..model import (
    Call,
    CallType,
    ConfirmationKind,
    Impact,
    ProcessLink,
    Status,
    Urgency,
    UsmProcess,
    WaitingOn,
    call_rule_broken,
)
from ..model import _NAME_RE as _MODEL_NAME_RE
from ..store.call_facts import FACT_COLUMNS

__all__ = [
    "ROW_COLUMNS",
    "CallRow",
    "ChainRow",
    "ConfirmationRow",
    "SourceRow",
    "call_row",
    "with_customer_unit",
]

#: What the pass selects of each row, in this order (:func:`call_row` reads it by place):
#: the row's own columns, whether its facts are missing, then the fact columns.
ROW_COLUMNS: Final = ("id", "unit", "call_type", "status", "facts_missing", *FACT_COLUMNS)
assert FACT_COLUMNS == (
    "priority", "impact", "urgency", "service", "agreement", "customer_unit", "waiting_on",
    "waiting_process", "title", "source_instance", "source_remote_id", "source_remote_key",
    "source_url", "tool_created", "tool_updated", "tool_fulfilled", "tool_confirmed",
    "tool_closed", "upstream", "confirmation_kind", "confirmation_at", "confirmation_how",
    "forks",
), "call_row reads the fact columns by place: update it with FACT_COLUMNS"  # fmt: skip


class SourceRow:
    """Where the call lives in its tool (the model's ``SourceRef``, as the columns hold it)."""

    __slots__ = ("instance", "remote_id", "remote_key", "url")

    def __init__(self, instance: str, remote_id: str, remote_key: str | None, url: str | None):
        self.instance = instance
        self.remote_id = remote_id
        self.remote_key = remote_key
        self.url = url


class ChainRow:
    """The call's place in the chain: its upstream call and its forks (the model's
    ``ChainLinks`` without the suppliers, which the report does not read)."""

    __slots__ = ("forks", "upstream")

    def __init__(self, upstream: str | None, forks: tuple[ProcessLink, ...]) -> None:
        self.upstream = upstream
        self.forks = forks


class ConfirmationRow:
    """The customer's acceptance (the model's ``Confirmation`` without its person)."""

    __slots__ = ("at", "how", "kind")

    def __init__(self, kind: ConfirmationKind, at: datetime | None, how: str | None) -> None:
        self.kind = kind
        self.at = at
        self.how = how


#: A call without forks shares one chain object per upstream (most have neither).
_NO_CHAIN: Final = ChainRow(None, ())


class CallRow:
    """A call as its row's columns give it: what the report reads of a ``Call``."""

    __slots__ = (
        "agreement",
        "call_type",
        "chain",
        "closed",
        "confirmation",
        "confirmed",
        "created",
        "customer_unit",
        "fulfilled",
        "id",
        "impact",
        "priority",
        "service",
        "source",
        "status",
        "title",
        "unit",
        "updated",
        "urgency",
        "waiting_on",
        "waiting_process",
    )

    id: str
    unit: str
    call_type: CallType
    status: Status
    priority: str | None
    impact: Impact | None
    urgency: Urgency | None
    service: str | None
    agreement: str | None
    customer_unit: str | None
    waiting_on: WaitingOn | None
    waiting_process: UsmProcess | None
    title: str
    source: SourceRow | None
    created: datetime
    updated: datetime
    fulfilled: datetime | None
    confirmed: datetime | None
    closed: datetime | None
    chain: ChainRow
    confirmation: ConfirmationRow | None

    @property
    def process(self) -> UsmProcess | None:
        """The USM process handling the call: its type's (as the model derives it)."""
        return self.call_type.process

    @property
    def call(self) -> CallRow:
        """The call itself: a page's entry is read as a stored call's ``.call``."""
        return self


class _Doubt(Exception):
    """A value the model might refuse: the row is the model's to read."""


def _members(enum: type[Enum]) -> dict[str, Any]:
    return {member.value: member for member in enum}


_CALL_TYPES: Final = _members(CallType)
_STATUSES: Final = _members(Status)
_IMPACTS: Final = _members(Impact)
_URGENCIES: Final = _members(Urgency)
_WAITING_ON: Final = _members(WaitingOn)
_PROCESSES: Final = _members(UsmProcess)
_CONFIRMATIONS: Final = _members(ConfirmationKind)

#: The form the model writes a time in (pydantic's RFC 3339: seconds, an optional fraction,
#: ``Z`` or an offset in hours and minutes). Any other form is the model's to parse.
_TIME: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
#: Names already seen to keep the model's pattern (a report's few units and instances).
_NAMES: set[str] = set()
_FORKS: Final = TypeAdapter(tuple[ProcessLink, ...])


def _member(members: dict[str, Any], value: Any) -> Any:
    found = members.get(value)
    if found is None:
        raise _Doubt
    return found


def _optional(members: dict[str, Any], value: Any) -> Any:
    return None if value is None else _member(members, value)


def _name(value: Any) -> str:
    if value not in _NAMES:
        # fullmatch: the model's own rule (``$`` alone would take a final newline).
        if not isinstance(value, str) or not _MODEL_NAME_RE.fullmatch(value):
            raise _Doubt
        _NAMES.add(value)
    return value  # type: ignore[no-any-return]


def _text(value: Any, most: int, least: int = 0) -> str | None:
    if value is not None and not (isinstance(value, str) and least <= len(value) <= most):
        raise _Doubt
    return value


def _time(value: Any) -> datetime:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise _Doubt
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # a date that is no date (February 30th): the model says why
        raise _Doubt from None


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


def call_row(row: Sequence[Any]) -> CallRow | None:
    """The call a row of :data:`ROW_COLUMNS` holds; ``None`` where the model is to read it
    (a value the model might refuse, or the row's facts missing)."""
    try:
        return _read(row)
    except _Doubt:
        return None


def _read(row: Sequence[Any]) -> CallRow:
    (
        id_, unit, call_type, status, facts_missing,
        priority, impact, urgency, service, agreement, customer_unit, waiting_on,
        waiting_process, title, source_instance, source_remote_id, source_remote_key,
        source_url, created, updated, fulfilled, confirmed,
        closed, upstream, confirmation_kind, confirmation_at, confirmation_how,
        forks,
    ) = row  # fmt: skip
    if facts_missing or title is None or not isinstance(id_, str):
        raise _Doubt
    call = CallRow()
    call.id = id_
    call.unit = _name(unit)
    call.call_type = _member(_CALL_TYPES, call_type)
    call.status = _member(_STATUSES, status)
    call.priority = _text(priority, 100)
    call.impact = _optional(_IMPACTS, impact)
    call.urgency = _optional(_URGENCIES, urgency)
    call.service = _text(service, 300)
    call.agreement = _text(agreement, 300)
    call.customer_unit = None if customer_unit is None else _name(customer_unit)
    call.waiting_on = _optional(_WAITING_ON, waiting_on)
    call.waiting_process = _optional(_PROCESSES, waiting_process)
    # The column keeps the title's first 200 characters, all the report shows of it.
    call.title = _text(title, 200)  # type: ignore[assignment]
    if source_instance is None:
        if not (source_remote_id is None and source_remote_key is None and source_url is None):
            raise _Doubt
        call.source = None
    else:
        call.source = SourceRow(
            _name(source_instance),
            _text(source_remote_id, 300, least=1),  # type: ignore[arg-type]
            _text(source_remote_key, 300),
            _text(source_url, 2_000),
        )
        if source_remote_id is None:
            raise _Doubt
    call.created = _time(created)
    call.updated = _time(updated)
    call.fulfilled = _optional_time(fulfilled)
    call.confirmed = _optional_time(confirmed)
    call.closed = _optional_time(closed)
    if upstream is not None and not isinstance(upstream, str):
        raise _Doubt
    if forks is None:
        call.chain = _NO_CHAIN if upstream is None else ChainRow(upstream, ())
    else:
        try:
            call.chain = ChainRow(upstream, _FORKS.validate_json(forks))
        except ValidationError:
            raise _Doubt from None
    if confirmation_kind is None:
        if not (confirmation_at is None and confirmation_how is None):
            raise _Doubt
        call.confirmation = None
    else:
        call.confirmation = ConfirmationRow(
            _member(_CONFIRMATIONS, confirmation_kind),
            _optional_time(confirmation_at),
            _text(confirmation_how, 300),
        )
    broken = call_rule_broken(
        call.call_type, call.status, call.waiting_on, call.waiting_process, call.created,
        call.updated,
    )  # fmt: skip
    if broken is not None:
        raise _Doubt
    return call


_C = TypeVar("_C", Call, CallRow)


def with_customer_unit(call: _C, customer: str | None) -> _C:
    """``call`` with another customer unit (a question about its agreement), as a model
    ``Call`` or a row, whichever it is."""
    if isinstance(call, Call):
        return call.model_copy(update={"customer_unit": customer})
    copy = CallRow()
    for name in CallRow.__slots__:
        setattr(copy, name, getattr(call, name))
    copy.customer_unit = customer
    return copy
