"""What the conformance report and the registry's answers read of a call, as a protocol.

The report's pass reads each call either through the model (:class:`usm_bridge.model.Call`)
or from its row's columns (:class:`usm_bridge.conformance.call_rows.CallRow`, no model object
per call). Both offer these members, read-only, of the same types: the checks, views and
registry answers are typed against :class:`CallView`, so mypy checks that they read nothing
the row does not hold (the texts, people, comments, attributes, the chain's suppliers).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from .model import (
    CallType,
    ConfirmationKind,
    Impact,
    ProcessLink,
    Status,
    Urgency,
    UsmProcess,
    WaitingOn,
)

__all__ = ["CallView", "ChainView", "ConfirmationView", "SourceView", "StoredCallView"]


class SourceView(Protocol):
    """Where a call lives in its tool (``SourceRef``)."""

    @property
    def instance(self) -> str: ...
    @property
    def remote_id(self) -> str: ...
    @property
    def remote_key(self) -> str | None: ...
    @property
    def url(self) -> str | None: ...


class ChainView(Protocol):
    """A call's upstream call and its forks (``ChainLinks``)."""

    @property
    def upstream(self) -> str | None: ...
    @property
    def forks(self) -> Sequence[ProcessLink]: ...


class ConfirmationView(Protocol):
    """A customer's acceptance (``Confirmation``)."""

    @property
    def kind(self) -> ConfirmationKind: ...
    @property
    def at(self) -> datetime | None: ...
    @property
    def how(self) -> str | None: ...


class CallView(Protocol):
    """A call as the report reads it (``Call``); ``title`` may be cut to the first 200
    characters, all a report shows of it."""

    @property
    def id(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def call_type(self) -> CallType: ...
    @property
    def status(self) -> Status: ...
    @property
    def process(self) -> UsmProcess | None: ...
    @property
    def priority(self) -> str | None: ...
    @property
    def impact(self) -> Impact | None: ...
    @property
    def urgency(self) -> Urgency | None: ...
    @property
    def service(self) -> str | None: ...
    @property
    def agreement(self) -> str | None: ...
    @property
    def customer_unit(self) -> str | None: ...
    @property
    def waiting_on(self) -> WaitingOn | None: ...
    @property
    def waiting_process(self) -> UsmProcess | None: ...
    @property
    def title(self) -> str: ...
    @property
    def source(self) -> SourceView | None: ...
    @property
    def created(self) -> datetime: ...
    @property
    def updated(self) -> datetime: ...
    @property
    def fulfilled(self) -> datetime | None: ...
    @property
    def confirmed(self) -> datetime | None: ...
    @property
    def closed(self) -> datetime | None: ...
    @property
    def chain(self) -> ChainView: ...
    @property
    def confirmation(self) -> ConfirmationView | None: ...


class StoredCallView(Protocol):
    """A page's entry: a stored call (``StoredCall``) or a row (``CallRow``, its own call)."""

    @property
    def id(self) -> str: ...
    @property
    def call(self) -> CallView: ...
