"""The canonical USM data model every tool is mapped onto.

The vocabulary comes from USM (Unified Service Management, SURVUZ): five processes, calls
classified into four support-request types plus risk reports, impact and urgency with a priority
derived from them, and calls chained between units (see ``shared/design/USM.md``). The status
list and ``unclassified`` are this project's additions, because USM publishes no status list and
mail arrives before anyone classified it.

All text fields are untrusted (they come from tickets and e-mail): they are size-limited here,
and escaped or quoted wherever they are rendered or sent on.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    field_validator,
    model_validator,
)

__all__ = [
    "MAX_BODY_CHARS",
    "MAX_TITLE_CHARS",
    "Agreement",
    "AgreementKind",
    "Call",
    "CallType",
    "ChainLinks",
    "Comment",
    "Impact",
    "Person",
    "Service",
    "SourceRef",
    "Status",
    "Unit",
    "Urgency",
    "UsmProcess",
    "WaitingOn",
    "new_call_id",
    "utcnow",
]

#: Longest title kept. Real tools allow ~255 (Jira) to 160 (ServiceNow); the margin is for mail.
MAX_TITLE_CHARS = 1_000
#: Longest description or comment body kept. Larger bodies are refused, never silently cut.
MAX_BODY_CHARS = 1_000_000

_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def _tz_aware(value: datetime | None) -> datetime | None:
    """Naive timestamps are ambiguous across tools in different zones: refuse them."""
    if value is not None and value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (e.g. +00:00)")
    return value


def _name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            "must be lower-case letters, digits, '_' or '-', start with a letter, at most 63 chars"
        )
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_tz_aware)]
#: A short machine name (unit, instance, service id): safe in URLs, file names and logs.
Name = Annotated[str, AfterValidator(_name)]
Title = Annotated[str, StringConstraints(max_length=MAX_TITLE_CHARS)]
Body = Annotated[str, StringConstraints(max_length=MAX_BODY_CHARS)]


class UsmProcess(StrEnum):
    """The five USM processes (Simple USM v6)."""

    AGREE = "agree"
    CHANGE = "change"
    RECOVER = "recover"
    OPERATE = "operate"
    IMPROVE = "improve"


class CallType(StrEnum):
    """What a call asks for. Once classified, every call is exactly one of these."""

    WISH = "wish"
    RFC = "rfc"
    SERVICE_REQUEST = "service_request"
    INCIDENT = "incident"
    RISK = "risk"
    UNCLASSIFIED = "unclassified"

    @property
    def process(self) -> UsmProcess | None:
        """The USM process that handles this type; ``None`` while unclassified."""
        return _PROCESS_OF[self]

    @property
    def is_support_request(self) -> bool:
        """True for the four customer support requests (everything but risk and unclassified)."""
        return self in (CallType.WISH, CallType.RFC, CallType.SERVICE_REQUEST, CallType.INCIDENT)


_PROCESS_OF: dict[CallType, UsmProcess | None] = {
    CallType.WISH: UsmProcess.AGREE,
    CallType.RFC: UsmProcess.CHANGE,
    CallType.SERVICE_REQUEST: UsmProcess.OPERATE,
    CallType.INCIDENT: UsmProcess.RECOVER,
    CallType.RISK: UsmProcess.IMPROVE,
    CallType.UNCLASSIFIED: None,
}


class Status(StrEnum):
    """Where a call stands in its lifecycle (see :mod:`usm_bridge.lifecycle` for the moves)."""

    REGISTERED = "registered"
    CLASSIFIED = "classified"
    IN_PROGRESS = "in_progress"
    WAITING = "waiting"
    FULFILLED = "fulfilled"
    CONFIRMED = "confirmed"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class WaitingOn(StrEnum):
    """Whom a waiting call waits for."""

    CUSTOMER = "customer"
    SUPPLIER = "supplier"
    SECONDARY_PROCESS = "secondary_process"


class Impact(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NIL = "nil"


class Urgency(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class _Model(BaseModel):
    # Unknown keys are an error, not silently dropped: a typo in a mapping must show.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Person(_Model):
    """Someone a call names: requester, customer contact, assignee, comment author."""

    name: Annotated[str, StringConstraints(max_length=300)] | None = None
    email: Annotated[str, StringConstraints(max_length=320)] | None = None
    #: The tool's own id for the person (Jira accountId, ServiceNow sys_id, an address).
    ref: Annotated[str, StringConstraints(max_length=300)] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Person:
        if not (self.name or self.email or self.ref):
            raise ValueError("a person needs at least a name, an e-mail or a ref")
        return self


class SourceRef(_Model):
    """Where a call lives in a unit's tool."""

    instance: Name
    remote_id: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    remote_key: Annotated[str, StringConstraints(max_length=300)] | None = None
    url: Annotated[str, StringConstraints(max_length=2_000)] | None = None


