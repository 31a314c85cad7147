"""The files a tool would not let the bridge read for now (``file_retries``): when each is
tried again (:mod:`usm_bridge.sync.file_retry` says why and how often)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from usm_bridge.store import schema as t
from usm_bridge.store.unit_of_work import UnitOfWork, guarded, per_back_end

__all__ = ["FileRetry", "FileRetryRows"]

_fr = t.file_retries
_b_instance: sa.BindParameter[str] = sa.bindparam("b_instance")
_b_file: sa.BindParameter[str] = sa.bindparam("b_file")


def _insert_once(insert: Callable[[sa.Table], Any]) -> Any:
    """A file's row, unless it has one: a file refused again on its record's read keeps the
    back-off it has."""
    return insert(_fr).on_conflict_do_nothing(index_elements=[_fr.c.instance, _fr.c.file_id])


_SCHEDULE = per_back_end(_insert_once)
_DUE = (
    sa.select(_fr)
    .where(_fr.c.instance == _b_instance, _fr.c.next_try_at <= sa.bindparam("b_now"))
    .order_by(_fr.c.next_try_at, _fr.c.file_id)
    .limit(sa.bindparam("b_limit"))
)
_ONE = sa.select(_fr).where(_fr.c.instance == _b_instance, _fr.c.file_id == _b_file)
_POSTPONE = (
    _fr.update()
    .where(_fr.c.instance == _b_instance, _fr.c.file_id == _b_file)
    .values(attempts=_fr.c.attempts + 1, next_try_at=sa.bindparam("b_next"))
)
_DEFER = (
    _fr.update()
    .where(_fr.c.instance == _b_instance, _fr.c.file_id == _b_file)
    .values(next_try_at=sa.bindparam("b_next"))
)
_DROP = sa.delete(_fr).where(_fr.c.instance == _b_instance, _fr.c.file_id == _b_file)


@dataclass(frozen=True)
class FileRetry:
    """One file to read again: the instance's id of it, the call listing it, how often it was
    tried, and when it is due."""

    instance: str
    file_id: str
    call_id: str
    attempts: int
    next_try_at: datetime


class FileRetryRows(UnitOfWork):
    """A unit of work's files to read again."""

    @guarded
    def schedule_file_retry(
        self, instance: str, file_id: str, call_id: str, *, at: datetime
    ) -> None:
        """Try the file ``file_id`` of ``instance`` (listed on ``call_id``) again at ``at``,
        counted as tried once; a file with a row keeps it (and its back-off)."""
        self._conn.execute(
            _SCHEDULE[self._pg],
            {"instance": instance, "file_id": file_id, "call_id": call_id, "attempts": 1,
             "next_try_at": at},
        )  # fmt: skip

    @guarded
    def due_file_retries(self, instance: str, *, now: datetime, limit: int) -> list[FileRetry]:
        """The files of ``instance`` due by ``now``, the longest due first, ``limit`` at most."""
        rows = self._conn.execute(_DUE, {"b_instance": instance, "b_now": now, "b_limit": limit})
        return [FileRetry(**row) for row in rows.mappings()]

    @guarded
    def get_file_retry(self, instance: str, file_id: str) -> FileRetry | None:
        row = self._conn.execute(_ONE, {"b_instance": instance, "b_file": file_id}).mappings()
        found = row.first()
        return None if found is None else FileRetry(**found)

    @guarded
    def postpone_file_retry(self, instance: str, file_id: str, *, at: datetime) -> None:
        """One more try of the file counted, the next at ``at``."""
        self._conn.execute(_POSTPONE, {"b_instance": instance, "b_file": file_id, "b_next": at})

    @guarded
    def defer_file_retry(self, instance: str, file_id: str, *, at: datetime) -> None:
        """The next try of the file at ``at``, no try counted: the tool did not answer (a
        timeout, a 5xx), which says nothing of whether it would let the bridge read the file."""
        self._conn.execute(_DEFER, {"b_instance": instance, "b_file": file_id, "b_next": at})

    @guarded
    def drop_file_retries_except(self, instances: Collection[str]) -> int:
        """Drop the rows of every instance but ``instances`` (those the config names: an
        instance removed or renamed has no tool to read its files from); how many went."""
        query = sa.delete(_fr)
        if instances:
            query = query.where(_fr.c.instance.not_in(sorted(instances)))
        return int(self._conn.execute(query).rowcount or 0)

    @guarded
    def drop_file_retry(self, instance: str, file_id: str) -> None:
        """The file is read (or no longer listed): no more tries."""
        self._conn.execute(_DROP, {"b_instance": instance, "b_file": file_id})
