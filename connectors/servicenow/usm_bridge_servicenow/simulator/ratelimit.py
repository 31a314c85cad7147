"""Inbound REST API rate limiting as a ServiceNow instance applies it: a count per user per hour.

A rule (``sys_rate_limit_rules``) allows ``requests`` per user in each window (an hour on the
platform). Every request the rule covers is answered with ``X-RateLimit-Limit``,
``X-RateLimit-Reset`` (the Unix time the window ends) and ``X-RateLimit-Rule`` (the rule's
sys_id), as ServiceNow documents, and ``X-RateLimit-Remaining``, which it does not document (so
no client of this project relies on it); one over the limit is refused with 429 and
``Retry-After`` (seconds until that time) and does not count.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RateDecision", "RateLimitRule", "RateLimiter"]


@dataclass(frozen=True)
class RateLimitRule:
    """``requests`` allowed per user in each ``window`` seconds (the platform counts per hour)."""

    requests: int
    window: int = 3600
    sys_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if self.requests < 1 or self.window < 1:
            raise ValueError(f"a rate limit needs requests >= 1 and window >= 1, got {self}")


@dataclass(frozen=True)
class RateDecision:
    """Whether a request is served, and the headers that say where its user stands."""

    allowed: bool
    headers: dict[str, str]


class RateLimiter:
    """Counts each user's requests in fixed windows of the instance clock (Unix seconds)."""

    def __init__(self, rule: RateLimitRule, clock: Callable[[], float]) -> None:
        self.rule = rule
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, int]] = {}  # user -> (window start, requests served)
        #: Requests refused with 429 so far (for tests and benchmarks).
        self.refused = 0

    def check(self, user: str) -> RateDecision:
        """Count one request of ``user`` if the rule still allows it."""
        now = self._clock()
        start = int(now // self.rule.window) * self.rule.window
        reset = start + self.rule.window
        with self._lock:
            begun, served = self._counts.get(user, (start, 0))
            if begun != start:
                served = 0
            allowed = served < self.rule.requests
            if allowed:
                served += 1
            else:
                self.refused += 1
            self._counts[user] = (start, served)
        headers = {
            "X-RateLimit-Limit": str(self.rule.requests),
            "X-RateLimit-Remaining": str(self.rule.requests - served),
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Rule": self.rule.sys_id,
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, math.ceil(reset - now)))
        return RateDecision(allowed, headers)
