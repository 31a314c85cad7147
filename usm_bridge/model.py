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

import collections
import operator
import os
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
    WithJsonSchema,
    computed_field,
    field_validator,
    model_validator,
)

from .durations import Term

__all__ = [
    "AWARE_TIMESTAMP_PATTERN",
    "MAX_ATTACHMENT_NAME_BYTES",
    "MAX_BODY_CHARS",
    "MAX_TITLE_CHARS",
    "NAME_PATTERN",
    "UNCLASSIFIED_FORBIDS",
    "Agreement",
    "AgreementKind",
    "Attachment",
    "AttachmentSource",
    "Call",
    "CallType",
    "ChainLinks",
    "Comment",
    "Confirmation",
    "ConfirmationKind",
    "ForkRole",
    "Impact",
    "Person",
    "PriorityMatrix",
    "ProcessLink",
    "Service",
    "ServiceTargets",
    "SourceRef",
    "Status",
    "Unit",
    "Urgency",
    "UsmProcess",
    "WaitingOn",
    "attachment_name_problem",
    "call_rule_broken",
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
    # fullmatch: ``$`` alone would also take a trailing newline ("hr\n").
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            "must be lower-case letters, digits, '_' or '-', start with a letter, at most 63 chars"
        )
    return value


#: The true end of the text in the exported schema's patterns, in every regex dialect (``$``
#: also takes a final newline in Python's, which the ``jsonschema`` library uses).
_END = r"(?![\s\S])"
#: The exported schema's form of a timestamp: RFC 3339 with its offset (what the model emits).
AWARE_TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})" + _END
)
#: The exported schema's form of a :data:`Name`.
NAME_PATTERN = _NAME_RE.pattern.removesuffix("$") + _END
AwareDatetime = Annotated[
    datetime,
    AfterValidator(_tz_aware),
    # The JSON Schema says what the validator does (``usm-bridge schema`` is as strict).
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": AWARE_TIMESTAMP_PATTERN}),
]
#: A short machine name (unit, instance, service id): safe in URLs, file names and logs.
Name = Annotated[
    str,
    AfterValidator(_name),
    WithJsonSchema({"type": "string", "pattern": NAME_PATTERN}),
]
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


#: Statuses of work: a call must be classified before it reaches one (USM.md, "every call is
#: one of four support requests"); ``fulfilled`` and later stay allowed, since a tool may
#: close a call nobody classified (the conformance report counts those).
UNCLASSIFIED_FORBIDS: frozenset[Status] = frozenset({Status.IN_PROGRESS, Status.WAITING})


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


#: Longest attachment file name kept, in UTF-8 bytes: what the common file systems (ext4, NTFS
#: in UTF-16 units, APFS) and the tools' upload forms take.
MAX_ATTACHMENT_NAME_BYTES = 255
#: A media type as RFC 6838 names them (``type/subtype``, no parameters), lower case.
_MEDIA_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
#: Characters no attachment name may hold: path separators and control characters (C0, DEL,
#: C1). The sanitiser (:mod:`usm_bridge.attachments.names`) makes names that pass.
_UNSAFE_NAME_CHARS = re.compile(r"[/\\\x00-\x1f\x7f-\x9f]")


def attachment_name_problem(name: str) -> str | None:
    """What makes ``name`` unfit as a stored attachment's name, or ``None`` when it is fit.

    The model refuses what the sanitiser never makes, so a hand-written document cannot bring a
    path (``../x``), a control character or an over-long name into the store.
    """
    if not name or name in (".", ".."):
        return "an attachment name must not be empty, '.' or '..'"
    if _UNSAFE_NAME_CHARS.search(name):
        return "an attachment name must hold no path separator or control character"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_ATTACHMENT_NAME_BYTES:
        return f"an attachment name must be at most {MAX_ATTACHMENT_NAME_BYTES} UTF-8 bytes"
    return None


def _attachment_name(value: str) -> str:
    problem = attachment_name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _media_type(value: str) -> str:
    if not _MEDIA_TYPE_RE.fullmatch(value):
        raise ValueError("a media type is lower-case type/subtype, without parameters")
    return value


def _sha256(value: str) -> str:
    if not _SHA256_RE.fullmatch(value):
        raise ValueError("a SHA-256 is 64 lower-case hex digits")
    return value


