"""Whether a route opens a supplier call for a call, and why it does or does not.

The router decides with :func:`decide_route` and ``usm-bridge trace`` explains with the very
same function, so an explanation can never drift from what the router did. A verdict names
the first reason that stops the route (another ``from`` unit, a supplier of the route already
there, a call already done, no supplier the call's service chooses for a ``by-service`` route,
the supplier unit already upstream in the chain) and, always, every ``when`` condition with the
value the call has for it; a ``by-service`` route's verdict also says which service chose which
unit (:mod:`usm_bridge.service_routes`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import JsonValue

from ..config import RouteConfig
from ..model import Call
from ..service_routes import SupplierChoice
from .calls import DONE

__all__ = ["Blocker", "ConditionCheck", "RouteVerdict", "check_conditions", "decide_route"]

#: A dotted key that leads nowhere in the call (told apart from a field holding ``null``).
_MISSING: Any = object()


@dataclass(frozen=True)
class ConditionCheck:
    """One ``when`` condition against one call."""

    key: str
    expected: JsonValue
    #: The call's value at ``key`` (``None`` also when the field is missing: see ``found``).
    actual: JsonValue
    #: Whether the call has the field at all (a missing field is compared as ``None``).
    found: bool
    holds: bool


class Blocker(StrEnum):
    """Why a route does not open a supplier call, in the order they are checked."""

    OTHER_UNIT = "other_unit"
    SUPPLIER_EXISTS = "supplier_exists"
    CALL_DONE = "call_done"
    #: A ``by-service`` route found no supplier: no service, unregistered, or the calling
    #: unit's own.
    NO_SUPPLIER = "no_supplier"
    UNIT_UPSTREAM = "unit_upstream"
    CONDITION = "condition"


@dataclass(frozen=True)
class RouteVerdict:
    """What one route decides for one call."""

    route: str
    opens: bool
    #: ``None`` when the route opens a supplier call.
    blocker: Blocker | None
    #: One sentence for people: why it opens, or what stopped it.
    reason: str
    conditions: tuple[ConditionCheck, ...]
    #: The unit receiving the supplier call (a ``by-service`` route: the one its service
    #: chose; ``None`` when it chose none).
    supplier_unit: str | None = None
    #: The instance receiving the supplier call, when the verdict chose it.
    target: str | None = None

    @property
    def failed_conditions(self) -> tuple[ConditionCheck, ...]:
        return tuple(check for check in self.conditions if not check.holds)


def _value_at(data: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def check_conditions(when: dict[str, JsonValue], call: Call) -> tuple[ConditionCheck, ...]:
    """Each condition of ``when`` against ``call``, in key order.

    Keys are canonical fields; a dotted key reaches into nested ones (``attributes.jira.x``).
    A condition holds when its value equals the call's, or when it is a list that contains
    the call's value; when the call's value is itself a list, it holds if that list holds a
    wanted value. A missing field compares as ``None``.
    """
    data = call.model_dump(mode="json")
    checks = []
    for key, expected in when.items():
        value = _value_at(data, key)
        found = value is not _MISSING
        actual = value if found else None
        wanted = expected if isinstance(expected, list) else [expected]
        present = actual if isinstance(actual, list) else [actual]
        holds = any(item in wanted for item in present)
        checks.append(ConditionCheck(key, expected, actual, found, holds))
    return tuple(checks)


def _describe(check: ConditionCheck) -> str:
    actual = repr(check.actual) if check.found else "no such field"
    return f"{check.key} is {actual}, the route wants {check.expected!r}"


def decide_route(
    route: RouteConfig,
    call: Call,
    *,
    routes_with_supplier: Collection[str],
    chain_units: Collection[str],
    supplier: SupplierChoice | None = None,
) -> RouteVerdict:
    """Whether ``route`` opens a supplier call for ``call`` now.

    :param routes_with_supplier: the routes that already gave ``call`` a supplier call.
    :param chain_units: the units of ``call`` and of every call upstream of it.
    :param supplier: for a ``by-service`` route, what the call's service chose
        (:func:`usm_bridge.service_routes.choose_supplier`).
    """
    checks = check_conditions(route.when, call)
    unit: str | None = route.to_unit
    target: str | None = None
    chosen = ""
    if route.by_service:
        assert supplier is not None, "a by-service route is decided with its supplier choice"
        unit, target, chosen = supplier.unit, supplier.instance, supplier.reason

    def stopped(blocker: Blocker, reason: str) -> RouteVerdict:
        return RouteVerdict(route.name, False, blocker, reason, checks, unit, target)

    if route.from_unit != call.unit:
        return stopped(
            Blocker.OTHER_UNIT,
            f"the route starts at unit {route.from_unit!r}; this call is at {call.unit!r}",
        )
    if route.name in routes_with_supplier:
        return stopped(Blocker.SUPPLIER_EXISTS, "the call already has a supplier call of it")
    if call.status in DONE:
        return stopped(Blocker.CALL_DONE, f"the call is {call.status.value}")
    if unit is None:
        return stopped(Blocker.NO_SUPPLIER, chosen)
    if unit in chain_units:
        # Routes may form a cycle (A -> B -> A); a chain never returns to a unit.
        return stopped(
            Blocker.UNIT_UPSTREAM,
            (f"{chosen}; " if chosen else "")
            + f"unit {unit!r} is already in the chain upstream of this call",
        )
    failed = [check for check in checks if not check.holds]
    if failed:
        described = "; ".join(_describe(check) for check in failed)
        return stopped(Blocker.CONDITION, f"{chosen}; {described}" if chosen else described)
    reason = "every condition holds" if checks else "the route has no conditions"
    if chosen:
        reason = f"{chosen}; {reason}"
    return RouteVerdict(route.name, True, None, reason, checks, unit, target)
