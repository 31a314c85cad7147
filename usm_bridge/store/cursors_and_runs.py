"""How far each connector instance got: its read cursor, and how its last cycles and census
went (``instance_states``, which ``usm-bridge status`` shows)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from usm_bridge.model import utcnow
from usm_bridge.store import schema as t
from usm_bridge.store.records import CursorRecord, InstanceState
from usm_bridge.store.unit_of_work import UnitOfWork, aware, guarded, per_back_end

__all__ = ["CursorsAndRuns"]

_cursors, _states = t.cursors, t.instance_states
_b_instance: sa.BindParameter[str] = sa.bindparam("b_instance")

_GET_CURSOR = sa.select(_cursors.c.cursor).where(_cursors.c.instance == _b_instance)


def _upsert_cursor(insert: Callable[[sa.Table], Any]) -> Any:
    statement = insert(_cursors)
    changed = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[_cursors.c.instance],
        set_={"cursor": changed.cursor, "updated_at": changed.updated_at},
    )


_SET_CURSOR = per_back_end(_upsert_cursor)
_LIST_CURSORS = sa.select(_cursors).order_by(_cursors.c.instance)
_SELECT_STATE = sa.select(_states).where(_states.c.instance == _b_instance)
#: The state row, locked on PostgreSQL until the unit of work ends (SQLite renders no lock).
_LOCK_STATE = _SELECT_STATE.with_for_update()
_INSERT_STATE = _states.insert()
_update_state = _states.update().where(_states.c.instance == _b_instance)
#: A run recorded on an instance's state: one more run, and one more failure when it failed.
_RECORD_SUCCESS = _update_state.values(runs=_states.c.runs + 1)
_RECORD_FAILURE = _update_state.values(
    runs=_states.c.runs + 1, consecutive_failures=_states.c.consecutive_failures + 1
)
_RECORD_CENSUS = _update_state
_LIST_STATES = sa.select(_states).order_by(_states.c.instance)


class CursorsAndRuns(UnitOfWork):
    """A unit of work's cursors and instance states."""

    @guarded
    def get_cursor(self, instance: str) -> str | None:
        """The saved read position of ``instance`` (``None``: read everything)."""
        return self._conn.execute(_GET_CURSOR, {"b_instance": instance}).scalar_one_or_none()

    @guarded
    def set_cursor(self, instance: str, cursor: str) -> CursorRecord:
        """Save the read position; call it in the unit of work that stored what it covers."""
        now = utcnow()
        self._conn.execute(
            _SET_CURSOR[self._pg], {"instance": instance, "cursor": cursor, "updated_at": now}
        )
        return CursorRecord(instance=instance, cursor=cursor, updated_at=now)

    @guarded
    def list_cursors(self) -> list[CursorRecord]:
        """Every saved cursor, by instance name."""
        rows = self._conn.execute(_LIST_CURSORS).mappings()
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
        row = self._conn.execute(_LOCK_STATE, {"b_instance": instance}).mappings().first()
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
            self._conn.execute(_INSERT_STATE, {"instance": instance, **values})
        else:
            # The statement counts the run (and a failure) up from what the row holds.
            record = _RECORD_SUCCESS if error is None else _RECORD_FAILURE
            self._conn.execute(record, {"b_instance": instance, **values})
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
        done = self._conn.execute(_RECORD_CENSUS, {"b_instance": instance, "last_census": at})
        if done.rowcount != 1:
            return None
        return self.get_instance_state(instance)

    @guarded
    def get_instance_state(self, instance: str) -> InstanceState | None:
        row = self._conn.execute(_SELECT_STATE, {"b_instance": instance}).mappings().first()
        return None if row is None else InstanceState.model_validate(dict(row))

    @guarded
    def list_instance_states(self) -> list[InstanceState]:
        """How the last cycle of every instance that ever ran went, by instance name."""
        rows = self._conn.execute(_LIST_STATES).mappings()
        return [InstanceState.model_validate(dict(row)) for row in rows]