AttachmentName = Annotated[
    str,
    AfterValidator(_attachment_name),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "pattern": r"^[^/\\\x00-\x1f\x7f-\x9f]+" + _END,
            "$comment": f"at most {MAX_ATTACHMENT_NAME_BYTES} UTF-8 bytes; not . or ..",
        }
    ),
]
MediaType = Annotated[
    str,
    AfterValidator(_media_type),
    WithJsonSchema({"type": "string", "pattern": _MEDIA_TYPE_RE.pattern.removesuffix("$") + _END}),
]
Sha256 = Annotated[
    str,
    AfterValidator(_sha256),
    WithJsonSchema({"type": "string", "pattern": _SHA256_RE.pattern.removesuffix("$") + _END}),
]


def _is_none(value: object) -> bool:
    return value is None


class AttachmentSource(_Model):
    """Where one copy of an attachment lives: the connector instance and the tool's own id of
    it (a Jira attachment id, a ServiceNow ``sys_attachment`` sys_id, a MIME part's place)."""

    instance: Name
    remote_id: Annotated[str, StringConstraints(min_length=1, max_length=300)]


class Attachment(_Model):
    """A file carried by a call or a comment: a signed form, a screenshot, a log.

    The content itself is never in the model (it streams from tool to tool, see
    :mod:`usm_bridge.attachments`); the model holds what identifies it and what the policy
    decided. Its identity is :attr:`identity`, its SHA-256 with its name: the same file under
    the same name is one attachment however many tools carry a copy, so a copy the bridge
    wrote and reads back is recognised (``origin`` is not the reading instance), and a target
    that already holds it is not written to again.
    """

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        # The exported schema holds the rule of _hashed_unless_refused too.
        json_schema_extra={
            "$comment": "sha256 may be null only on a refused attachment",
            "if": {"properties": {"refused": {"type": "null"}}},
            "then": {"required": ["sha256"], "properties": {"sha256": {"type": "string"}}},
        },
    )

    #: The sanitised file name (:func:`usm_bridge.attachments.safe_file_name`).
    name: AttachmentName
    #: The media type sniffed from the content; never the sender's word alone.
    media_type: MediaType
    #: What the sender declared, when it did and it differs (evidence for a refusal).
    declared_type: MediaType | None = None
    size: Annotated[int, Field(ge=0)]
    #: The content's SHA-256; ``None`` only for a file refused before it was read whole (larger
    #: than its cap: its stream was cut).
    sha256: Sha256 | None
    #: This copy, in the tool of the call (or comment) that carries it.
    source: AttachmentSource | None = None
    #: The tool's ids of other copies of this file (same SHA-256 and name) on the same record
    #: in ``source``'s instance: a file attached twice is one attachment, and none of its
    #: copies is downloaded again (absent from the document while there are none).
    same_in_source: list[Annotated[str, StringConstraints(min_length=1, max_length=300)]] = Field(
        default_factory=list, exclude_if=operator.not_, max_length=100
    )
    #: The connector instance the file was first read from (``"bridge"``: made by the bridge).
    origin: str = "bridge"
    #: Shown in the body (an e-mail's inline image) rather than listed beside it.
    inline: bool = False
    #: Why the policy refused to let it travel (the note on the call says the same); ``None``:
    #: it travels. A refused file stays listed, so that reading it again changes nothing.
    refused: Annotated[str, StringConstraints(min_length=1, max_length=1_000)] | None = None
    #: What a refusal where the file was read rested on: ``policy:<digest>`` (the instance's
    #: ``attachments`` policy then) or ``unreadable: <status>`` (the tool said it is gone).
    #: Under a policy that differs now, the file is read and decided again; absent from the
    #: document when unknown (a file that travels, a refusal recorded before it was kept).
    refused_under: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        default=None, exclude_if=_is_none
    )

    @model_validator(mode="after")
    def _hashed_unless_refused(self) -> Attachment:
        if self.sha256 is None and self.refused is None:
            raise ValueError("an attachment that travels needs its sha256")
        return self

    @property
    def identity(self) -> tuple[str | None, str]:
        """(SHA-256, name): what makes two copies the same attachment."""
        return (self.sha256, self.name)


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
    #: Files sent with the comment (absent from the document while there are none, as on
    #: :attr:`Call.attachments`).
    attachments: list[Attachment] = Field(default_factory=list, exclude_if=operator.not_)


