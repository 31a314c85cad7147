"""The daemon's push jobs: each target's outbox is pushed on the target's own slot.

A cycle (:meth:`~.engine.SyncEngine.cycle`) reads one instance and queues writes for others;
it never pushes them itself. It names the targets it queued for (``summary.targets``, its own
instance included), and the daemon asks for a push of each here. A push runs in a thread of its
own, one at a time per target (:meth:`~.engine.SyncEngine.push`), so a target that does not
answer holds back its own pushes and nothing else: no other instance's cycle waits for it.

Per target:

* asked for while idle: due at once (or when its backoff ends); asked again while it runs: it
  runs once more after (the cycle that asked may have queued writes the running push did not
  see); asked many times meanwhile: once;
* a push that stalled (the tool did not answer) or failed backs the target off like a failed
  cycle, ``interval * 2**failures`` capped (:meth:`~.daemon.Schedule.backoff`), the target's
  interval being its instance's; the items it handed back are due with that backoff in the
  store anyway (:mod:`.outbox`). One push that goes through resets it.

Pure bookkeeping on the daemon's monotonic seconds, no threads, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["PushJobs", "PushSlot"]


@dataclass
class PushSlot:
    """One target's push: asked for, running, backing off."""

    target: str
    interval: float
    requested: bool = False
    running: bool = False
    #: Not started before this (monotonic seconds): the backoff after a failure.
    not_before: float = 0.0
    failures: int = 0
    last_error: str | None = None
    #: Writes pushed since the daemon started.
    pushed: int = 0


class PushJobs:
    """Which targets need a push, and when.

    :param intervals: every instance that can be pushed to, with its interval (the base of
        its backoff).
    :param backoff: the delay after ``failures`` failures in a row, given the interval.
    :param jittered: applies the daemon's jitter to a delay.
    """

    def __init__(
        self,
        intervals: Mapping[str, float],
        *,
        backoff: Callable[[float, int], float],
        jittered: Callable[[float], float] = lambda delay: delay,
    ) -> None:
        self._backoff = backoff
        self._jittered = jittered
        self.slots = {
            name: PushSlot(target=name, interval=interval) for name, interval in intervals.items()
        }

    def request(self, targets: Iterable[str]) -> None:
        """Ask for a push of each of ``targets`` (an unknown name is ignored: not ours)."""
        for target in targets:
            slot = self.slots.get(target)
            if slot is not None:
                slot.requested = True

    def due(self, now: float) -> list[str]:
        """Targets asked for, idle and past their backoff at ``now``, the longest waiting
        first."""
        ready = [
            slot
            for slot in self.slots.values()
            if slot.requested and not slot.running and slot.not_before <= now
        ]
        return [slot.target for slot in sorted(ready, key=lambda s: (s.not_before, s.target))]

    def next_due(self) -> float | None:
        """When the next asked-for idle target is due (``None``: none is waiting)."""
        waiting = [s.not_before for s in self.slots.values() if s.requested and not s.running]
        return min(waiting) if waiting else None

    def start(self, target: str) -> None:
        """Book the start of a push of ``target``; what was asked for until now it covers.

        :raises RuntimeError: a push of ``target`` is already running.
        """
        slot = self.slots[target]
        if slot.running:
            raise RuntimeError(f"a push to {target!r} is already running")
        slot.running = True
        slot.requested = False

    def finish(self, target: str, *, now: float, pushed: int = 0, error: str | None) -> float:
        """Book the end of a push; ``error``: why it stalled or failed (``None``: it went
        through). Returns the delay before the target may be pushed again."""
        slot = self.slots[target]
        slot.running = False
        slot.pushed += pushed
        if error is None:
            slot.failures = 0
            slot.last_error = None
            slot.not_before = now
            return 0.0
        slot.failures += 1
        slot.last_error = error
        delay = self._jittered(self._backoff(slot.interval, slot.failures))
        slot.not_before = now + delay
        return delay
