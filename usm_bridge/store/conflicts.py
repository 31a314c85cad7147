"""A unit of work the database rolled back because of another one running at the same time."""

from __future__ import annotations

from usm_bridge.errors import StoreError

__all__ = ["CONFLICT_STATES", "StoreConflictError"]

#: SQLSTATEs of a unit of work the database gave up on because of another one running at the
#: same time: serialization_failure, deadlock_detected (PostgreSQL).
CONFLICT_STATES = frozenset({"40001", "40P01"})


class StoreConflictError(StoreError):
    """Another unit of work changed the same rows at the same time (a deadlock the database
    broke, a call updated under this one): this one was rolled back, and running it again from
    the start is the remedy. Sync cycles of different instances meet this on PostgreSQL when
    they touch calls of one chain at once; it says nothing about the data."""
