"""Which instances a cycle's news concerns beyond its own: the suppliers' instances.

A supplier call is confirmed and closed by the closure pass of its own instance's cycle
(:mod:`.closure`), which judges the acceptance by the customer's call. When a customer's call
changes in its own tool (HR's agent sets it fulfilled by mail), nothing changes in the
supplier's tool: with polling, the supplier's next poll sees it; with events, no event comes
from the supplier's tool, so its instance would wait for its poll, minutes away. A cycle that
stored a change therefore wakes the instances that may hold supplier calls of its unit's calls
and that run on events (a ``webhook_secret`` or a watcher): one debounced read each, the same
hint a tool's event gives. With Celery workers the cycle task enqueues their cycles instead
(the queue is the debounce: one waits at most).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from ..config import BridgeConfig
from ..service_routes import receiving_instances
from .summary import CycleSummary

__all__ = ["brought_news", "event_driven", "supplier_instances"]


def event_driven(config: BridgeConfig, watched: Collection[str] = ()) -> set[str]:
    """The instances whose tool tells of its changes: a ``webhook_secret``, or a watcher."""
    secret = {name for name, inst in config.instances.items() if inst.webhook_secret is not None}
    return secret | set(watched)


def brought_news(summary: CycleSummary) -> bool:
    """Whether a cycle stored a change that is not the bridge's own write coming back."""
    return summary.ok and not summary.skipped and summary.stored > summary.echoes


def supplier_instances(
    config: BridgeConfig, names: Iterable[str], event_driven: Collection[str]
) -> Mapping[str, frozenset[str]]:
    """For each of ``names``: those of ``event_driven`` (and of ``names``) that can receive
    supplier calls of its unit's calls, by the config's routes."""
    names = list(names)
    found: dict[str, frozenset[str]] = {}
    for name in names:
        unit = config.instances[name].unit
        targets = {
            target
            for route in config.routes
            if route.from_unit == unit
            for target in receiving_instances(config, route)
        }
        found[name] = frozenset(t for t in targets if t in event_driven and t in names)
    return found
