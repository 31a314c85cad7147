"""Writes waiting in the outbox, each with why it waits: nothing waits silently.

A pending outbox item that failed keeps the tool's last answer (``last_error``) until it goes
through or becomes a dead letter after its attempts. ``usm-bridge status`` and
``usm-bridge dead-letters list --status waiting`` show these items with the record they are
for, so a write that keeps failing is visible long before it is given up on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..store import Transaction
from ..store import schema as t

__all__ = ["WaitingItem", "list_waiting"]


@dataclass(frozen=True)
class WaitingItem:
    """One pending outbox item, as ``status`` and ``dead-letters list`` show it."""

    id: int
    target: str
    operation: str
    call_id: str
    #: The record in the target tool (its key where it has one); ``None`` before a create.
    record: str | None
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    since: datetime

    @property
    def why(self) -> str:
        """The last error, or what is known when there is none yet."""
        if self.last_error:
            return self.last_error
        if self.attempts == 0:
            return "not tried yet"
        return "no answer recorded (the push was interrupted)"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target,
            "operation": self.operation,
            "call_id": self.call_id,
            "record": self.record,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "last_error": self.last_error,
            "since": self.since.isoformat(),
        }


def list_waiting(
    tx: Transaction, *, instance: str | None = None, limit: int | None = None
) -> list[WaitingItem]:
    """Pending outbox items (for ``instance``'s tool, or all), oldest first, with their record.

    One query: the record comes from the call's identity in the target instance, joined in.
    """
    box, ids = t.outbox, t.identities
    joined = box.outerjoin(
        ids, sa.and_(ids.c.call_id == box.c.call_id, ids.c.instance == box.c.target_instance)
    )
    query = (
        sa.select(
            box.c.id,
            box.c.target_instance,
            box.c.operation,
            box.c.call_id,
            box.c.attempts,
            box.c.next_attempt_at,
            box.c.last_error,
            box.c.created_at,
            sa.func.coalesce(ids.c.remote_key, ids.c.remote_id).label("record"),
        )
        .select_from(joined)
        # As the partial index of pending items says it (not a bound parameter), to be used.
        .where(t.OUTBOX_PENDING)
        .order_by(box.c.id)
    )
    if instance is not None:
        query = query.where(box.c.target_instance == instance)
    if limit is not None:
        query = query.limit(limit)
    return [
        WaitingItem(
            id=int(row.id),
            target=str(row.target_instance),
            operation=str(row.operation),
            call_id=str(row.call_id),
            record=None if row.record is None else str(row.record),
            attempts=int(row.attempts),
            next_attempt_at=row.next_attempt_at,
            last_error=row.last_error,
            since=row.created_at,
        )
        for row in tx.connection.execute(query)
    ]
