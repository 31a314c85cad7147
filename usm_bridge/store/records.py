"""What the store hands back: frozen pydantic records, never raw database rows.

Every timestamp is time-zone aware UTC. Records are snapshots taken inside a unit of work; they
do not change when the database does.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, JsonValue

from usm_bridge.model import Call

__all__ = [
    "AuditEvent",
    "ChainLink",
    "CommentLink",
    "CursorRecord",
    "DeadLetter",
    "DeadLetterAdded",
    "DeadLetterStage",
    "DeadLetterStatus",
    "Enqueued",
    "Identity",
    "InstanceState",
    "OutboxItem",
    "OutboxOperation",
    "OutboxStatus",
    "StoredCall",
    "UpsertResult",
]


class OutboxOperation(StrEnum):
    """The remote write an outbox item asks for."""

    CREATE = "create"
    UPDATE = "update"
    COMMENT = "comment"


class OutboxStatus(StrEnum):
    """``pending`` until pushed (``done``) or given up on (``dead``, with a dead letter)."""

    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"


class DeadLetterStage(StrEnum):
    """Where in the cycle a record or write failed."""

    MAP = "map"
    STORE = "store"
    PUSH = "push"


class DeadLetterStatus(StrEnum):
    """``open`` until retried successfully (``resolved``) or given up on by a person
    (``dismissed``, audited with who and why). Only open letters count in the backlog."""

    OPEN = "open"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StoredCall(_Record):
    """A canonical call as stored, with its bookkeeping."""

    call: Call
    #: Starts at 1; goes up by one on every real change of content, never on a re-read.
    version: int
    #: See :func:`usm_bridge.store.content_hash`.
    content_hash: str
    created_at: datetime
    updated_at: datetime
    #: When the record was found deleted in its tool; the canonical history is kept.
    vanished_at: datetime | None = None

    @classmethod
    def from_row(cls, call: Call, row: Mapping[Any, Any]) -> StoredCall:
        """``call`` with the bookkeeping of its row of the ``calls`` table (the store and the
        conformance report read that row each their own way, then build the same record)."""
        return cls(
            call=call,
            version=row["version"],
            content_hash=row["content_hash"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            vanished_at=row["vanished_at"],
        )

    @property
    def id(self) -> str:
        return self.call.id

    @property
    def vanished(self) -> bool:
        return self.vanished_at is not None


class UpsertResult(_Record):
    """The outcome of :meth:`usm_bridge.store.Transaction.upsert_call`."""

    call_id: str
    #: True when the call was not stored before.
    created: bool
    #: True when the content differs from what was stored (always true for a new call).
    changed: bool
    old_version: int | None
    new_version: int
    old_hash: str | None
    content_hash: str


class Identity(_Record):
    """A canonical call's record in one connector instance."""

    id: int
    call_id: str
    instance: str
    remote_id: str
    remote_key: str | None
    url: str | None
    #: The marker the bridge stored on the remote record when it created it, if it did.
    correlation: str | None
    #: The content hash of the call as last pushed to this remote (no-op writes are skipped).
    pushed_hash: str | None
    pushed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ChainLink(_Record):
    """An upstream call and a supplier call raised on its behalf through a route."""

    upstream_call_id: str
    supplier_call_id: str
    route: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ChainLink:
        """The link of a ``chain_links`` row; the row's own ``id`` is the table's, not the
        link's."""
        return cls.model_validate({key: value for key, value in row.items() if key != "id"})


class CursorRecord(_Record):
    instance: str
    cursor: str
    updated_at: datetime


class OutboxItem(_Record):
    """A remote write waiting to be pushed, written in the transaction that decided it."""

    id: int
    target_instance: str
    call_id: str
    operation: OutboxOperation
    payload: JsonValue
    idempotency_key: str
    status: OutboxStatus
    #: How many times the item was claimed for pushing.
    attempts: int
    #: When the item is next due; a claim moves it forward by the lease.
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    #: Who claimed the item and has not settled it yet (``None``: not claimed).
    claimed_by: str | None = None


class Enqueued(_Record):
    """The outcome of :meth:`usm_bridge.store.Transaction.enqueue`."""

    item: OutboxItem
    #: False when an item with the same idempotency key already existed (it is returned as is).
    created: bool


class DeadLetter(_Record):
    """A record or write that could not go through, kept raw with the reason."""

    id: int
    instance: str
    stage: DeadLetterStage
    #: Exactly what was received or was to be sent.
    payload: JsonValue
    reason: str
    attempts: int
    status: DeadLetterStatus
    call_id: str | None
    outbox_id: int | None
    resolution: str | None
    #: When it first failed.
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    #: What failed: the remote record's id (``map``, ``store``) or ``outbox:<id>`` (``push``);
    #: one open letter exists per (instance, subject, stage). ``None``: never merged.
    subject: str | None = None
    #: When it last failed (a repeat failure updates the open letter instead of adding one).
    last_seen: datetime


class DeadLetterAdded(_Record):
    """What :meth:`usm_bridge.store.Transaction.record_dead_letter` did."""

    letter: DeadLetter
    #: True when the letter was opened now; false when an open one was seen again.
    new: bool


class AuditEvent(_Record):
    """One entry of the append-only audit log."""

    id: int
    at: datetime
    call_id: str | None
    instance: str | None
    kind: str
    actor: str
    before: JsonValue
    after: JsonValue
    detail: JsonValue


class InstanceState(_Record):
    """How the sync of one connector instance last went (``usm-bridge status``)."""

    instance: str
    last_started: datetime
    last_finished: datetime
    #: When a cycle last ended without error (``None``: never).
    last_success: datetime | None
    #: The error of the last failed cycle; kept after a success so a person can still see it.
    last_error: str | None
    last_error_at: datetime | None
    #: Failed cycles since the last success (0 when the last cycle succeeded).
    consecutive_failures: int
    runs: int
    #: The last cycle's counters (read, stored, unchanged, echoes, routed, pushed, ...).
    last_counters: dict[str, int]
    #: When the last census of the instance's remote ids ran (``None``: never); the daemon
    #: schedules the next one from it.
    last_census: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.consecutive_failures == 0


class CommentLink(_Record):
    """A remote comment that is the bridge's copy of a canonical comment of a linked call."""

    id: int
    #: The call whose remote record holds the copy, and that record's instance.
    call_id: str
    instance: str
    #: The bridge's id for the copy (the correlation sent with it).
    comment_id: str
    #: The canonical id of the comment that was copied.
    source_comment_id: str
    #: The tool's id for the copy, once the tool accepted it.
    remote_comment_id: str | None
    created_at: datetime
    updated_at: datetime