class ForkRole(StrEnum):
    """Which end of a fork between processes the *other* call is."""

    #: The other call works for this one: this call forked to it (an incident -> its change).
    SECONDARY = "secondary"
    #: This call works for the other one (a change raised to restore an incident).
    PRIMARY = "primary"


class ProcessLink(_Model):
    """A fork: work handed from one process to another *inside* one unit (USM workflow
    patterns W3, recover -> change -> recover, and W4, recover -> operate -> recover).

    Like a supplier link it is a customer-provider pair, but both calls live in the same unit,
    usually in the same tool (ServiceNow's incident ``rfc`` field, a Jira issue link). It is
    read from the tool as the tool's own reference; ``call`` is filled in once the bridge holds
    the other record.
    """

    role: ForkRole
    #: The other call's process, where the tool's link tells it (an ``rfc`` field: change).
    process: UsmProcess | None = None
    #: The other record in the unit's tool (a sys_id, an issue key).
    ref: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    #: The connector instance holding the other record, when known.
    instance: Name | None = None
    #: The other call's canonical id, once the bridge holds it.
    call: str | None = None
    #: The tool's own name for the link (``incident.rfc``, ``jira:is caused by``): evidence.
    via: Annotated[str, StringConstraints(max_length=200)] | None = None


class ChainLinks(_Model):
    """The call's place in the chain of units (USM.md, "the chain") and in its unit's
    processes (forks)."""

    #: The customer-side call this call supplies, if any (a canonical call id).
    upstream: str | None = None
    #: Calls raised at supplier units on this call's behalf (canonical call ids).
    suppliers: list[str] = Field(default_factory=list)
    #: Forks to or from other processes inside the same unit.
    forks: list[ProcessLink] = Field(default_factory=list)


class ConfirmationKind(StrEnum):
    """How a fulfilled call came to be accepted by its customer."""

    #: The customer said so: their own transition or close in the tool, a confirming reply, the
    #: customer unit's agent (ServiceNow's caller closing a resolved incident).
    EXPLICIT = "explicit"
    #: Nobody said so: a close after N days by the tool (ServiceNow's auto-close, a JSM
    #: automation) or the bridge's acceptance by silence. It counts as a confirmation only
    #: where the call's agreement allows implicit confirmation.
    IMPLICIT = "implicit"


class Confirmation(_Model):
    """The customer's acceptance of a fulfilled call (USM: an incident is closed only after the
    customer confirmed the service is resumed)."""

    kind: ConfirmationKind
    #: Who confirmed, when known (the caller, the customer unit's agent); never for implicit.
    by: Person | None = None
    at: AwareDatetime | None = None
    #: How the tool or the bridge told it, in words (evidence for the report).
    how: Annotated[str, StringConstraints(max_length=300)] | None = None


#: Call ids made ahead, from one read of the OS's random bytes for :data:`_IDS_A_READ` of
#: them. ``os.urandom`` is a system call that releases the GIL: in a backfill, whose pages are
#: read by a second thread, every record's call id handed the GIL over (7.8 us of the ingest
#: thread's CPU a call id inside a 10,000-issue Jira backfill, 3.0 us made ahead; 2 us in a
#: loop alone). A forked process starts without them, or parent and child would hand out the
#: same ids.
_ids_ahead: collections.deque[str] = collections.deque()
_IDS_A_READ = 256
#: What ``uuid.UUID(bytes=..., version=4)`` clears and sets: the version and variant bits.
_UUID4_CLEARED = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (4 << 76) | (0x8000 << 48)
os.register_at_fork(after_in_child=_ids_ahead.clear)


def new_call_id() -> str:
    """A fresh canonical call id: stable, opaque, and never reused (``call_`` and the hex of a
    random UUID version 4, as ``uuid.uuid4().hex`` gives it)."""
    while True:
        try:
            return _ids_ahead.popleft()  # atomic: threads never get the same id
        except IndexError:
            block = os.urandom(16 * _IDS_A_READ)
            _ids_ahead.extend(
                f"call_{int.from_bytes(block[at : at + 16]) & _UUID4_CLEARED | _UUID4_SET:032x}"
                for at in range(0, len(block), 16)
            )