class Comment(_Model):
    """One entry in a call's conversation."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    author: Person | None = None
    body: Body
    created: AwareDatetime
    #: Public comments are seen by the customer and travel along the chain; internal ones stay.
    public: bool = True
    #: The connector instance the comment was first read from, or ``"bridge"``.
    origin: str = "bridge"
    remote_id: str | None = None


class ChainLinks(_Model):
    """The call's place in the chain of units (USM.md, "the chain")."""

    #: The customer-side call this call supplies, if any (a canonical call id).
    upstream: str | None = None
    #: Calls raised at supplier units on this call's behalf (canonical call ids).
    suppliers: list[str] = Field(default_factory=list)


def new_call_id() -> str:
    """A fresh canonical call id: stable, opaque, and never reused."""
    return f"call_{uuid.uuid4().hex}"


_ATTR_NS_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")


class Call(_Model):
    """A call: any customer interaction a unit handles, in the canonical USM shape."""

    id: str = Field(default_factory=new_call_id)
    unit: Name
    source: SourceRef | None = None
    call_type: CallType = CallType.UNCLASSIFIED
    status: Status = Status.REGISTERED
    waiting_on: WaitingOn | None = None
    title: Title
    description: Body = ""
    requester: Person | None = None
    customer: Person | None = None
    assignee: Person | None = None
    service: Annotated[str, StringConstraints(max_length=300)] | None = None
    agreement: Annotated[str, StringConstraints(max_length=300)] | None = None
    impact: Impact | None = None
    urgency: Urgency | None = None
    #: The priority class as the unit's tool states it, normalised through the priority matrix
    #: names; :func:`usm_bridge.lifecycle.PriorityMatrix.derive` tells what it should be.
    priority: Annotated[str, StringConstraints(max_length=100)] | None = None
    created: AwareDatetime
    updated: AwareDatetime
    fulfilled: AwareDatetime | None = None
    confirmed: AwareDatetime | None = None
    closed: AwareDatetime | None = None
    comments: list[Comment] = Field(default_factory=list)
    chain: ChainLinks = Field(default_factory=ChainLinks)
    #: Tool fields kept but not modelled, by namespace (usually the tool kind):
    #: ``{"jira": {"labels": ["x"]}}``.
    attributes: dict[str, dict[str, JsonValue]] = Field(default_factory=dict)

    @field_validator("attributes")
    @classmethod
    def _namespaced(cls, value: dict[str, dict[str, JsonValue]]) -> dict[str, dict[str, JsonValue]]:
        for namespace in value:
            if not _ATTR_NS_RE.match(namespace):
                raise ValueError(f"attribute namespace {namespace!r} is not a lower-case name")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Call:
        if self.status is Status.WAITING and self.waiting_on is None:
            raise ValueError("a waiting call must say whom it waits on (waiting_on)")
        if self.status is not Status.WAITING and self.waiting_on is not None:
            raise ValueError(f"waiting_on is set but status is {self.status.value!r}, not waiting")
        if self.updated < self.created:
            raise ValueError("updated is earlier than created")
        return self

    @property
    def process(self) -> UsmProcess | None:
        return self.call_type.process

    def content_fingerprint(self) -> dict[str, Any]:
        """The call's content without bookkeeping that changes on every read.

        Used for hashing: two reads of the same remote state give the same fingerprint, so an
        echo of the bridge's own write is recognised and no no-op write is made.
        """
        return self.model_dump(mode="json", exclude={"id", "updated"})


AgreementKind = Literal["written", "verbal", "implicit", "contract"]


class Unit(_Model):
    """A service organisation: a link in the chain (a department, a team, a supplier)."""

    name: Name
    title: Annotated[str, StringConstraints(max_length=300)] | None = None
    #: Mail domains allowed to raise calls at this unit (used by the e-mail connector).
    allowed_domains: list[str] = Field(default_factory=list)


class Service(_Model):
    """A service a unit provides under agreements."""

    id: Name
    provider: Name
    title: Annotated[str, StringConstraints(max_length=300)] | None = None


class Agreement(_Model):
    """The agreement between a customer and a provider (written, verbal or implicit)."""

    id: Name
    customer: Name
    provider: Name
    kind: AgreementKind = "implicit"
    services: list[Name] = Field(default_factory=list)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None


def utcnow() -> datetime:
    """Now, time-zone aware (naive datetimes are refused by the model)."""
    return datetime.now(UTC)
