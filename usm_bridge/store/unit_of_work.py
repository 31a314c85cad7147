"""What every part of a unit of work stands on: its connection, its store, the guard.

:class:`~usm_bridge.store.Transaction` is put together from one mixin per concern (calls and
identities in :mod:`.store`, and :mod:`.outbox_rows`, :mod:`.dead_letter_rows`,
:mod:`.audit_log`, :mod:`.cursors_and_runs`, :mod:`.comment_links`, :mod:`.queue_send_rows`);
each mixin derives from :class:`UnitOfWork`, which declares the state they share, so that each
type-checks on its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from usm_bridge.errors import StoreError

if TYPE_CHECKING:
    from usm_bridge.store.store import Store, _Statements

__all__ = ["UnitOfWork", "aware", "guarded"]

P = ParamSpec("P")
R = TypeVar("R")
U = TypeVar("U", bound="UnitOfWork")


class UnitOfWork:
    """The state of one unit of work, set by :class:`~usm_bridge.store.Transaction`."""

    _conn: Connection
    _store: Store
    #: Whether the back end is PostgreSQL (locking and ``ON CONFLICT`` differ).
    _pg: bool
    _sql: _Statements
    _ended: bool

    def _insert(self, table: sa.Table) -> Any:
        # Both dialects' insert constructs know ON CONFLICT DO NOTHING.
        return pg_dialect.insert(table) if self._pg else sqlite_dialect.insert(table)


def guarded(method: Callable[Concatenate[U, P], R]) -> Callable[Concatenate[U, P], R]:
    """Turn database errors into StoreError and refuse use after the unit of work ended."""

    @functools.wraps(method)
    def wrapper(self: U, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._ended:
            raise StoreError("this unit of work has ended; open a new one with store.begin()")
        try:
            return method(self, *args, **kwargs)
        except SQLAlchemyError as exc:
            raise self._store._error(f"{method.__name__} failed", exc) from exc

    return wrapper


def aware(value: datetime, name: str) -> datetime:
    """``value`` in UTC; a naive timestamp is refused, as its time zone would be a guess."""
    if value.tzinfo is None:
        raise StoreError(f"{name} must be a time-zone aware timestamp")
    return value.astimezone(UTC)
