"""The contract every tool adapter fulfils.

A connector declares what it is with class attributes (``kind``, ``settings_model``) and
implements a handful of methods. The sync engine relies only on what is written here, and the
standard suite in :mod:`usm_bridge.testing` checks each promise.

Reading is incremental and resumable: :meth:`Connector.read_changes` yields raw records and,
between them, :class:`Checkpoint` objects. A checkpoint promises that every change up to it has
been yielded; the engine stores its cursor only after what came before it is durably stored,
and passes it back to resume.

Writing is idempotent: :meth:`Connector.create` stores a correlation marker on the remote
record, and :meth:`Connector.find_by_correlation` finds it again, so that a create whose
response was lost is never repeated.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = [
    "CheckResult",
    "Checkpoint",
    "CommentDraft",
    "Connector",
    "ConnectorSettings",
    "RawRecord",
    "RemoteDraft",
    "RemoteRef",
    "Vocabulary",
    "VocabularyValue",
]


class ConnectorSettings(BaseModel):
    """Base for a connector's settings; unknown keys are refused so typos show."""

    model_config = ConfigDict(extra="forbid")


class RawRecord(BaseModel):
    """One record as the tool holds it, before mapping: the tool's JSON plus what we index by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    remote_id: str
    remote_key: str | None = None
    #: When the tool last changed the record (used for de-duplication and lag measurement).
    updated: datetime | None = None
    url: str | None = None
    #: The record in the tool's own shape, comments included where the tool keeps them apart.
    data: dict[str, JsonValue]


class Checkpoint(BaseModel):
    """Everything yielded before this is covered by ``cursor`` (opaque to all but the connector)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cursor: str


class RemoteRef(BaseModel):
    """Where a record the bridge created or found lives in the tool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    remote_id: str
    remote_key: str | None = None
    url: str | None = None


class RemoteDraft(BaseModel):
    """What to write into the tool, in the tool's own field names (the outbound mapping's result).

    ``fields`` are plain fields; ``status`` is the tool's status value, set apart because many
    tools change status through a workflow (Jira transitions), not a field write;
    ``status_fields`` are fields a status change requires (resolution, close code).
    """

    model_config = ConfigDict(extra="forbid")

    fields: dict[str, JsonValue] = Field(default_factory=dict)
    status: str | None = None
    status_fields: dict[str, JsonValue] = Field(default_factory=dict)


class CommentDraft(BaseModel):
    """A comment to add to a remote record."""

    model_config = ConfigDict(extra="forbid")

    body: str
    public: bool = True
    #: The bridge's id for the comment, so a retried add can be recognised.
    correlation: str | None = None
    author: str | None = None


class VocabularyValue(BaseModel):
    """One value of the tool's vocabulary (a status, a priority, an issue type ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str
    label: str | None = None
    #: Where the value applies (a project, a table), if the tool scopes it.
    scope: str | None = None


class Vocabulary(BaseModel):
    """What values the tool knows: the base of the mapping conformance report."""

    model_config = ConfigDict(extra="forbid")

    statuses: list[VocabularyValue] = Field(default_factory=list)
    priorities: list[VocabularyValue] = Field(default_factory=list)
    types: list[VocabularyValue] = Field(default_factory=list)
    fields: list[VocabularyValue] = Field(default_factory=list)
    #: Other value lists by name (resolutions, hold reasons, close codes ...).
    other: dict[str, list[VocabularyValue]] = Field(default_factory=dict)


class CheckResult(BaseModel):
    """The outcome of :meth:`Connector.check`: can the bridge reach and use the tool?"""

    model_config = ConfigDict(extra="forbid")

    ok: bool
    detail: str = ""
    #: Facts a person wants to see (server version, account, time zone); never secrets.
    facts: dict[str, str] = Field(default_factory=dict)


class Connector(ABC):
    """Base class of every connector.

    Subclasses set ``kind`` (the name used in config files) and ``settings_model`` (a
    :class:`ConnectorSettings` subclass), and implement the abstract methods. Remote failures
    are raised as :class:`~usm_bridge.errors.RetriableRemoteError` (429, 5xx, timeouts) after the
    connector's own bounded retries, or :class:`~usm_bridge.errors.PermanentRemoteError` (other
    4xx) carrying the remote's message.
    """

    kind: ClassVar[str]
    settings_model: ClassVar[type[ConnectorSettings]] = ConnectorSettings
    #: One line for ``usm-bridge connectors``.
    description: ClassVar[str] = ""

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        self.name = name
        self.settings = settings

    @classmethod
    def from_config(cls, name: str, raw_settings: dict[str, Any]) -> Connector:
        """Validate raw settings (from a config file) and build the connector."""
        return cls(name, cls.settings_model.model_validate(raw_settings))

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections; called when the engine is done with the connector."""

    @abstractmethod
    def check(self) -> CheckResult:
        """Reach the tool with the configured credentials and say whether it can be used."""

    @abstractmethod
    def discover(self) -> Vocabulary:
        """The tool's vocabulary: statuses, priorities, types and fields in scope."""

    @abstractmethod
    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        """Yield every record changed since ``cursor`` (all records when ``None``).

        Records come in the order the tool changed them; a :class:`Checkpoint` follows each
        batch. The last item yielded is always a checkpoint, even when nothing changed.
        Reading again from the same cursor may repeat records (overlap is fine, the engine
        de-duplicates) but must never skip one.
        """

    @abstractmethod
    def find_by_correlation(self, correlation: str) -> RemoteRef | None:
        """The record this bridge created with ``correlation``, if the tool holds one."""

    @abstractmethod
    def create(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        """Create a record carrying the correlation marker; idempotent by ``correlation``.

        Creating twice with the same correlation returns the first record and creates none.
        """

    @abstractmethod
    def update(self, remote_id: str, draft: RemoteDraft) -> None:
        """Write the draft's fields (and status) into an existing record."""

    @abstractmethod
    def add_comment(self, remote_id: str, comment: CommentDraft) -> str:
        """Add a comment; returns the tool's id for it."""

    def remote_ids(self) -> Iterator[str] | None:
        """Every record id the tool holds in the connector's scope, for the census; optional.

        The census (``SyncEngine.census``) marks the stored calls whose record is missing from
        this listing as vanished (deleted, or no longer visible to the bridge's account). It
        only does so when the listing completes: return ``None`` (the default) when the tool
        cannot list its ids, and raise a :class:`~usm_bridge.errors.RemoteError` rather than
        end the iteration early when a request fails, or records would be wrongly marked.
        """
        return None