def call_rule_broken(
    call_type: CallType,
    status: Status,
    waiting_on: WaitingOn | None,
    waiting_process: UsmProcess | None,
    created: datetime,
    updated: datetime,
) -> str | None:
    """Which of the rules between a :class:`Call`'s members these values break, in the
    model's words; ``None`` when they keep them all. The model's own check, and the
    conformance report's reader of stored facts (which builds calls without the model)."""
    if waiting_process is not None and waiting_on is not WaitingOn.SECONDARY_PROCESS:
        return "waiting_process is set but the call does not wait on a process"
    if status is Status.WAITING and waiting_on is None:
        return "a waiting call must say whom it waits on (waiting_on)"
    if status is not Status.WAITING and waiting_on is not None:
        return f"waiting_on is set but status is {status.value!r}, not waiting"
    if call_type is CallType.UNCLASSIFIED and status in UNCLASSIFIED_FORBIDS:
        # USM: the provider classifies a call before working on it (the type decides
        # the process, and the process the work); nobody works on "we do not know yet".
        return (
            f"an unclassified call cannot be {status.value}: classify it first "
            "(give it a call_type)"
        )
    if updated < created:
        return "updated is earlier than created"
    return None


_ATTR_NS_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")


class Call(_Model):
    """A call: any customer interaction a unit handles, in the canonical USM shape."""

    id: str = Field(default_factory=new_call_id)
    unit: Name
    source: SourceRef | None = None
    call_type: CallType = CallType.UNCLASSIFIED
    status: Status = Status.REGISTERED
    waiting_on: WaitingOn | None = None
    #: The process a ``secondary_process`` wait waits on (change or operate for an incident).
    #: Recorded as the tool says it, also where USM has no such fork (an incident waiting on
    #: improve: ServiceNow's "Awaiting Problem"); the report shows those, never hides them.
    waiting_process: UsmProcess | None = None
    title: Title
    description: Body = ""
    requester: Person | None = None
    customer: Person | None = None
    #: The party to the agreement the call is made under: for a supplier call the customer
    #: *unit* (its upstream call's unit), for a direct call the outside party if known. The
    #: person who called stays ``requester`` (USM's customer-provider interaction model).
    customer_unit: Name | None = None
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
    #: How the customer accepted the fulfilled call (explicitly, or implicitly by a tool's
    #: automatic close or by silence); ``None`` until then.
    confirmation: Confirmation | None = None
    comments: list[Comment] = Field(default_factory=list)
    #: Files on the call itself. Absent from the document while there are none, so documents
    #: and content hashes stored before attachments existed stay byte for byte the same; a
    #: change of attachments alone is a change of the call's content, and travels. The test is
    #: ``operator.not_``, a C function: a Python one cost a dump of a call with two comments
    #: about 1 us more (measured: 5.6 against 4.9 us).
    attachments: list[Attachment] = Field(default_factory=list, exclude_if=operator.not_)
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

    @model_validator(mode="before")
    @classmethod
    def _derived_process(cls, data: Any) -> Any:
        # ``process`` is read-only: it follows the call type. A dump read back (or merged with
        # a changed call type) carries it; the call type decides.
        if isinstance(data, dict) and "process" in data:
            return {key: value for key, value in data.items() if key != "process"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Call:
        broken = call_rule_broken(
            self.call_type,
            self.status,
            self.waiting_on,
            self.waiting_process,
            self.created,
            self.updated,
        )
        if broken is not None:
            raise ValueError(broken)
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def process(self) -> UsmProcess | None:
        """The USM process handling the call: its type's (read-only; ``None`` unclassified)."""
        return self.call_type.process

    def content_fingerprint(self) -> dict[str, Any]:
        """The call's content without bookkeeping that changes on every read.

        Used for hashing: two reads of the same remote state give the same fingerprint, so an
        echo of the bridge's own write is recognised and no no-op write is made.
        """
        return self.model_dump(mode="json", exclude={"id", "updated"})


AgreementKind = Literal["written", "verbal", "implicit", "contract"]


def _default_matrix() -> dict[Impact, dict[Urgency, str]]:
    # The classic 3x3 cross table (ServiceNow's default lookup), with "nil" impact as planning:
    # an organisation replaces it in its config (USM lets each define its own classes).
    return {
        Impact.HIGH: {Urgency.HIGH: "critical", Urgency.MEDIUM: "high", Urgency.LOW: "moderate"},
        Impact.MEDIUM: {Urgency.HIGH: "high", Urgency.MEDIUM: "moderate", Urgency.LOW: "low"},
        Impact.LOW: {Urgency.HIGH: "moderate", Urgency.MEDIUM: "low", Urgency.LOW: "planning"},
        Impact.NIL: {Urgency.HIGH: "planning", Urgency.MEDIUM: "planning", Urgency.LOW: "planning"},
    }


class PriorityMatrix(BaseModel):
    """Priority as a cross table of impact x urgency; the classes are the organisation's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Priority classes from most to least pressing.
    classes: tuple[str, ...] = ("critical", "high", "moderate", "low", "planning")
    table: dict[Impact, dict[Urgency, str]] = Field(default_factory=_default_matrix)

    @model_validator(mode="after")
    def _complete(self) -> PriorityMatrix:
        for impact in Impact:
            row = self.table.get(impact)
            if row is None:
                raise ValueError(f"priority matrix has no row for impact {impact.value!r}")
            for urgency in Urgency:
                cls = row.get(urgency)
                if cls is None:
                    raise ValueError(
                        f"priority matrix has no cell for impact {impact.value!r}, "
                        f"urgency {urgency.value!r}"
                    )
                if cls not in self.classes:
                    raise ValueError(
                        f"priority matrix cell {impact.value}/{urgency.value} names {cls!r}, "
                        f"which is not one of the classes {list(self.classes)}"
                    )
        return self

    def derive(self, impact: Impact | None, urgency: Urgency | None) -> str | None:
        """The priority class for this impact and urgency; ``None`` if either is unknown."""
        if impact is None or urgency is None:
            return None
        return self.table[impact][urgency]

    def contradicts(
        self, impact: Impact | None, urgency: Urgency | None, priority: str | None
    ) -> bool:
        """True when a stated priority disagrees with what impact x urgency gives."""
        expected = self.derive(impact, urgency)
        return expected is not None and priority is not None and priority != expected


class Unit(_Model):
    """A service organisation: a link in the chain (a department, a team, a supplier)."""

    name: Name
    title: Annotated[str, StringConstraints(max_length=300)] | None = None
    #: Mail domains allowed to raise calls at this unit (used by the e-mail connector).
    allowed_domains: list[str] = Field(default_factory=list)
    #: The unit's own priority classes and matrix, for calls no agreement gives one for
    #: (USM leaves the classes to each organisation); else the config's ``[priority]``.
    priority: PriorityMatrix | None = None


class Service(_Model):
    """A service a unit provides under agreements."""

    id: Name
    provider: Name
    title: Annotated[str, StringConstraints(max_length=300)] | None = None


class ServiceTargets(_Model):
    """What an agreement promises for one priority class: times from registration."""

    #: Until the provider first acts on the call (leaves registered/classified).
    response: Term | None = None
    #: Until the call is fulfilled.
    fulfilment: Term | None = None


class Agreement(_Model):
    """The agreement between a customer and a provider (written, verbal or implicit)."""

    id: Name
    #: The customer party: a unit of this enterprise, or an outside party's name.
    customer: Name
    provider: Name
    kind: AgreementKind = "implicit"
    #: The provider's services it covers; empty: all of them.
    services: list[Name] = Field(default_factory=list)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    #: Priority classes and matrix of this agreement (outside suppliers' contracts differ);
    #: else the provider unit's, else the config's ``[priority]``.
    priority: PriorityMatrix | None = None
    #: Target times per priority class (a class of the matrix that applies).
    targets: dict[str, ServiceTargets] = Field(default_factory=dict)
    #: Whether a fulfilled call the customer does not object to counts as confirmed, and after
    #: how long (``"3d"``); ``None``: only an explicit confirmation counts.
    implicit_confirmation: Term | None = None


def utcnow() -> datetime:
    """Now, time-zone aware (naive datetimes are refused by the model)."""
    return datetime.now(UTC)
