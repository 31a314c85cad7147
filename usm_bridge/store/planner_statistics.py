"""Planner statistics that keep up with a backfill (PostgreSQL): ``ANALYZE`` as the tables grow.

A page of a backfill looks its records up by ``instance = :instance AND remote_id IN (...100
ids...)``. PostgreSQL picks the index for that from the tables' statistics; a store filled by
a backfill has none at first (a new table is never analyzed until autovacuum gets to it, a
minute or more later, and never where autovacuum is off), and without them the planner takes
``instance`` for a rare value (0.5 % of the rows) and scans every row of the instance through
an index on it, filtering the hundred ids out of them, rather than look the ids up. Measured on
a 20,000-issue Jira backfill: 8 million index entries read (identities and remote states),
each page reading those of every record stored before it, a cost growing with the square of
the backfill; analyzed as here, 0.8 million rows in all.

So the store analyzes the tables a page writes once this process has inserted
:data:`FIRST_ANALYZE_CALLS` new calls into them, and again each time that count doubles: a
handful of ``ANALYZE`` runs for a backfill of any size (each samples at most 30,000 rows of a
table, so it costs tens of milliseconds, however big the table), after the page's unit of work
committed, outside it.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["ANALYZED_TABLES", "FIRST_ANALYZE_CALLS", "StatisticsKeeper"]

log = logging.getLogger(__name__)

#: The tables a page of records inserts into and looks its records up in.
ANALYZED_TABLES: Final = ("calls", "identities", "remote_states", "audit_log")
#: New calls inserted by this process before the first ``ANALYZE`` (a page is 100 at most).
FIRST_ANALYZE_CALLS: Final = 1000


class StatisticsKeeper:
    """Counts the calls this process inserted in batches and says when to analyze; thread-safe
    (the daemon stores several instances' pages at once)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._inserted = 0
        self._next = FIRST_ANALYZE_CALLS

    def note_inserted(self, calls: int) -> None:
        """``calls`` new calls were sent to the store (in a unit of work not committed yet)."""
        with self._guard:
            self._inserted += calls

    def take_due(self) -> bool:
        """True, once, when the count reached the next threshold (which then doubles)."""
        with self._guard:
            if self._inserted < self._next:
                return False
            self._next = 2 * self._inserted
            return True

    def analyze_if_due(self, engine: Engine) -> None:
        """``ANALYZE`` the :data:`ANALYZED_TABLES` on PostgreSQL when :meth:`take_due` says so.

        A failure is logged and otherwise ignored: the statistics only make the queries
        faster, and autovacuum makes them too. (A role that does not own the tables gets a
        warning from the server, no error, and no statistics.)
        """
        if engine.dialect.name != "postgresql" or not self.take_due():
            return
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE " + ", ".join(ANALYZED_TABLES))
        except SQLAlchemyError as exc:
            log.warning("analyzing the store's tables failed: %s", type(exc).__name__)
