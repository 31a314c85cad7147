"""How far each connector instance got: its read cursor, and how its last cycles and census
went (``instance_states``, which ``usm-bridge status`` shows)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from usm_bridge.model import utcnow
from usm_bridge.store import schema as t
from usm_bridge.store.records import CursorRecord, InstanceState
from usm_bridge.store.unit_of_work import UnitOfWork, aware, guarded

__all__ = ["CursorsAndRuns"]


class CursorsAndRuns(UnitOfWork):
    """A unit of work's cursors and instance states."""

    @guarded
    def get_cursor(self, instance: str) -> str | None:
        """The saved read position of ``instance`` (``None``: read everything)."""
        return self._conn.execute(
            sa.select(t.cursors.c.cursor).where(t.cursors.c.instance == instance)
        ).scalar_one_or_none()

    @guarded
    def set_cursor(self, instance: str, cursor: str) -> CursorRecord:
        """Save the read position; call it in the unit of work that stored what it covers."""
        now = utcnow()
        statement = self._insert(t.cursors).values(instance=instance, cursor=cursor, updated_at=now)
        statement = statement.on_conflict_do_update(
            index_elements=[t.cursors.c.instance],
            set_={"cursor": cursor, "updated_at": now},
        )
        self._conn.execute(statement)
        return CursorRecord(instance=instance, cursor=cursor, updated_at=now)

    @guarded
    def list_cursors(self) -> list[CursorRecord]:
        """Every saved cursor, by instance name."""
        rows = self._conn.execute(sa.select(t.cursors).order_by(t.cursors.c.instance)).mappings()
        return [CursorRecord.model_validate(dict(row)) for row in rows]

    @guarded
    def record_run(
        self,
        instance: str,
        *,
        started: datetime,
        finished: datetime,
        counters: Mapping[str, int],
        error: str | None = None,
    ) -> InstanceState:
        """Record how a cycle of ``instance`` went; ``error`` ``None`` means it succeeded.

        A success resets the consecutive failures but keeps the last error and its time, so
        ``usm-bridge status`` can still say what went wrong last.
        """
        started = aware(started, "started")
        finished = aware(finished, "finished")
        states = t.instance_states
        query = sa.select(states).where(states.c.instance == instance)
        if self._pg:
            query = query.with_for_update()
        row = self._conn.execute(query).mappings().first()
        values: dict[str, Any] = {
            "last_started": started,
            "last_finished": finished,
            "last_counters": {str(k): int(v) for k, v in counters.items()},
        }
        if error is None:
            values["last_success"] = finished
            values["consecutive_failures"] = 0
        else:
            values["last_error"] = error
            values["last_error_at"] = finished
        if row is None:
            values.setdefault("last_success", None)
            values.setdefault("last_error", None)
            values.setdefault("last_error_at", None)
            values["consecutive_failures"] = 0 if error is None else 1
            values["runs"] = 1
            self._conn.execute(states.insert().values(instance=instance, **values))
        else:
            if error is not None:
                values["consecutive_failures"] = states.c.consecutive_failures + 1
            values["runs"] = states.c.runs + 1
            self._conn.execute(
                states.update().where(states.c.instance == instance).values(**values)
            )
        found = self.get_instance_state(instance)
        assert found is not None
        return found

    @guarded
    def record_census(self, instance: str, *, at: datetime) -> InstanceState | None:
        """Record that a census of ``instance``'s remote ids ran at ``at``.

        The daemon schedules the next census from it, also after a restart. A census follows
        a recorded cycle, so the instance has a state row; when it has none (no cycle of it was
        ever recorded) nothing is written and ``None`` is returned: inventing a row would show
        ``usm-bridge status`` a cycle that never ran.
        """
        at = aware(at, "at")
        states = t.instance_states
        done = self._conn.execute(
            states.update().where(states.c.instance == instance).values(last_census=at)
        )
        if done.rowcount != 1:
            return None
        return self.get_instance_state(instance)

    @guarded
    def get_instance_state(self, instance: str) -> InstanceState | None:
        row = (
            self._conn.execute(
                sa.select(t.instance_states).where(t.instance_states.c.instance == instance)
            )
            .mappings()
            .first()
        )
        return None if row is None else InstanceState.model_validate(dict(row))

    @guarded
    def list_instance_states(self) -> list[InstanceState]:
        """How the last cycle of every instance that ever ran went, by instance name."""
        states = t.instance_states
        rows = self._conn.execute(sa.select(states).order_by(states.c.instance)).mappings()
        return [InstanceState.model_validate(dict(row)) for row in rows]
