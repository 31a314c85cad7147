"""The audit log: the append-only record of what the bridge changed, and why.

Events are appended one at a time (:meth:`AuditLog.append_audit`, ``_audit``) or, when a unit
of work stores many calls, gathered as rows (:func:`audit_row`) and written in one statement.
The database keeps the table append-only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import JsonValue

from usm_bridge.model import utcnow
from usm_bridge.store import schema as t
from usm_bridge.store.records import AuditEvent
from usm_bridge.store.unit_of_work import UnitOfWork, guarded

__all__ = ["AuditLog", "audit_row"]

_log = t.audit_log
_INSERT_AUDIT = _log.insert()
_SELECT_EVENT = sa.select(_log).where(_log.c.id == sa.bindparam("b_id"))
#: Every event in the order appended: :meth:`AuditLog.list_audit` adds its filters.
_LIST_EVENTS = sa.select(_log).order_by(_log.c.id)


class AuditLog(UnitOfWork):
    """A unit of work's audit log."""

    @guarded
    def append_audit(
        self,
        kind: str,
        *,
        call_id: str | None = None,
        instance: str | None = None,
        actor: str = "bridge",
        before: JsonValue = None,
        after: JsonValue = None,
        detail: JsonValue = None,
    ) -> AuditEvent:
        """Append an event to the audit log (which the database keeps append-only)."""
        event_id = self._audit(
            kind,
            call_id=call_id,
            instance=instance,
            actor=actor,
            before=before,
            after=after,
            detail=detail,
            now=utcnow(),
        )
        row = self._conn.execute(_SELECT_EVENT, {"b_id": event_id}).mappings().one()
        return AuditEvent.model_validate(dict(row))

    @guarded
    def list_audit(
        self,
        *,
        call_id: str | None = None,
        instance: str | None = None,
        kind: str | None = None,
        after_id: int | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        """Audit events in the order they were appended; ``after_id`` pages through them."""
        query = _LIST_EVENTS
        if call_id is not None:
            query = query.where(_log.c.call_id == call_id)
        if instance is not None:
            query = query.where(_log.c.instance == instance)
        if kind is not None:
            query = query.where(_log.c.kind == kind)
        if after_id is not None:
            query = query.where(_log.c.id > after_id)
        if limit is not None:
            query = query.limit(limit)
        rows = self._conn.execute(query).mappings()
        return [AuditEvent.model_validate(dict(row)) for row in rows]

    def _audit(
        self,
        kind: str,
        *,
        call_id: str | None = None,
        instance: str | None = None,
        actor: str = "bridge",
        before: JsonValue = None,
        after: JsonValue = None,
        detail: JsonValue = None,
        now: datetime,
    ) -> int:
        result = self._conn.execute(
            _INSERT_AUDIT,
            audit_row(
                kind,
                call_id=call_id,
                instance=instance,
                actor=actor,
                before=before,
                after=after,
                detail=detail,
                now=now,
            ),
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def _write_audits(self, rows: list[dict[str, Any]]) -> None:
        """Append the events, in order, in one statement; the list is emptied."""
        if rows:
            self._conn.execute(_INSERT_AUDIT, rows[0] if len(rows) == 1 else list(rows))
            rows.clear()


def audit_row(
    kind: str,
    *,
    call_id: str | None = None,
    instance: str | None = None,
    actor: str = "bridge",
    before: JsonValue = None,
    after: JsonValue = None,
    detail: JsonValue = None,
    now: datetime,
) -> dict[str, Any]:
    """The parameters of one audit_log row."""
    return {
        "at": now,
        "call_id": call_id,
        "instance": instance,
        "kind": kind,
        "actor": actor,
        "before": before,
        "after": after,
        "detail": detail,
    }
