"""Dead letters: the records (``map``, ``store``) and writes (``push``) that could not go
through, kept with their payload and reason until they are resolved or dismissed."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import sqlalchemy as sa
from pydantic import JsonValue
from sqlalchemy.engine import RowMapping

from usm_bridge.errors import StoreError
from usm_bridge.model import utcnow
from usm_bridge.store import schema as t
from usm_bridge.store.audit_log import AuditLog
from usm_bridge.store.records import (
    DeadLetter,
    DeadLetterAdded,
    DeadLetterStage,
    DeadLetterStatus,
)
from usm_bridge.store.unit_of_work import guarded, per_back_end

__all__ = ["DeadLetterRows"]

_dl = t.dead_letters
_b_id: sa.BindParameter[int] = sa.bindparam("b_id")


def _open_or_count(insert: Callable[[sa.Table], Any]) -> Any:
    """Open a letter, or count the attempts on the open one of its subject (and take the new
    payload, reason and last-seen time); the letter's id and attempts."""
    statement = insert(_dl)
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[_dl.c.instance, _dl.c.subject, _dl.c.stage],
        index_where=t.DEAD_LETTER_OPEN_SUBJECT,
        set_={
            "attempts": _dl.c.attempts + new.attempts,
            "payload": new.payload,
            "reason": new.reason,
            "call_id": sa.func.coalesce(new.call_id, _dl.c.call_id),
            "outbox_id": sa.func.coalesce(new.outbox_id, _dl.c.outbox_id),
            "updated_at": new.updated_at,
            "last_seen": new.last_seen,
        },
    ).returning(_dl.c.id, _dl.c.attempts)


_RECORD_LETTER = per_back_end(_open_or_count)
_SELECT_LETTER = sa.select(_dl).where(_dl.c.id == _b_id)
#: Dead letters, oldest first: :meth:`DeadLetterRows.list_dead_letters` and
#: :meth:`DeadLetterRows.dead_letters_about` add their filters.
_LIST_LETTERS = sa.select(_dl).order_by(_dl.c.id)
_COUNT_BY_INSTANCE = sa.select(_dl.c.instance, sa.func.count()).group_by(_dl.c.instance)
_UPDATE_LETTER = _dl.update().where(_dl.c.id == _b_id)
#: One more (failed) retry: :meth:`DeadLetterRows.increment_dead_letter_attempts`.
_COUNT_ATTEMPT = _UPDATE_LETTER.values(attempts=_dl.c.attempts + 1)


