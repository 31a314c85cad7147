"""The mapping file format as pydantic models: what a mapping file may say, and nothing else.

Every model forbids unknown keys, so a typo in a mapping is an error with a line number, not a
field silently left unmapped. The reference of the format is :mod:`usm_bridge.mapping`.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    model_validator,
)

from ..attachments.policy import AttachmentPolicy
from ..model import (
    CallType,
    ConfirmationKind,
    ForkRole,
    Impact,
    Status,
    Urgency,
    UsmProcess,
    WaitingOn,
)

__all__ = [
    "FORMAT_KEYS",
    "AttributesSection",
    "ClassifySection",
    "CommentsSpec",
    "Condition",
    "ConfirmationRule",
    "ConfirmationSpec",
    "FieldSpec",
    "FieldsSection",
    "ForkSpec",
    "IssueLinkType",
    "MappingFile",
    "PeopleSection",
    "PersonSpec",
    "RawScalar",
    "Rule",
    "StatusField",
    "StatusRule",
    "TransformRef",
    "canonical_text",
    "raw_text",
    "split_path",
]

#: A raw value as a table key or a value to write: what JSON scalars a tool holds.
RawScalar = str | bool | int | float

V = TypeVar("V")

_SEGMENT = re.compile(r"^[^.\s]+$")


def split_path(path: str) -> tuple[str, ...]:
    """The segments of a dotted path (``$`` alone means the whole record: no segments)."""
    return () if path == "$" else tuple(path.split("."))


def _check_path(path: str) -> str:
    if path == "$":
        return path
    if len(path) > 500:
        raise ValueError("path longer than 500 characters")
    parts = path.split(".")
    if not all(_SEGMENT.match(part) for part in parts):
        raise ValueError(
            f"{path!r} is not a dotted path: segments separated by single dots, no blanks "
            "(e.g. fields.status.name, comments.0.body, or $ for the whole record)"
        )
    return path


PathStr = Annotated[str, AfterValidator(_check_path)]


def raw_text(value: Any) -> str:
    """How a raw value is compared with table keys: ``"1"`` and ``1`` match, ``true`` too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def canonical_text(value: Any) -> str:
    """How a canonical value is compared when looking for the raw value to write."""
    if hasattr(value, "value") and isinstance(value.value, str):  # enums
        return str(value.value)
    return raw_text(value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TransformRef(_Strict):
    """One named transform and the keyword arguments the file gives it."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    args: dict[str, JsonValue] = Field(default_factory=dict)


def _transform_chain(value: Any) -> Any:
    # Accept the short forms: `transform: strip`, `transform: {name: x, args: {}}`, or a list
    # of either, applied in order.
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [{"name": item} if isinstance(item, str) else item for item in items]


TransformChain = Annotated[list[TransformRef], BeforeValidator(_transform_chain)]


def _status_value(value: str) -> str:
    head, _, tail = value.partition(":")
    try:
        status = Status(head)
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise ValueError(
            f"{value!r} is not a status: use one of {allowed}, or waiting:customer, "
            "waiting:supplier, waiting:secondary_process"
        ) from None
    if tail:
        if status is not Status.WAITING:
            raise ValueError(f"only waiting takes a ':whom' suffix, not {head!r}")
        try:
            WaitingOn(tail)
        except ValueError:
            raise ValueError(
                f"{tail!r} is not whom a call waits on (customer, supplier, secondary_process)"
            ) from None
    return value


#: A canonical status, or ``waiting:<whom>`` where one tool status says both.
StatusValue = Annotated[str, AfterValidator(_status_value)]

_NOT_FOUND: Any = object()


def _text_keys(value: Any) -> Any:
    # YAML reads `true:` or `1:` as a boolean or a number; canonical keys compare as text.
    if isinstance(value, dict):
        return {raw_text(key): item for key, item in value.items()}
    return value


class FieldSpec(_Strict, Generic[V]):
    """How one canonical value is read from, and written to, one raw field."""

    #: Dotted path into the record (``fields.status.name``; digits index lists; ``$`` = all).
    path: PathStr
    #: Paths read in order when ``path`` holds no value, through the same transforms and
    #: table: a tool with two fields for one thing (ServiceNow's service offering, else its
    #: business service). Outbound writes ``path`` only.
    fallback: list[PathStr] = Field(default_factory=list)
    #: Applied in order to the raw value before the table (inbound).
    transform: TransformChain = Field(default_factory=list)
    #: Applied in order to the raw value chosen by the table (outbound).
    transform_out: TransformChain = Field(default_factory=list)
    #: Raw value -> canonical value. Without a table the (transformed) value is taken as is.
    values: dict[RawScalar, V] | None = None
    #: Canonical value -> the raw value to write, where the table maps several onto one (or a
    #: canonical value the tool lacks onto the closest raw one).
    write: Annotated[dict[str, RawScalar], BeforeValidator(_text_keys)] = Field(
        default_factory=dict
    )
    #: The canonical value when the raw one is missing or empty.
    default: V | None = None
    #: A raw value not in the table: ``error`` dead-letters the record, ``default`` uses default.
    on_unknown: Literal["error", "default"] = "error"
    #: A missing value dead-letters the record.
    required: bool = False
    #: Never written back (the tool computes it, or the bridge must not change it).
    read_only: bool = False

    _inbound: dict[str, V] = PrivateAttr(default_factory=dict)
    _outbound: dict[str, RawScalar] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        inbound: dict[str, V] = {}
        outbound: dict[str, RawScalar] = {}
        for raw, canonical in (self.values or {}).items():
            inbound.setdefault(raw_text(raw), canonical)
            outbound.setdefault(canonical_text(canonical), raw)
        for canonical_key, raw in self.write.items():
            outbound[canonical_key] = raw
        self._inbound = inbound
        self._outbound = outbound

    def lookup(self, raw: Any) -> Any:
        """The canonical value for a raw one, or ``_NOT_FOUND``."""
        return self._inbound.get(raw_text(raw), _NOT_FOUND)

    def raw_for(self, canonical: Any) -> Any:
        """The raw value to write for a canonical one, or ``_NOT_FOUND``."""
        return self._outbound.get(canonical_text(canonical), _NOT_FOUND)

    def inbound_table(self) -> dict[str, V]:
        """The ``values`` table keyed by raw text, as :meth:`lookup` reads it (a copy)."""
        return dict(self._inbound)

    def outbound_table(self) -> dict[str, RawScalar]:
        """Canonical text -> raw value, as :meth:`raw_for` reads it (a copy)."""
        return dict(self._outbound)

    def ambiguities(self) -> dict[str, list[RawScalar]]:
        """Canonical values several raw values map onto, without a ``write`` choice."""
        groups: dict[str, list[RawScalar]] = {}
        for raw, canonical in (self.values or {}).items():
            groups.setdefault(canonical_text(canonical), []).append(raw)
        return {c: raws for c, raws in groups.items() if len(raws) > 1 and c not in self.write}


NOT_FOUND = _NOT_FOUND


class PersonSpec(_Strict):
    """Where a person's name, e-mail address and tool id are."""

    name: FieldSpec[str] | None = None
    email: FieldSpec[str] | None = None
    ref: FieldSpec[str] | None = None

    @model_validator(mode="after")
    def _something(self) -> PersonSpec:
        if self.name is None and self.email is None and self.ref is None:
            raise ValueError("a person needs at least one of name, email, ref")
        return self


class PeopleSection(_Strict):
    requester: PersonSpec | None = None
    customer: PersonSpec | None = None
    assignee: PersonSpec | None = None


class CommentsSpec(_Strict):
    """Where the comments are (a list) and how each item maps; comments are read only here.

    Comments are written through the connector's ``add_comment``, not through the draft.
    """

    path: PathStr
    body: FieldSpec[str]
    created: FieldSpec[str]
    id: FieldSpec[str] | None = None
    author: PersonSpec | None = None
    #: True for comments the customer sees; default true.
    public: FieldSpec[bool] | None = None


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return pattern


class Condition(_Strict):
    """A test on one raw field; exactly one of equals, in, matches, exists."""

    path: PathStr
    equals: RawScalar | None = None
    in_: list[RawScalar] | None = Field(default=None, alias="in")
    matches: Annotated[str, AfterValidator(_regex)] | None = None
    exists: bool | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        given = [
            name
            for name, value in (
                ("equals", self.equals),
                ("in", self.in_),
                ("matches", self.matches),
                ("exists", self.exists),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "a condition needs exactly one of equals, in, matches, exists "
                f"(got {given or 'none'})"
            )
        return self


def _conditions(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


class Rule(_Strict):
    """When every condition holds, the call is of this type. The first matching rule wins."""

    type: CallType
    when: Annotated[list[Condition], BeforeValidator(_conditions), Field(min_length=1)]


class StatusRule(_Strict):
    """A canonical status that one tool status means only together with other fields.

    Read: when the tool status is ``tool`` and every ``when`` condition holds, the status is
    ``status`` (rules are tried in order before the ``values`` table). Write: ``status`` goes
    to ``tool``, with the status fields the file gives for ``status``, unless ``write`` names
    another tool status for it. Jira's *Done* with resolution *Won't Do* is ``cancelled``.
    """

    status: StatusValue
    tool: RawScalar
    when: Annotated[list[Condition], BeforeValidator(_conditions), Field(min_length=1)]


class StatusField(FieldSpec[StatusValue]):
    """The status field; a table value may be ``waiting:customer`` to set whom it waits on."""

    #: Fields a move into a status writes with it (ServiceNow resolve: close_code, close_notes;
    #: Jira: the resolution), by the tool's own field name: canonical status -> {field: value}.
    status_fields: dict[StatusValue, dict[str, JsonValue]] = Field(default_factory=dict)
    #: Statuses that span fields, tried before ``values`` (first match wins).
    rules: list[StatusRule] = Field(default_factory=list)
    #: Where a read finds each tool field that ``status_fields`` writes and ``rules`` test:
    #: tool field name -> dotted path in the record (Jira: ``resolution: fields.resolution.name``).
    #: Every path a rule tests must be one of these, so that a status written can be read back.
    field_paths: dict[str, PathStr] = Field(default_factory=dict)
    #: States the tool's workflow skips: canonical status -> the USM states, in order, that a
    #: call reaching it has passed through although the tool has no status for them.
    #: ServiceNow closes a delivered requested item at once: ``{closed: [fulfilled]}``. A move
    #: into the status is then legal if it is legal through those states; the loader refuses
    #: a declaration that names a state the tool has a status for, or a path USM forbids
    #: (:mod:`usm_bridge.mapping.passes_through`).
    passes_through: dict[Status, list[Status]] = Field(default_factory=dict)

    def rule_for(self, status: str) -> StatusRule | None:
        """The first rule that reads as ``status`` (what a write of ``status`` goes through)."""
        return next((rule for rule in self.rules if rule.status == status), None)


class FieldsSection(_Strict):
    """The canonical scalar fields of a call, each mapped from one raw field."""

    title: FieldSpec[str]
    description: FieldSpec[str] | None = None
    status: StatusField | None = None
    #: Read only while the status is waiting; its ``default`` applies when the tool says none.
    waiting_on: FieldSpec[WaitingOn] | None = None
    #: The process a ``secondary_process`` wait waits on; read only while the call waits on
    #: one, and never written (the tool's reason is written through ``waiting_on``).
    waiting_process: FieldSpec[UsmProcess] | None = None
    impact: FieldSpec[Impact] | None = None
    urgency: FieldSpec[Urgency] | None = None
    #: Without it, priority is derived from impact x urgency through the priority matrix.
    priority: FieldSpec[str] | None = None
    service: FieldSpec[str] | None = None
    agreement: FieldSpec[str] | None = None
    created: FieldSpec[str] | None = None
    updated: FieldSpec[str] | None = None
    fulfilled: FieldSpec[str] | None = None
    confirmed: FieldSpec[str] | None = None
    closed: FieldSpec[str] | None = None


class ClassifySection(_Strict):
    """How a record's call type is decided, and what to write so the tool shows a type."""

    rules: list[Rule] = Field(default_factory=list)
    #: The type when no rule matches (unclassified unless said otherwise).
    default: CallType = CallType.UNCLASSIFIED
    #: Per call type, raw fields to write (dotted path -> value), e.g. a Jira issue type.
    write: dict[CallType, dict[PathStr, RawScalar]] = Field(default_factory=dict)


class ConfirmationRule(_Strict):
    """When it holds, the call's confirmation is of ``kind`` (the first rule that holds wins).

    It holds when every ``when`` condition holds on the record (matched like ``classify``
    rules) and the person who closed (the section's ``by``) passes the ``by_*`` tests given.
    """

    kind: ConfirmationKind
    #: Words for the report: how the tool shows this confirmation (evidence, not logic).
    how: Annotated[str, Field(min_length=1, max_length=300)]
    when: Annotated[list[Condition], BeforeValidator(_conditions)] = Field(default_factory=list)
    #: ``true``: the closer is the call's requester (same ref, else e-mail, else name);
    #: ``false``: the closer is known and is someone else.
    by_requester: bool | None = None
    #: The closer's ref, e-mail or name matches this regular expression (an automation user).
    by_matches: Annotated[str, AfterValidator(_regex)] | None = None


class ConfirmationSpec(_Strict):
    """How a tool shows that the customer accepted a fulfilled call (read only).

    Read only on calls in one of ``statuses``; no rule holding means no confirmation.
    """

    statuses: list[Status] = Field(default_factory=lambda: [Status.CONFIRMED, Status.CLOSED])
    #: Who made the change that closed (or confirmed) the call, as the tool records it.
    by: PersonSpec | None = None
    #: When; without it the call's ``closed`` time, else its ``updated`` time.
    at: FieldSpec[str] | None = None
    rules: Annotated[list[ConfirmationRule], Field(min_length=1)]


_NAMESPACE = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")


def _namespace(value: str) -> str:
    if not _NAMESPACE.match(value):
        raise ValueError("a namespace is a lower-case name (letters, digits, _ . -)")
    return value


class AttributesSection(_Strict):
    """Tool fields kept on the call but not modelled, under one namespace."""

    #: Defaults to the mapping's tool.
    namespace: Annotated[str, AfterValidator(_namespace)] | None = None
    fields: dict[str, FieldSpec[JsonValue]] = Field(default_factory=dict)


class IssueLinkType(_Strict):
    """Which of a record's issue links (Jira ``fields.issuelinks``) are forks: those of link
    type ``type`` (its name) seen from ``direction`` (``inward``: the link's ``inwardIssue`` is
    the other record, so this one "is caused by" it; ``outward``: this one "causes" it)."""

    type: Annotated[str, Field(min_length=1, max_length=200)]
    direction: Literal["inward", "outward"]


class ForkSpec(_Strict):
    """One of the tool's own links that is a fork between processes inside the unit.

    Without ``link`` the value at ``path`` (after ``transform``) is the other record's id (a
    ServiceNow reference field). With ``link`` the value is a list of issue links and each one
    of that type and direction is a fork to the linked issue (its key, else its id).
    """

    path: PathStr
    transform: TransformChain = Field(default_factory=list)
    #: Which end the other record is: ``secondary`` works for this call, ``primary`` for whom
    #: this call works.
    role: ForkRole
    #: The other record's process, where the link says it (an ``rfc`` field: change).
    process: UsmProcess | None = None
    #: The tool's name for the link, kept as evidence (default: the path, or for issue links
    #: ``<tool>:<the link's phrase>``).
    via: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    link: IssueLinkType | None = None


class MappingFile(_Strict):
    """A whole mapping file."""

    version: Literal[1]
    #: Defaults to the file name without ``.yaml``.
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    #: The connector kind the mapping is for (``jira``, ``servicenow``, ``email``).
    tool: Annotated[str, Field(min_length=1, max_length=100)]
    description: str = ""
    #: Raw values that mean "no value" (besides null and a missing key).
    empty_values: list[RawScalar] = Field(default_factory=lambda: list[RawScalar]([""]))
    fields: FieldsSection
    people: PeopleSection = Field(default_factory=PeopleSection)
    comments: CommentsSpec | None = None
    classify: ClassifySection = Field(default_factory=ClassifySection)
    attributes: AttributesSection | None = None
    confirmation: ConfirmationSpec | None = None
    #: The tool's links that are forks between processes (USM workflow patterns W3, W4 ...).
    forks: list[ForkSpec] = Field(default_factory=list)
    #: Which files travel to and from the instance (:mod:`usm_bridge.attachments.policy`):
    #: without the section, all but executables and scripts, up to 25 MiB.
    attachments: AttachmentPolicy = Field(default_factory=AttachmentPolicy)


def _vocabulary() -> frozenset[str]:
    words: set[str] = set()
    for model in (
        MappingFile,
        FieldsSection,
        FieldSpec,
        StatusField,
        StatusRule,
        PersonSpec,
        PeopleSection,
        CommentsSpec,
        Condition,
        Rule,
        ClassifySection,
        AttributesSection,
        TransformRef,
        ConfirmationRule,
        ConfirmationSpec,
        ForkSpec,
        IssueLinkType,
        AttachmentPolicy,
    ):
        for name, info in model.model_fields.items():
            words.add(info.alias or name)
    return frozenset(words)


#: Every key the format knows (for did-you-mean suggestions).
FORMAT_KEYS = _vocabulary()
