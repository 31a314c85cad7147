"""What one sync cycle did: its counters, listed once.

:class:`CycleCounts` names each counter a cycle keeps, with the metric it feeds and what it
means. Everything else derives from it: the engine counts into it, :class:`CycleSummary` adds
the cycle's instance, times and error, the run record and the ``after_cycle`` hook get
:meth:`CycleCounts.counters`, the daemon's metrics are :data:`COUNTERS`, and the console prints
the counters by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, NamedTuple

__all__ = [
    "COUNTERS",
    "Counter",
    "CycleCounts",
    "CycleProgress",
    "CycleSummary",
    "PushSummary",
]


def _counter(metric: str, help: str) -> Any:
    return field(default=0, metadata={"metric": metric, "help": help})


@dataclass
class CycleCounts:
    """The counters of one cycle (the engine adds to them as it goes)."""

    #: Records the connector yielded.
    read: int = _counter("records_read", "Raw records read from the tool.")
    #: Records that changed the store (echoes included).
    stored: int = _counter("records_stored", "Records stored as a real change.")
    #: Records read again without any change.
    unchanged: int = _counter("records_unchanged", "Records read that held nothing new.")
    #: Stored records that were the bridge's own writes coming back (not routed).
    echoes: int = _counter("echoes", "Records recognised as echoes of the bridge's own writes.")
    #: Stored records handed to the router.
    routed: int = _counter("routed", "Remote writes the router queued for other units' tools.")
    #: Remote writes made (creates, updates, comments).
    pushed: int = _counter("pushed", "Remote writes pushed into the tool.")
    #: Dead letters this cycle added (map, store and push).
    dead_letters: int = _counter("dead_letters", "Dead letters created by cycles.")

    def counters(self) -> dict[str, int]:
        """The counters by name, for the ``after_cycle`` hook, the store and metrics."""
        return {name: int(getattr(self, name)) for name, _, _ in COUNTERS}


class Counter(NamedTuple):
    """One counter: its field in :class:`CycleCounts`, its metric's name, what it counts."""

    name: str
    metric: str
    help: str


#: Every counter of a cycle, in the order they are shown.
COUNTERS: tuple[Counter, ...] = tuple(
    Counter(f.name, f.metadata["metric"], f.metadata["help"]) for f in fields(CycleCounts)
)


@dataclass(kw_only=True)
class CycleSummary(CycleCounts):
    """What one cycle did: its counters, and its instance, times and error."""

    instance: str
    started: datetime
    finished: datetime
    error: str | None = None
    #: The instances whose outbox the cycle queued writes for (its own included): what a
    #: caller of :meth:`~.engine.SyncEngine.cycle` pushes next. Empty after ``run_cycle``,
    #: which pushed them itself.
    targets: frozenset[str] = frozenset()
    #: Why the cycle did not run: its instance (or its tool) is busy in another process. Set
    #: after construction (not an argument: the counters are passed as ``**counters``).
    skipped: str | None = field(default=None, init=False)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(kw_only=True)
class PushSummary:
    """What one push of a target's outbox did (:meth:`~.engine.SyncEngine.push`)."""

    target: str
    started: datetime
    finished: datetime
    #: Writes made, and items with nothing to write.
    pushed: int = 0
    skipped: int = 0
    #: Items deferred after a failure that may pass, and items given up (dead letters).
    retried: int = 0
    dead_letters: int = 0
    #: Items waiting for the create of their record.
    waiting: int = 0
    #: The tool did not answer (a timeout, a refused connection): the push stopped at that
    #: item and handed the rest back, due with it, instead of waiting a full timeout on each.
    stalled: str | None = None
    #: The push could not run at all (the connector cannot be built, the mapping does not
    #: load, the store failed).
    error: str | None = None
    #: Another process pushes to the target: nothing was done here.
    busy: str | None = None

    @property
    def ok(self) -> bool:
        """Neither failed nor stalled (a busy target is fine: it is being pushed)."""
        return self.error is None and self.stalled is None


@dataclass(frozen=True)
class CycleProgress:
    """Passed to the progress callback after each record."""

    instance: str
    read: int
    stored: int
