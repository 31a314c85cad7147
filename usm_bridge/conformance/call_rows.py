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
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from ..call_view import CallView
from ..model import _NAME_RE as _MODEL_NAME_RE
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


#: What :func:`_read` finds in a table of members for a value that is none of them.
_BAD: Final = object()


def _members(enum: type[Enum], *, optional: bool = False) -> dict[Any, Any]:
    """The enum's members by value (and ``None`` for itself where the member is optional)."""
    found: dict[Any, Any] = {member.value: member for member in enum}
    if optional:
        found[None] = None
    return found


_CALL_TYPES: Final = _members(CallType)
_STATUSES: Final = _members(Status)
_IMPACTS: Final = _members(Impact, optional=True)
_URGENCIES: Final = _members(Urgency, optional=True)
_WAITING_ON: Final = _members(WaitingOn, optional=True)
_PROCESSES: Final = _members(UsmProcess, optional=True)
_CONFIRMATIONS: Final = _members(ConfirmationKind)

#: The form the model writes a time in (pydantic's RFC 3339: seconds, an optional fraction,
#: ``Z`` or an offset in hours and minutes). Any other form is the model's to parse.
_TIME: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
).fullmatch
_FORKS: Final = TypeAdapter(tuple[ProcessLink, ...])
#: Names already seen to keep the model's pattern (a report's few units and instances), kept
#: up to :data:`_NAMES_KEPT`: a store with more distinct names (edited by hand) only costs the
#: pattern's test each time, never memory without bound in a process that makes many reports.
_NAMES: set[str] = set()
_NAMES_KEPT: Final = 4096


def _name(value: Any) -> Any:
    if value not in _NAMES:
        # fullmatch: the model's own rule (``$`` alone would take a final newline).
        if not isinstance(value, str) or not _MODEL_NAME_RE.fullmatch(value):
            raise _Doubt
        if len(_NAMES) < _NAMES_KEPT:
            _NAMES.add(value)
    return value


def _fits(value: Any, most: int) -> bool:
    """Whether an optional text column holds what the model takes (at most ``most``
    characters)."""
    return value is None or (type(value) is str and len(value) <= most)


def _time(value: Any) -> datetime:
    # Not a string: the regex raises TypeError, a doubt too (:func:`call_row`).
    if _TIME(value) is None:
        raise _Doubt
    # A date that is no date (February 30th): ValueError, a doubt (the model says why).
    return datetime.fromisoformat(value)


def call_row(row: Sequence[Any]) -> CallRow | None:
    """The call a row of :data:`ROW_COLUMNS` holds; ``None`` where the model is to read it
    (a value the model might refuse, or the row's facts missing)."""
    try:
        return _read(row)
    except (_Doubt, TypeError, ValueError):
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
    call = CallRow()
    call.call_type = _CALL_TYPES.get(call_type, _BAD)
    call.status = _STATUSES.get(status, _BAD)
    call.impact = _IMPACTS.get(impact, _BAD)
    call.urgency = _URGENCIES.get(urgency, _BAD)
    call.waiting_on = _WAITING_ON.get(waiting_on, _BAD)
    call.waiting_process = _PROCESSES.get(waiting_process, _BAD)
    if (
        facts_missing
        or type(id_) is not str
        or type(title) is not str
        # The column keeps the title's first 200 characters, all the report shows of it.
        or len(title) > 200
        or _BAD in (call.call_type, call.status, call.impact, call.urgency, call.waiting_on)
        or call.waiting_process is _BAD
        or not (_fits(priority, 100) and _fits(service, 300) and _fits(agreement, 300))
        or not (upstream is None or type(upstream) is str)
    ):
        raise _Doubt
    call.id = id_
    call.unit = _name(unit)
    call.title = title
    call.priority = priority
    call.service = service
    call.agreement = agreement
    call.customer_unit = None if customer_unit is None else _name(customer_unit)
    if source_instance is not None:
        if not (
            type(source_remote_id) is str
            and 0 < len(source_remote_id) <= 300
            and _fits(source_remote_key, 300)
            and _fits(source_url, 2_000)
        ):
            raise _Doubt
        call.source = SourceRow(
            _name(source_instance), source_remote_id, source_remote_key, source_url
        )
    elif source_remote_id is None and source_remote_key is None and source_url is None:
        call.source = None
    else:
        raise _Doubt
    call.created = _time(created)
    call.updated = _time(updated)
    call.fulfilled = None if fulfilled is None else _time(fulfilled)
    call.confirmed = None if confirmed is None else _time(confirmed)
    call.closed = None if closed is None else _time(closed)
    if forks is not None:
        try:
            call.chain = ChainRow(upstream, _FORKS.validate_json(forks))
        except ValidationError:
            raise _Doubt from None
    else:
        call.chain = _NO_CHAIN if upstream is None else ChainRow(upstream, ())
    if confirmation_kind is not None:
        kind = _CONFIRMATIONS.get(confirmation_kind, _BAD)
        if kind is _BAD or not _fits(confirmation_how, 300):
            raise _Doubt
        at = None if confirmation_at is None else _time(confirmation_at)
        call.confirmation = ConfirmationRow(kind, at, confirmation_how)
    elif confirmation_at is None and confirmation_how is None:
        call.confirmation = None
    else:
        raise _Doubt
    broken = call_rule_broken(
        call.call_type, call.status, call.waiting_on, call.waiting_process, call.created,
        call.updated,
    )  # fmt: skip
    if broken is not None:
        raise _Doubt
    return call


def with_customer_unit(call: CallView, customer: str | None) -> CallView:
    """``call`` with another customer unit (a question about its agreement), as a model
    ``Call`` or a row, whichever it is."""
    if isinstance(call, Call):
        return call.model_copy(update={"customer_unit": customer})
    if not isinstance(call, CallRow):
        raise TypeError(f"not a call: {type(call).__name__}")
    copy = CallRow()
    for name in CallRow.__slots__:
        setattr(copy, name, getattr(call, name))
    copy.customer_unit = customer
    return copy
