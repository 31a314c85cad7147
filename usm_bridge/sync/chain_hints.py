"""Which instances a cycle's news concerns beyond its own: the suppliers' instances.

A supplier call is confirmed and closed by the closure pass of its own instance's cycle
(:mod:`.closure`), which judges the acceptance by the customer's call. When a customer's call
changes in its own tool (HR's agent sets it fulfilled by mail), nothing changes in the
supplier's tool: with polling, the supplier's next poll sees it; with events, no event comes
from the supplier's tool, so its instance would wait for its poll, minutes away. A cycle that
stored a change therefore wakes the instances that may hold supplier calls of its unit's calls
and that run on events (a ``webhook_secret`` or a watcher): one debounced read each, the same
hint a tool's event gives.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from ..config import BridgeConfig
from ..service_routes import receiving_instances

__all__ = ["supplier_instances"]


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
