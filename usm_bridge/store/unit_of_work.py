"""What every part of a unit of work stands on: its connection, its store, the guard.

:class:`~usm_bridge.store.Transaction` (in :mod:`.store`, which only sets the shared state) is
put together from one mixin per concern, one module each:

- :mod:`.call_identity_rows`: calls and identities;
- :mod:`.chain_link_rows`: chain links, and locking and following a chain;
- :mod:`.outbox_rows`: the outbox;
- :mod:`.dead_letter_rows`: dead letters;
- :mod:`.audit_log`: the append-only audit log;
- :mod:`.cursors_and_runs`: cursors and how each instance's last sync went;
- :mod:`.comment_links`: which remote comment copies which canonical one;
- :mod:`.queue_send_rows`: the tasks sent to the workers' queues;
- :mod:`.file_retry_rows`: the files a tool would not let the bridge read for now.

Each mixin derives from :class:`UnitOfWork`, which declares the state they share, so that each
type-checks on its own. The tables read as a whole rather than row by row have functions over a
transaction instead: :mod:`.remote_state`, :mod:`.conformance_scores`, :mod:`.scale_queries`,
and a page of records stored at once, :mod:`.page_transaction`.
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
    from usm_bridge.store.store import Store

__all__ = ["UnitOfWork", "aware", "guarded", "per_back_end"]

P = ParamSpec("P")
R = TypeVar("R")
U = TypeVar("U", bound="UnitOfWork")
S = TypeVar("S")


class UnitOfWork:
    """The state of one unit of work, set by :class:`~usm_bridge.store.Transaction`."""

    _conn: Connection
    _store: Store
    #: Whether the back end is PostgreSQL (locking and ``ON CONFLICT`` differ).
    _pg: bool
    _ended: bool


def per_back_end(build: Callable[[Callable[[sa.Table], Any]], S]) -> dict[bool, S]:
    """What ``build`` makes with each back end's ``insert``, by "is it PostgreSQL".

    For the statements built once (see the package's docstring) whose ``ON CONFLICT`` clause
    needs the dialect's own insert construct; everything else compiles for either back end
    (SQLite renders no ``FOR UPDATE``: its read-write units of work hold the write lock).
    """
    return {False: build(sqlite_dialect.insert), True: build(pg_dialect.insert)}


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
