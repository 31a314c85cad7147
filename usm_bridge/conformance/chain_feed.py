"""The chain view (units as links, routes between them) as a feed of the report's pass.

Each supplier call of a page that a chain link names adds to its route: volume, whether it is
still open, and its hand-off time (from the upstream call's registration in its tool to the
supplier call's in the supplier's tool), kept exactly in a compact array for the median.
"""

from __future__ import annotations

import statistics
from array import array
from dataclasses import dataclass, field

from ..model import Status
from .context import ReportContext
from .report import ChainRoute, ChainUnit, ChainView

__all__ = ["ChainFeed"]

_DONE = frozenset({Status.FULFILLED, Status.CONFIRMED, Status.CLOSED, Status.CANCELLED})


@dataclass
class _Route:
    #: The place of the route's first link among all links, and the units it joins.
    order: int
    from_unit: str
    to_unit: str
    volume: int = 0
    open: int = 0
    handoffs: array[float] = field(default_factory=lambda: array("d"))


class ChainFeed:
    """Tallies the routes over the pass; :meth:`view` gives the chain view after it."""

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}

    def start(self, context: ReportContext) -> None:
        self._routes = {}

    def feed(self, context: ReportContext) -> None:
        linked_by = context.linked_by
        for stored in context.page_stored_calls():
            supplier = stored.call
            linked = linked_by(supplier.id)
            if linked is None:
                continue
            upstream = context.call(linked.link.upstream_call_id)
            if upstream is None or not context.period.overlaps(supplier.created, supplier.updated):
                continue
            route = self._routes.get(linked.link.route)
            if route is None:
                route = self._routes[linked.link.route] = _Route(
                    linked.order, upstream.unit, supplier.unit
                )
            elif linked.order < route.order:
                # A route the config does not name is shown between the units of its first link.
                route.order, route.from_unit, route.to_unit = (
                    linked.order,
                    upstream.unit,
                    supplier.unit,
                )
            route.volume += 1
            route.open += supplier.status not in _DONE
            route.handoffs.append(max(0.0, (supplier.created - upstream.created).total_seconds()))

    def view(self, context: ReportContext, unit_scores: dict[str, float | None]) -> ChainView:
        """The configured routes in the config's order, then those only the data names, in
        the order their first links were recorded."""
        units = [
            ChainUnit(
                name=name,
                title=context.unit_title(name),
                calls=context.call_count(name),
                score=unit_scores.get(name),
            )
            for name in context.unit_names()
        ]
        routes = {
            route.name: _shown(route.name, route.from_unit, route.to_unit, configured=True)
            for route in context.routes
        }
        for name, seen in sorted(self._routes.items(), key=lambda item: item[1].order):
            shown = routes.get(name)
            if shown is None:
                shown = routes[name] = _shown(name, seen.from_unit, seen.to_unit, configured=False)
            shown.volume, shown.open = seen.volume, seen.open
            if seen.handoffs:
                shown.median_handoff_seconds = float(statistics.median(seen.handoffs))
        return ChainView(units=units, routes=list(routes.values()))


def _shown(name: str, from_unit: str, to_unit: str, *, configured: bool) -> ChainRoute:
    """A route of the view, before its calls are counted."""
    return ChainRoute(
        name=name,
        from_unit=from_unit,
        to_unit=to_unit,
        configured=configured,
        volume=0,
        open=0,
        median_handoff_seconds=None,
    )
