"""Whether a route opens a supplier call for a call, and why it does or does not.

The router decides with :func:`decide_route` and ``usm-bridge trace`` explains with the very
same function, so an explanation can never drift from what the router did. A verdict names
the first reason that stops the route (another ``from`` unit, a supplier of the route already
there, a call already done, the supplier unit already upstream in the chain) and, always,
every ``when`` condition with the value the call has for it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import JsonValue

from ..config import RouteConfig
from ..model import Call
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
) -> RouteVerdict:
    """Whether ``route`` opens a supplier call for ``call`` now.

    :param routes_with_supplier: the routes that already gave ``call`` a supplier call.
    :param chain_units: the units of ``call`` and of every call upstream of it.
    """
    checks = check_conditions(route.when, call)

    def stopped(blocker: Blocker, reason: str) -> RouteVerdict:
        return RouteVerdict(route.name, False, blocker, reason, checks)

    if route.from_unit != call.unit:
        return stopped(
            Blocker.OTHER_UNIT,
            f"the route starts at unit {route.from_unit!r}; this call is at {call.unit!r}",
        )
    if route.name in routes_with_supplier:
        return stopped(Blocker.SUPPLIER_EXISTS, "the call already has a supplier call of it")
    if call.status in DONE:
        return stopped(Blocker.CALL_DONE, f"the call is {call.status.value}")
    if route.to_unit in chain_units:
        # Routes may form a cycle (A -> B -> A); a chain never returns to a unit.
        return stopped(
            Blocker.UNIT_UPSTREAM,
            f"unit {route.to_unit!r} is already in the chain upstream of this call",
        )
    failed = [check for check in checks if not check.holds]
    if failed:
        return stopped(Blocker.CONDITION, "; ".join(_describe(check) for check in failed))
    reason = "every condition holds" if checks else "the route has no conditions"
    return RouteVerdict(route.name, True, None, reason, checks)
