"""Which call types a route may take and open: refused by ``check`` (and every config load).

A route opens a supplier call: work another unit does for the ``from`` unit's call. USM rules
out two kinds of it (USM.md, "every call is one of four support requests" and "the chain"):

- **A supplier call of type risk.** A supplier call is raised under the agreement between the
  two units, so it is one of the four support requests (wish, rfc, service_request, incident);
  a risk is reported to the improve process, not supplied by another unit. So a route's
  ``call_type`` (the supplier call's type) may not be ``risk`` (nor ``unclassified``), and a
  route whose supplier call inherits the upstream's type may not admit risk calls.
- **Work on an unclassified call.** Nobody works on a call before it is classified, and opening
  a supplier call is work (the upstream then waits on its supplier, which the model refuses
  for an unclassified call). A route whose ``when`` admits ``unclassified`` is refused, and so
  is a route **without any call_type condition**: it admits every type, unclassified (and risk)
  among them. Requiring the condition (rather than having the router skip unclassified calls
  silently) makes each route say which support requests it passes on, which is also what a
  USM practitioner reads the route for; a call that is classified later takes the route then.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .model import CallType

if TYPE_CHECKING:
    from .config import RouteConfig

__all__ = ["route_type_problems"]

#: The types a supplier call can have: USM's four support requests.
_SUPPORT_REQUESTS = sorted(t.value for t in CallType if t.is_support_request)
_EXAMPLE = 'when = { call_type = ["service_request"] }'


def route_type_problems(routes: list[RouteConfig]) -> Iterator[tuple[int, tuple[str, ...], str]]:
    """``(route index, key under the route, message)`` for each route USM rules out."""
    for index, route in enumerate(routes):
        problem = _problem(route)
        if problem is not None:
            yield (index, *problem)


def _problem(route: RouteConfig) -> tuple[tuple[str, ...], str] | None:
    name = f"route {route.name!r}"
    supplier = route.supplier_call_type
    if supplier is not None and not supplier.is_support_request:
        return ("call_type",), (
            f"{name} would open supplier calls of type {supplier.value!r}: a supplier call is "
            f"one of the four support requests ({', '.join(_SUPPORT_REQUESTS)}), raised under "
            "the agreement between the units (USM)"
        )
    if "call_type" not in route.when:
        key = ("when",) if route.when else ()
        return key, (
            f"{name} has no call_type condition, so it admits unclassified calls (and risk): "
            "USM does no work on a call before it is classified, and a supplier call is work; "
            f"say which support requests it passes on, e.g. {_EXAMPLE}"
        )
    admitted = _admitted(route.when["call_type"])
    if CallType.UNCLASSIFIED.value in admitted:
        return ("when", "call_type"), (
            f"{name} admits unclassified calls: USM does no work on a call before it is "
            "classified, and a supplier call is work; leave 'unclassified' out (the call takes "
            "the route once it is classified)"
        )
    if supplier is None and CallType.RISK.value in admitted:
        return ("when", "call_type"), (
            f"{name} admits risk calls and its supplier call takes the upstream's type, so it "
            "would open a supplier call of type risk (a risk is not a support request); leave "
            "'risk' out, or set the route's call_type to the support request the supplier is "
            "asked for"
        )
    return None


def _admitted(condition: object) -> set[str]:
    """The call types a ``when.call_type`` condition admits (a value, or a list of them)."""
    values = condition if isinstance(condition, list) else [condition]
    return {value for value in values if isinstance(value, str)}
