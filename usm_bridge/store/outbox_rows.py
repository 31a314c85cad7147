"""The outbox: the remote writes a unit of work asked for, claimed, pushed and settled.

PostgreSQL claims items with ``FOR UPDATE SKIP LOCKED`` so several workers can drain one
outbox; a write given up on becomes a ``push`` dead letter.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import JsonValue
from sqlalchemy.engine import RowMapping

from usm_bridge.errors import StoreError
from usm_bridge.model import utcnow
from usm_bridge.store import schema as t
from usm_bridge.store.dead_letter_rows import DeadLetterRows
from usm_bridge.store.records import (
    DeadLetter,
    DeadLetterStage,
    Enqueued,
    OutboxItem,
    OutboxOperation,
    OutboxStatus,
)
from usm_bridge.store.unit_of_work import aware, guarded, per_back_end

__all__ = ["DEFAULT_LEASE", "OutboxRows"]

#: How long a claimed outbox item stays invisible to other workers before it is due again.
DEFAULT_LEASE = timedelta(minutes=5)

_box = t.outbox
_PENDING = OutboxStatus.PENDING.value
_b_id: sa.BindParameter[int] = sa.bindparam("b_id")
_b_ids: sa.BindParameter[list[int]] = sa.bindparam("b_ids", expanding=True)
_b_instance: sa.BindParameter[str] = sa.bindparam("b_instance")

#: Insert unless the idempotency key is taken; RETURNING says which (rowcount is not reliable
#: for INSERT .. ON CONFLICT on every driver).
_ENQUEUE = per_back_end(
    lambda insert: (
        insert(_box)
        .on_conflict_do_nothing(index_elements=[_box.c.idempotency_key])
        .returning(_box.c.id)
    )
)
_SELECT_BY_KEY = sa.select(_box).where(_box.c.idempotency_key == sa.bindparam("b_key"))
#: The due pending items, oldest first: :meth:`OutboxRows.claim_outbox` adds its filters.
_DUE = (
    sa.select(_box.c.id)
    .where(_box.c.status == _PENDING, _box.c.next_attempt_at <= sa.bindparam("b_now"))
    .order_by(_box.c.next_attempt_at, _box.c.id)
)
_CLAIM = _box.update().where(_box.c.id.in_(_b_ids)).values(attempts=_box.c.attempts + 1)
_SELECT_ITEMS = sa.select(_box).where(_box.c.id.in_(_b_ids)).order_by(_box.c.id)
#: The pending items of an instance that another holder claimed and never settled.
_RECLAIM = _box.update().where(
    _box.c.target_instance == _b_instance,
    _box.c.status == _PENDING,
    _box.c.claimed_by.is_not(None),
    _box.c.claimed_by != sa.bindparam("b_holder"),
)
#: The claim's attempt uncounted (never below zero: ``greatest`` / ``max`` by back end).
_HAND_BACK = {
    pg: _box.update()
    .where(_box.c.id.in_(_b_ids), _box.c.status == _PENDING)
    .values(attempts=maximum(_box.c.attempts - 1, 0))
    for pg, maximum in ((False, sa.func.max), (True, sa.func.greatest))
}
_SELECT_ITEM = sa.select(_box).where(_box.c.id == _b_id)
#: Outbox items in the order they were enqueued: :meth:`OutboxRows.list_outbox` adds its
#: filters.
_LIST_ITEMS = sa.select(_box).order_by(_box.c.id)
_COUNT_BY_TARGET = sa.select(_box.c.target_instance, sa.func.count()).group_by(
    _box.c.target_instance
)
_SET_ITEM = _box.update().where(_box.c.id == _b_id)
_dl = t.dead_letters
_LAST_DEAD_LETTER_OF_ITEM = (
    sa.select(_dl.c.id).where(_dl.c.outbox_id == _b_id).order_by(_dl.c.id.desc())
)


class OutboxRows(DeadLetterRows):
    """A unit of work's outbox (an item given up on becomes a dead letter)."""

    @guarded
    def enqueue(
        self,
        target_instance: str,
        call_id: str,
        operation: OutboxOperation | str,
        payload: JsonValue,
        idempotency_key: str,
        *,
        not_before: datetime | None = None,
    ) -> Enqueued:
        """Ask for a remote write; enqueuing the same idempotency key again adds nothing.

        :param idempotency_key: names the write, not the attempt (it doubles as the remote
            correlation marker of a create), e.g. ``f"{call_id}:{instance}:create"``.
        :param not_before: when the write becomes due (now if not given).
        :raises StoreError: the key is already used for a different write.
        """
        op = OutboxOperation(operation)
        now = utcnow()
        due = now if not_before is None else aware(not_before, "not_before")
        created = (
            self._conn.execute(
                _ENQUEUE[self._pg],
                {
                    "target_instance": target_instance,
                    "call_id": call_id,
                    "operation": op.value,
                    "payload": payload,
                    "idempotency_key": idempotency_key,
                    "status": _PENDING,
                    "attempts": 0,
                    "next_attempt_at": due,
                    "last_error": None,
                    "created_at": now,
                    "updated_at": now,
                },
            ).first()
            is not None
        )
        row = self._conn.execute(_SELECT_BY_KEY, {"b_key": idempotency_key}).mappings().one()
        item = _outbox_item(row)
        if (item.target_instance, item.call_id, item.operation) != (target_instance, call_id, op):
            raise StoreError(
                f"idempotency key {idempotency_key!r} is already used for a {item.operation} of "
                f"call {item.call_id!r} in {item.target_instance!r}"
            )
        return Enqueued(item=item, created=created)

    @guarded
    def claim_outbox(
        self,
        *,
        instance: str | None = None,
        limit: int = 50,
        lease: timedelta = DEFAULT_LEASE,
        now: datetime | None = None,
        holder: str | None = None,
    ) -> list[OutboxItem]:
        """Take the due pending items (oldest first) for pushing.

        Each claimed item counts one attempt and is not due again until ``lease`` has passed,
        so a worker that dies mid-push leaves it to be retried rather than lost. On PostgreSQL,
        rows another worker is claiming are skipped instead of waited for.

        :param instance: only items for this target instance.
        :param holder: who claims (the identity of the store locks the claimer holds), kept
            with the item until it is settled, so that :meth:`reclaim_outbox` can tell a claim
            whose holder died.
        """
        now = utcnow() if now is None else aware(now, "now")
        query = _DUE.limit(limit)
        if instance is not None:
            query = query.where(_box.c.target_instance == instance)
        if self._pg:
            query = query.with_for_update(skip_locked=True)
        ids = list(self._conn.execute(query, {"b_now": now}).scalars())
        if not ids:
            return []
        self._conn.execute(
            _CLAIM,
            {"b_ids": ids, "next_attempt_at": now + lease, "claimed_by": holder, "updated_at": now},
        )
        rows = self._conn.execute(_SELECT_ITEMS, {"b_ids": ids}).mappings()
        by_id = {int(row["id"]): _outbox_item(row) for row in rows}
        return [by_id[item_id] for item_id in ids]

    @guarded
    def reclaim_outbox(self, *, instance: str, holder: str, now: datetime | None = None) -> int:
        """Make the items of ``instance`` that another holder claimed and never settled due
        at ``now``, instead of when their lease runs out; how many there were.

        Only for a caller that holds the push lock of ``instance`` (see
        :mod:`usm_bridge.sync.exclusion`) under the identity ``holder``: every claim is made
        under that lock, so a claim of another identity is one whose holder let go of the lock
        without settling it (it died, or its drain ended on a broken store) and that nobody is
        pushing now. Its attempt stays counted. Claims made without a holder wait out their
        lease as before.
        """
        now = utcnow() if now is None else aware(now, "now")
        result = self._conn.execute(
            _RECLAIM,
            {
                "b_instance": instance,
                "b_holder": holder,
                "next_attempt_at": now,
                "claimed_by": None,
                "updated_at": now,
            },
        )
        return int(result.rowcount or 0)

    @guarded
    def hand_back_outbox(self, item_ids: list[int], *, at: datetime) -> int:
        """Give back items this caller claimed and did not try: due at ``at``, their claim's
        attempt uncounted, their last error kept; how many were still pending.

        For a drain that claimed more than it pushes (an item that fell due again while the
        drain ran, or the rest of a batch after the tool stopped answering): without it they
        would stay invisible until their lease ran out, and count an attempt never made.
        """
        if not item_ids:
            return 0
        result = self._conn.execute(
            _HAND_BACK[self._pg],
            {
                "b_ids": list(item_ids),
                "next_attempt_at": aware(at, "at"),
                "claimed_by": None,
                "updated_at": utcnow(),
            },
        )
        return int(result.rowcount or 0)

    @guarded
    def get_outbox_item(self, item_id: int) -> OutboxItem | None:
        row = self._conn.execute(_SELECT_ITEM, {"b_id": item_id}).mappings().first()
        return None if row is None else _outbox_item(row)

    @guarded
    def list_outbox(
        self,
        *,
        status: OutboxStatus | str | None = None,
        instance: str | None = None,
        call_id: str | None = None,
        limit: int | None = None,
    ) -> list[OutboxItem]:
        """Outbox items in the order they were enqueued."""
        query = _LIST_ITEMS
        if status is not None:
            query = query.where(_box.c.status == OutboxStatus(status).value)
        if instance is not None:
            query = query.where(_box.c.target_instance == instance)
        if call_id is not None:
            query = query.where(_box.c.call_id == call_id)
        if limit is not None:
            query = query.limit(limit)
        return [_outbox_item(row) for row in self._conn.execute(query).mappings()]

    @guarded
    def count_outbox(
        self, *, status: OutboxStatus | str | None = OutboxStatus.PENDING
    ) -> dict[str, int]:
        """How many outbox items each target instance has; by default the pending ones.

        Counted by the database (``COUNT ... GROUP BY``), so ``usm-bridge status`` and the
        daemon's gauges cost one short query however long the history of done items grows.
        An instance without items is absent from the result.
        """
        query = _COUNT_BY_TARGET
        if status is not None:
            query = query.where(_box.c.status == OutboxStatus(status).value)
        return {str(name): int(count) for name, count in self._conn.execute(query)}

    def _require_item(self, item_id: int) -> OutboxItem:
        item = self.get_outbox_item(item_id)
        if item is None:
            raise StoreError(f"no outbox item {item_id}")
        return item

    def _set_item(self, item_id: int, **values: Any) -> OutboxItem:
        # Every change of an item settles it (done, failed, dead, requeued): no claim stands.
        self._conn.execute(
            _SET_ITEM, {"b_id": item_id, **values, "claimed_by": None, "updated_at": utcnow()}
        )
        return self._require_item(item_id)

    @guarded
    def mark_outbox_done(self, item_id: int) -> OutboxItem:
        """The write was made. Marking a done item again is a no-op.

        :raises StoreError: no such item, or it is dead.
        """
        item = self._require_item(item_id)
        if item.status is OutboxStatus.DONE:
            return item
        if item.status is OutboxStatus.DEAD:
            raise StoreError(f"outbox item {item_id} is dead; requeue it before marking it done")
        return self._set_item(item_id, status=OutboxStatus.DONE.value, last_error=None)

    @guarded
    def mark_outbox_failed(self, item_id: int, error: str, *, retry_at: datetime) -> OutboxItem:
        """The write failed for now: keep the item pending, due again at ``retry_at``.

        :raises StoreError: no such item, or it is not pending.
        """
        item = self._require_item(item_id)
        if item.status is not OutboxStatus.PENDING:
            raise StoreError(f"outbox item {item_id} is {item.status}, not pending")
        return self._set_item(
            item_id, last_error=error, next_attempt_at=aware(retry_at, "retry_at")
        )

    @guarded
    def mark_outbox_dead(self, item_id: int, reason: str) -> DeadLetter:
        """Give up on the write: the item becomes dead and a ``push`` dead letter records it.

        The dead letter's payload holds the whole request (operation, call, key, payload), so
        it can be inspected and requeued. Marking a dead item again returns its dead letter.
        """
        item = self._require_item(item_id)
        if item.status is OutboxStatus.DEAD:
            existing = self._conn.execute(_LAST_DEAD_LETTER_OF_ITEM, {"b_id": item_id}).scalar()
            if existing is not None:
                return self._require_dead_letter(int(existing))
        if item.status is OutboxStatus.DONE:
            raise StoreError(f"outbox item {item_id} is already done")
        self._set_item(item_id, status=OutboxStatus.DEAD.value, last_error=reason)
        return self.add_dead_letter(
            item.target_instance,
            DeadLetterStage.PUSH,
            {
                "outbox_id": item.id,
                "operation": item.operation.value,
                "call_id": item.call_id,
                "target_instance": item.target_instance,
                "idempotency_key": item.idempotency_key,
                "payload": item.payload,
            },
            reason,
            call_id=item.call_id,
            outbox_id=item.id,
            attempts=max(1, item.attempts),
            subject=f"outbox:{item.id}",
        )

    @guarded
    def requeue_outbox(self, item_id: int, *, at: datetime | None = None) -> OutboxItem:
        """Make a dead (or pending) item due again, at ``at`` or now.

        :raises StoreError: no such item, or it is done.
        """
        item = self._require_item(item_id)
        if item.status is OutboxStatus.DONE:
            raise StoreError(f"outbox item {item_id} is done; there is nothing to retry")
        due = utcnow() if at is None else aware(at, "at")
        return self._set_item(item_id, status=OutboxStatus.PENDING.value, next_attempt_at=due)


def _outbox_item(row: RowMapping) -> OutboxItem:
    return OutboxItem.model_validate(dict(row))
