"""The settings of every PostgreSQL session the store opens: custom plans only.

psycopg prepares a statement on the server once it has run it five times
(``prepare_threshold``), and from the sixth execution of a prepared statement PostgreSQL may
switch to a *generic* plan, made once without looking at the parameters. Several of the store's
lookups have skewed parameters: the pending outbox items of one target among many done ones,
the open dead letters of an instance among the resolved ones, one instance's identities in a
store shared by instances of very different sizes. A generic plan is costed for an average
value; a custom plan is made for the values at hand, and at the store's query sizes planning
costs little beside a plan that reads the wrong rows.

``plan_cache_mode`` (PostgreSQL 12 and later) says so for the whole session. It is set when the
connection is made, outside any unit of work (a ``SET`` inside one would be undone by its
rollback), so it holds for every checkout of a pooled connection; a server older than 12 has no
such setting and keeps its own choice.

(What made a backfill on PostgreSQL read every identity of its instance for each page was not
the generic plans but tables without statistics: see :mod:`.planner_statistics`.)
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

__all__ = ["PLAN_CACHE_MODE", "configure_pg_sessions"]

#: The value of ``plan_cache_mode`` on every session of the store.
PLAN_CACHE_MODE: Final = "force_custom_plan"
#: The first server version (``server_version_num``) that knows ``plan_cache_mode``.
_PLAN_CACHE_MODE_SINCE: Final = 120000


def configure_pg_sessions(engine: Engine) -> None:
    """Set :data:`PLAN_CACHE_MODE` on each new connection of ``engine`` (PostgreSQL)."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if _server_version(dbapi_connection) < _PLAN_CACHE_MODE_SINCE:
            return
        cursor = dbapi_connection.cursor()
        try:
            # A constant, not a parameter: SET takes no bound values.
            cursor.execute(f"SET plan_cache_mode = {PLAN_CACHE_MODE}")
        finally:
            cursor.close()
        # Committed at once: the connection is new, so this ends only the SET's transaction.
        dbapi_connection.commit()


def _server_version(dbapi_connection: Any) -> int:
    """``server_version_num`` of the server: psycopg 3 keeps it in ``info``, psycopg2 (a URL
    may name it) on the connection."""
    info = getattr(dbapi_connection, "info", None)
    version: Any = getattr(info, "server_version", None)
    if version is None:
        version = getattr(dbapi_connection, "server_version", 0)
    return int(version)
