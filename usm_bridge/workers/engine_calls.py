"""The only module that calls the sync engine on a worker's behalf.

A task asks for one instance's cycle or one target's push batch, and gets back what happened,
including "skipped: the lock is held by ...". The engine's exclusion (:mod:`..sync.exclusion`)
makes both run alone across processes: :meth:`SyncEngine.cycle` reads and ingests only and
names the targets it queued writes for, each pushed by its own task on its tool's queue
(:meth:`SyncEngine.push`), so a tool that hangs holds back its own queue only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsmBridgeError
from ..sync.engine import SyncEngine
from ..sync.summary import CycleSummary, PushSummary

__all__ = ["CycleOutcome", "PushOutcome", "cycle", "push"]


@dataclass(frozen=True)
class CycleOutcome:
    """A cycle's summary, and the targets whose push batch still has to be enqueued."""

    summary: CycleSummary
    #: The targets it queued writes for (its own instance included), in name order.
    targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class PushOutcome:
    """What one push batch to ``target`` did; ``skipped`` says why it did nothing."""

    target: str
    pushed: int = 0
    dead_letters: int = 0
    waiting: int = 0
    skipped: str | None = None
    #: The tool did not answer: the batch stopped at the first timeout and handed the rest
    #: back, due after a backoff (see :mod:`..sync.outbox`).
    stalled: str | None = None
    #: Writes held back: deferred after a failure that may pass (``waiting`` not included).
    retried: int = 0
    #: The engine's summary it was read from: what the metrics count
    #: (:meth:`~usm_bridge.sync.metrics.PushCounts.of`, as the daemon counts its pushes).
    summary: PushSummary | None = None


def cycle(engine: SyncEngine, instance: str) -> CycleOutcome:
    """One cycle of ``instance``: read, ingest, route; its pushes are left to push tasks.

    :raises ConfigurationError: ``instance`` is not in the config.
    """
    summary = engine.cycle(instance)
    return CycleOutcome(summary, tuple(sorted(summary.targets)))


def push(engine: SyncEngine, target: str) -> PushOutcome:
    """Push what is due in ``target``'s outbox, unless another process uses its tool.

    :raises ConfigurationError: ``target`` is not in the config.
    :raises UsmBridgeError: the batch could not run (the store failed, the target's connector
        cannot be built): the task fails, the next batch tries again.
    """
    summary = engine.push(target)
    if summary.error is not None:
        raise UsmBridgeError(summary.error)
    return PushOutcome(
        target,
        summary.pushed,
        summary.dead_letters,
        summary.waiting,
        skipped=summary.busy,
        stalled=summary.stalled,
        retried=summary.retried,
        summary=summary,
    )
