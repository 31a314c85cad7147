"""The only module that calls the sync engine on a worker's behalf.

A task asks for one instance's cycle or one target's push batch, and gets back what happened,
including "skipped: the lock is held by ...". The engine's exclusion (:mod:`..sync.exclusion`)
already makes both run alone across processes; this module adds nothing to it but a name for
the push batch, which the engine does not have as one call yet (another change adds
``SyncEngine.push``; until then the batch is the drain the engine runs at the end of a cycle,
under the same two locks, in the same order).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sync.engine import SyncEngine
from ..sync.exclusion import push_lock
from ..sync.summary import CycleSummary

__all__ = ["CycleOutcome", "PushOutcome", "cycle", "push"]


@dataclass(frozen=True)
class CycleOutcome:
    """A cycle's summary, and the targets whose push batch still has to be enqueued."""

    summary: CycleSummary
    #: Empty while ``run_cycle`` pushes the targets it touched itself.
    targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class PushOutcome:
    """What one push batch to ``target`` did; ``skipped`` says why it did nothing."""

    target: str
    pushed: int = 0
    dead_letters: int = 0
    waiting: int = 0
    skipped: str | None = None


def cycle(engine: SyncEngine, instance: str) -> CycleOutcome:
    """One cycle of ``instance``: read, ingest, route, and (for now) push what it touched.

    :raises ConfigurationError: ``instance`` is not in the config.
    """
    return CycleOutcome(engine.run_cycle(instance))


def push(engine: SyncEngine, target: str) -> PushOutcome:
    """Push what is due in ``target``'s outbox, unless another process uses its tool.

    :raises ConfigurationError: ``target`` is not in the config.
    :raises StoreError: the store failed (the task fails; the next batch tries again).
    """
    engine.instances.instance(target)
    # The same order as the engine's own drain: the thread lock, then the process-wide lock.
    with engine.instances.lock(target), engine.store.locks.hold(push_lock(target)) as busy:
        if busy is not None:
            return PushOutcome(target, skipped=f"{target} is being pushed to by {busy.who}")
        engine.instances.reload_mapping(target)
        counts = engine.pusher.drain(target, stop=engine.stop, holder=engine.store.locks.identity)
    return PushOutcome(target, counts.pushed, counts.dead, counts.waiting)
