"""Time limits of the daemon's jobs: a cycle or a push that runs too long is marked hung.

A thread cannot be killed from outside, and a cycle stopped between two writes could leave
work half done, so a job over its limit is not stopped: it is **marked hung**. Marking it

- logs it once, as a warning naming the instance, the job and how long it has run
  (``event="job_hung"``), and again when it ends at last (``event="job_unhung"``);
- shows it in ``/healthz`` (``hung_for_s`` of the instance), and makes the instance unhealthy;
- frees its worker place: the daemon admits ``max_workers`` cycles that are *not* hung, and
  gives every instance its own threads, so the other instances keep their interval;
- never starts the job a second time while it runs (its slot stays running).

What bounds a hung job in the end are the per-request timeouts of the HTTP layer
(:mod:`usm_bridge.http`: connect and read timeouts, a retry budget) and the drain stopping at
the first request the tool does not answer (:mod:`.outbox`). The limit (``[daemon]
time_limit``, 10 minutes by default) says when the daemon stops waiting for them.

Pure bookkeeping on the daemon's monotonic seconds: no threads, no I/O but the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

__all__ = ["DEFAULT_TIME_LIMIT", "HungJob", "TimeLimits"]

log = logging.getLogger(__name__)

#: ``[daemon] time_limit`` when the config does not set it (seconds).
DEFAULT_TIME_LIMIT = 600.0
#: How far before its limit a job counts as over it (seconds).
_SLACK = 0.001


@dataclass
class _Running:
    started: float
    hung: bool = False


@dataclass(frozen=True)
class HungJob:
    """A job that went over its limit."""

    #: ``"cycle"`` or ``"push"``.
    job: str
    instance: str
    #: Seconds it has run.
    seconds: float


class TimeLimits:
    """The running jobs of the daemon, each keyed by (job, instance), against one limit.

    :param limit: seconds a job may run before it counts as hung.
    """

    def __init__(self, limit: float = DEFAULT_TIME_LIMIT) -> None:
        if limit <= 0:
            raise ValueError("a time limit must be positive")
        self.limit = limit
        self._running: dict[tuple[str, str], _Running] = {}

    def started(self, job: str, instance: str, now: float) -> None:
        """Book the start of ``job`` of ``instance``.

        :raises RuntimeError: that job of that instance is already running (hung or not).
        """
        if (job, instance) in self._running:
            raise RuntimeError(f"the {job} of {instance!r} is already running")
        self._running[(job, instance)] = _Running(started=now)

    def finished(self, job: str, instance: str, now: float) -> None:
        """Book the end of ``job`` of ``instance`` (a hung one says how long it took)."""
        running = self._running.pop((job, instance), None)
        if running is not None and running.hung:
            seconds = now - running.started
            log.warning(
                "the %s of %s ended after %.0fs (hung: over its limit of %.0fs)",
                job, instance, seconds, self.limit,
                extra={"event": "job_unhung", "instance": instance, "job": job,
                       "seconds": round(seconds, 1)},
            )  # fmt: skip

    def check(self, now: float) -> list[HungJob]:
        """Mark the jobs that went over the limit since the last check as hung, logging each
        once; returns them."""
        newly: list[HungJob] = []
        for (job, instance), running in self._running.items():
            seconds = now - running.started
            # Within a millisecond counts: the daemon wakes at next_deadline(), and the sum of
            # floats that brings it there may fall a hair short of it (a busy loop, else).
            if running.hung or seconds < self.limit - _SLACK:
                continue
            running.hung = True
            newly.append(HungJob(job, instance, seconds))
            log.warning(
                "the %s of %s is hung: running for %.0fs, over its limit of %.0fs; the other "
                "instances go on, and it is not started again until it ends",
                job, instance, seconds, self.limit,
                extra={"event": "job_hung", "instance": instance, "job": job,
                       "seconds": round(seconds, 1)},
            )  # fmt: skip
        return newly

    def active(self, job: str | None = None) -> int:
        """How many running jobs (of kind ``job``, or of any) are not hung."""
        return sum(
            1
            for (kind, _), running in self._running.items()
            if not running.hung and job in (None, kind)
        )

    def hung_for(self, instance: str, now: float) -> float | None:
        """How long the longest hung job of ``instance`` has run (``None``: none is hung)."""
        ages = [
            now - running.started
            for (_, name), running in self._running.items()
            if name == instance and running.hung
        ]
        return max(ages) if ages else None

    def next_deadline(self) -> float | None:
        """When the next running job not yet hung goes over its limit (``None``: none)."""
        starts = [running.started for running in self._running.values() if not running.hung]
        return min(starts) + self.limit if starts else None
