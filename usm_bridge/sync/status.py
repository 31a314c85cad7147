"""Where each connector instance stands, read from the store: what ``usm-bridge status`` shows.

Per instance: the last cycle's start, the last success and the lag since then, consecutive
failures and the last error (from the store's instance states, which the engine keeps), when
its last census ran (which the daemon keeps), the backlog (pending outbox items for the
instance's tool) and its open dead letters. The backlog and dead letters are counted by the
database, never loaded: a store with a long history answers as fast as a new one. The oldest
waiting writes of each instance are listed with their last error (``waiting``), so a write that
keeps failing is seen before it becomes a dead letter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from ..config import BridgeConfig
from ..store import Store, Transaction
from .waiting import WaitingItem, list_waiting

__all__ = [
    "InstanceStatus",
    "StoreCounts",
    "StoredState",
    "collect_status",
    "read_states",
    "store_counts",
]

#: How many intervals without a success before an instance is reported late (as /healthz does).
LATE_AFTER_INTERVALS = 3
#: The waiting writes listed per instance, oldest first (``backlog`` counts them all).
WAITING_SHOWN = 20

State = Literal["ok", "late", "failing", "never synced", "disabled"]


@dataclass(frozen=True)
class StoredState:
    """One instance's cycle history as the store keeps it (``tx.list_instance_states()``)."""

    instance: str
    last_started: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    last_counters: dict[str, int] = field(default_factory=dict)
    last_census: datetime | None = None


@dataclass(frozen=True)
class StoreCounts:
    """Pending outbox items and open dead letters, per instance."""

    backlog: dict[str, int]
    dead_letters: dict[str, int]


def _first(obj: object, *names: str) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _stored_state(raw: object) -> StoredState:
    # Read by attribute and tolerant of the exact names: the record belongs to the store.
    counters = _first(raw, "last_counters", "counters") or {}
    return StoredState(
        instance=str(_first(raw, "instance", "name")),
        last_started=_first(raw, "last_started_at", "last_start_at", "last_started", "last_start"),
        last_success=_first(raw, "last_success_at", "last_succeeded_at", "last_success"),
        last_error=_first(raw, "last_error"),
        last_error_at=_first(raw, "last_error_at"),
        consecutive_failures=int(_first(raw, "consecutive_failures", "failures") or 0),
        last_counters={str(k): int(v) for k, v in dict(counters).items()},
        last_census=_first(raw, "last_census", "last_census_at"),
    )


def read_states(tx: Transaction) -> dict[str, StoredState] | None:
    """Every instance's stored state, or ``None`` when this store keeps none yet."""
    lister = getattr(tx, "list_instance_states", None)
    if lister is None:
        return None
    return {state.instance: state for state in map(_stored_state, lister())}


def store_counts(tx: Transaction) -> StoreCounts:
    """Backlog and open dead letters of every instance, in one unit of work.

    Two ``COUNT ... GROUP BY`` queries: the daemon calls this after every cycle, and loading
    the items (with their payloads) would grow with the backlog it is meant to watch.
    """
    return StoreCounts(
        backlog=tx.count_outbox(status="pending"), dead_letters=tx.count_dead_letters(status="open")
    )


@dataclass(frozen=True)
class InstanceStatus:
    """One row of ``usm-bridge status``."""

    instance: str
    unit: str
    kind: str
    enabled: bool
    interval: float
    backlog: int
    dead_letters: int
    stored: StoredState | None
    now: datetime
    #: The oldest pending writes into the instance's tool (at most WAITING_SHOWN).
    waiting: tuple[WaitingItem, ...] = ()

    @property
    def last_success(self) -> datetime | None:
        return self.stored.last_success if self.stored else None

    @property
    def lag(self) -> timedelta | None:
        """Now minus the last success (``None`` before the first)."""
        last = self.last_success
        return None if last is None else max(self.now - last, timedelta(0))

    @property
    def consecutive_failures(self) -> int:
        return self.stored.consecutive_failures if self.stored else 0

    @property
    def last_error(self) -> str | None:
        """The error that keeps the instance failing (``None`` once it succeeded again)."""
        return self.stored.last_error if self.stored and self.consecutive_failures else None

    @property
    def state(self) -> State:
        if not self.enabled:
            return "disabled"
        if self.consecutive_failures:
            return "failing"
        lag = self.lag
        if lag is None:
            return "never synced"
        if lag.total_seconds() > LATE_AFTER_INTERVALS * self.interval:
            return "late"
        return "ok"

    def as_json(self) -> dict[str, Any]:
        lag = self.lag
        stored = self.stored
        return {
            "instance": self.instance,
            "unit": self.unit,
            "kind": self.kind,
            "enabled": self.enabled,
            "interval_seconds": self.interval,
            "state": self.state,
            "last_started": _iso(stored.last_started if stored else None),
            "last_success": _iso(self.last_success),
            "lag_seconds": None if lag is None else round(lag.total_seconds(), 3),
            "backlog": self.backlog,
            "dead_letters": self.dead_letters,
            "consecutive_failures": self.consecutive_failures,
            "last_error": stored.last_error if stored else None,
            "last_error_at": _iso(stored.last_error_at if stored else None),
            "last_counters": dict(stored.last_counters) if stored else {},
            "last_census": _iso(stored.last_census if stored else None),
            "waiting": [item.as_json() for item in self.waiting],
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@dataclass(frozen=True)
class StatusReport:
    instances: list[InstanceStatus]
    #: False when the store keeps no cycle history yet (older schema): only counts are known.
    history: bool
    store: str

    def as_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "history": self.history,
            "instances": [row.as_json() for row in self.instances],
        }


def collect_status(
    config: BridgeConfig, store: Store, *, now: datetime, instances: tuple[str, ...] = ()
) -> StatusReport:
    """Every configured instance (or only ``instances``) with what the store knows of it."""
    with store.begin(readonly=True) as tx:
        states = read_states(tx)
        counts = store_counts(tx)
        waiting = {
            name: tuple(list_waiting(tx, instance=name, limit=WAITING_SHOWN))
            for name in config.instances
            if counts.backlog.get(name, 0) and (not instances or name in instances)
        }
    rows = []
    for name, inst in config.instances.items():
        if instances and name not in instances:
            continue
        rows.append(
            InstanceStatus(
                instance=name,
                unit=inst.unit,
                kind=inst.kind,
                enabled=inst.enabled,
                interval=inst.interval,
                backlog=counts.backlog.get(name, 0),
                dead_letters=counts.dead_letters.get(name, 0),
                stored=None if states is None else states.get(name),
                now=now,
                waiting=waiting.get(name, ()),
            )
        )
    return StatusReport(instances=rows, history=states is not None, store=store.display_url)
