"""A clock that moves only when told to: lets retry tests run without really waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["FakeClock"]


class FakeClock:
    """A monotonic clock, a wall clock and a ``sleep`` that advances both instead of sleeping.

    Pass its methods to :class:`usm_bridge.http.HttpClient` (``sleep=clock.sleep,
    clock=clock.monotonic, now=clock.now``); ``sleeps`` then records every wait the client chose,
    so a test can check that ``Retry-After`` was honoured.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self.start = start or datetime(2024, 1, 1, tzinfo=UTC)
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """Seconds since the clock was made."""
        return self.elapsed

    def now(self) -> datetime:
        """The wall-clock time, ``start`` plus the elapsed seconds."""
        return self.start + timedelta(seconds=self.elapsed)

    def sleep(self, seconds: float) -> None:
        """Record the wait and move the clock on by it, at once."""
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Let time pass without a wait being recorded (work taking time, for instance)."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self.elapsed += seconds
