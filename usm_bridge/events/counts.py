"""``usm_bridge_events_total{instance,outcome}``: every webhook delivery, by what became of it.

Outcomes: ``accepted`` (202, the instance's cycle woken), ``replayed`` (200, an id already
accepted: ignored), ``unsigned`` (401), ``bad_signature`` (403), ``unknown_instance`` (404),
``too_large`` (413), ``unavailable`` (503: ``usm-bridge serve`` could not reach its broker to
enqueue the cycle; the tool retries; only ``serve`` has that series). A delivery to a name that
is no instance is counted with ``instance=""``: the path is the sender's to choose, and a label
per name would let anyone grow the metrics without bound.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["OUTCOMES", "EventCounts"]

OUTCOMES = (
    "accepted",
    "replayed",
    "unsigned",
    "bad_signature",
    "unknown_instance",
    "too_large",
    "unavailable",
)


class EventCounts:
    """:param enqueues: the receivers enqueue on a broker (``serve``), so ``unavailable`` is
    an outcome they can have; the daemon's never do, and show no such series."""

    def __init__(
        self, registry: CollectorRegistry, instances: list[str], *, enqueues: bool = False
    ) -> None:
        self.total = Counter(
            "usm_bridge_events",
            "Webhook deliveries received, by outcome.",
            ["instance", "outcome"],
            registry=registry,
        )
        for name in instances:
            for outcome in OUTCOMES:
                if outcome != "unknown_instance" and (enqueues or outcome != "unavailable"):
                    self.total.labels(name, outcome)
        self.total.labels("", "unknown_instance")

    def count(self, instance: str, outcome: str) -> None:
        self.total.labels(instance if outcome != "unknown_instance" else "", outcome).inc()