class DeadLetterRows(AuditLog):
    """A unit of work's dead letters (each opened or closed one is audited)."""

    @guarded
    def add_dead_letter(
        self,
        instance: str,
        stage: DeadLetterStage | str,
        payload: JsonValue,
        reason: str,
        *,
        call_id: str | None = None,
        outbox_id: int | None = None,
        attempts: int = 1,
        subject: str | None = None,
    ) -> DeadLetter:
        """Keep a record (``map``, ``store``) or write (``push``) that could not go through.

        The letter as stored; see :meth:`record_dead_letter`, which also says whether it is new.
        """
        return self.record_dead_letter(
            instance,
            stage,
            payload,
            reason,
            call_id=call_id,
            outbox_id=outbox_id,
            attempts=attempts,
            subject=subject,
        ).letter

    @guarded
    def record_dead_letter(
        self,
        instance: str,
        stage: DeadLetterStage | str,
        payload: JsonValue,
        reason: str,
        *,
        call_id: str | None = None,
        outbox_id: int | None = None,
        attempts: int = 1,
        subject: str | None = None,
    ) -> DeadLetterAdded:
        """Open a dead letter, or count one more failure on the open one of the same subject.

        ``payload`` is stored exactly as given (any JSON value) with the ``reason``. With a
        ``subject`` (the remote record's id; ``outbox:<id>`` for a write) there is at most one
        open letter per (instance, subject, stage): a repeat adds ``attempts`` to it and takes
        the new payload, reason and last-seen time, in one ``INSERT ... ON CONFLICT`` so two
        processes failing on the same record at once still leave one letter. Only a new letter
        is audited (``dead_letter_added``).
        """
        if attempts < 1:
            raise StoreError(f"a dead letter counts at least one attempt, not {attempts}")
        now = utcnow()
        letter_id, stored_attempts = self._conn.execute(
            _RECORD_LETTER[self._pg],
            {
                "instance": instance,
                "stage": DeadLetterStage(stage).value,
                "payload": payload,
                "reason": reason,
                "attempts": attempts,
                "status": DeadLetterStatus.OPEN.value,
                "call_id": call_id,
                "outbox_id": outbox_id,
                "resolution": None,
                "created_at": now,
                "updated_at": now,
                "resolved_at": None,
                "subject": subject,
                "last_seen": now,
            },
        ).one()
        # An update adds to attempts that are at least 1: only a fresh row holds exactly ours.
        new = int(stored_attempts) == attempts
        if new:
            self._audit(
                "dead_letter_added",
                call_id=call_id,
                instance=instance,
                detail={"dead_letter_id": int(letter_id), "stage": str(stage), "reason": reason},
                now=now,
            )
        return DeadLetterAdded(letter=self._require_dead_letter(int(letter_id)), new=new)

    @guarded
    def get_dead_letter(self, letter_id: int) -> DeadLetter | None:
        row = self._conn.execute(_SELECT_LETTER, {"b_id": letter_id}).mappings().first()
        return None if row is None else _dead_letter(row)

    def _require_dead_letter(self, letter_id: int) -> DeadLetter:
        letter = self.get_dead_letter(letter_id)
        if letter is None:
            raise StoreError(f"no dead letter {letter_id}")
        return letter

    @guarded
    def list_dead_letters(
        self,
        *,
        status: DeadLetterStatus | str | None = DeadLetterStatus.OPEN,
        instance: str | None = None,
        stage: DeadLetterStage | str | None = None,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        """Dead letters, oldest first; by default only the open ones."""
        query = _LIST_LETTERS
        if status is not None:
            query = query.where(_dl.c.status == DeadLetterStatus(status).value)
        if instance is not None:
            query = query.where(_dl.c.instance == instance)
        if stage is not None:
            query = query.where(_dl.c.stage == DeadLetterStage(stage).value)
        if limit is not None:
            query = query.limit(limit)
        return [_dead_letter(row) for row in self._conn.execute(query).mappings()]

    @guarded
    def dead_letters_about(
        self,
        *,
        call_ids: Collection[str],
        records: Collection[tuple[str, str]],
        outbox_ids: Collection[int],
    ) -> list[DeadLetter]:
        """Every letter (any status) of the calls, of the remote records ``(instance,
        remote_id)`` or of the outbox items, oldest first (``usm-bridge trace``)."""
        about: list[sa.ColumnElement[bool]] = []
        if call_ids:
            about.append(_dl.c.call_id.in_(list(call_ids)))
        if outbox_ids:
            about.append(_dl.c.outbox_id.in_(list(outbox_ids)))
        about += [
            sa.and_(_dl.c.instance == instance, _dl.c.subject == remote_id)
            for instance, remote_id in records
        ]
        if not about:
            return []
        query = _LIST_LETTERS.where(sa.or_(*about))
        return [_dead_letter(row) for row in self._conn.execute(query).mappings()]

    @guarded
    def count_dead_letters(
        self, *, status: DeadLetterStatus | str | None = DeadLetterStatus.OPEN
    ) -> dict[str, int]:
        """How many dead letters each instance has; by default the open ones.

        Counted by the database (``COUNT ... GROUP BY``) rather than by loading the letters,
        whose payloads can be large. An instance without letters is absent from the result.
        """
        query = _COUNT_BY_INSTANCE
        if status is not None:
            query = query.where(_dl.c.status == DeadLetterStatus(status).value)
        return {str(name): int(count) for name, count in self._conn.execute(query)}

    @guarded
    def increment_dead_letter_attempts(
        self, letter_id: int, *, reason: str | None = None
    ) -> DeadLetter:
        """Count one more (failed) retry, optionally with the new reason."""
        now = utcnow()
        values: dict[str, Any] = {"b_id": letter_id, "updated_at": now, "last_seen": now}
        if reason is not None:
            values["reason"] = reason
        done = self._conn.execute(_COUNT_ATTEMPT, values)
        if done.rowcount != 1:
            raise StoreError(f"no dead letter {letter_id}")
        return self._require_dead_letter(letter_id)

    @guarded
    def resolve_dead_letter(
        self, letter_id: int, *, resolution: str | None = None, actor: str = "bridge"
    ) -> DeadLetter:
        """Close the dead letter (retried successfully, or dismissed by a person).

        Resolving a resolved letter again changes nothing.
        """
        letter = self._require_dead_letter(letter_id)
        if letter.status is not DeadLetterStatus.OPEN:
            return letter  # resolved already, or dismissed by a person: that decision stands
        return self._close_dead_letter(
            letter,
            DeadLetterStatus.RESOLVED,
            resolution=resolution,
            actor=actor,
            detail={"dead_letter_id": letter_id, "resolution": resolution},
        )

    @guarded
    def dismiss_dead_letter(self, letter_id: int, *, reason: str, actor: str) -> DeadLetter:
        """Give up on an open dead letter: it stops counting as open and is kept, dismissed.

        ``actor`` (who) and ``reason`` (why) go to the audit log (``dead_letter_dismissed``) and
        to the letter's resolution. A letter that is not open is refused with its status.
        """
        if not reason.strip():
            raise StoreError(f"dismissing dead letter {letter_id} needs a reason")
        if not actor.strip() or len(actor) > 100:
            raise StoreError(
                f"dismissing dead letter {letter_id} needs who dismisses it (1 to 100 characters)"
            )
        letter = self._require_dead_letter(letter_id)
        if letter.status is not DeadLetterStatus.OPEN:
            raise StoreError(f"dead letter {letter_id} is {letter.status.value}, not open")
        return self._close_dead_letter(
            letter,
            DeadLetterStatus.DISMISSED,
            resolution=f"dismissed by {actor}: {reason}",
            actor=actor,
            detail={
                "dead_letter_id": letter_id,
                "stage": letter.stage.value,
                "subject": letter.subject,
                "reason": reason,
            },
        )

    def _close_dead_letter(
        self,
        letter: DeadLetter,
        status: DeadLetterStatus,
        *,
        resolution: str | None,
        actor: str,
        detail: JsonValue,
    ) -> DeadLetter:
        """Set an open letter's final status, audited as ``dead_letter_<status>``."""
        now = utcnow()
        self._conn.execute(
            _UPDATE_LETTER,
            {
                "b_id": letter.id,
                "status": status.value,
                "resolution": resolution,
                "resolved_at": now,
                "updated_at": now,
            },
        )
        self._audit(
            f"dead_letter_{status.value}",
            call_id=letter.call_id,
            instance=letter.instance,
            actor=actor,
            detail=detail,
            now=now,
        )
        return self._require_dead_letter(letter.id)


def _dead_letter(row: RowMapping) -> DeadLetter:
    return DeadLetter.model_validate(dict(row))
