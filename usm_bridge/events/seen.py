"""The delivery ids already accepted, to refuse replays: a set whose entries expire.

Memory is bounded twice: an id is forgotten ``ttl`` seconds after it was seen (Jira retries a
delivery within hours, with the same ``X-Atlassian-Webhook-Identifier``), and beyond
``capacity`` ids the oldest go first. Only deliveries whose signature verified are recorded,
so a stranger cannot fill the set with ids to have real deliveries refused.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["SeenDeliveries"]


class SeenDeliveries:
    """Thread-safe; ``clock`` is monotonic seconds (injected in tests)."""

    def __init__(
        self,
        *,
        ttl: float = 6 * 3600.0,
        capacity: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, delivery: str) -> bool:
        """Record ``delivery``; whether it had not been seen within the last ``ttl`` seconds."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            if delivery in self._seen:
                return False
            self._seen[delivery] = now
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            return True

    def forget(self, delivery: str) -> None:
        """Forget ``delivery``: one that was recorded but could not be acted on, so that the
        sender's retry of it is taken."""
        with self._lock:
            self._seen.pop(delivery, None)

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._seen)

    def _expire(self, now: float) -> None:
        # Entries are in the order they were seen: the expired ones are at the front.
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at < self.ttl:
                return
            del self._seen[oldest]
