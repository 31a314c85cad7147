"""Owners along the chain: refuse ``owners`` the router could not honour.

Each route says which side of its links owns each shared field (:data:`~usm_bridge.config.
DEFAULT_OWNERS`, a route's ``owners``); the owner's value wins. A field travels down a link
when the customer owns it and up when the supplier does (the work fields assignee, fulfilled
and closed stay each side's own when the supplier owns them; status goes up as the
upstream's waiting and resuming). Along a chain, a unit in the middle must then take a field
from one direction only: if the route into it gives the field to the customer (the unit above
writes it) while the route out of it gives it to the supplier (the unit below writes it), or
two routes out of it whose conditions can hold for the same call both give it to their
suppliers, the unit's value would flip between two owners on every cycle. Such configs are
refused here, with the route and field to change.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import JsonValue

if TYPE_CHECKING:  # config checks routes with this module: no import cycle at run time
    from .config import RouteConfig

__all__ = ["REQUEST_FIELDS", "WRITTEN_FROM_BELOW_FIELDS", "owner_problems", "written_from"]

#: What the customer asks: copied down when the customer owns it (the default), up when the
#: supplier does.
REQUEST_FIELDS = (
    "title",
    "description",
    "requester",
    "customer",
    "impact",
    "urgency",
    "service",
    "agreement",
)
#: Fields a supplier-owned route writes into the upstream call (see the module docstring).
WRITTEN_FROM_BELOW_FIELDS = (*REQUEST_FIELDS,)


def written_from(route: RouteConfig, field: str) -> Literal["above", "below", "own"]:
    """Where ``field`` of a call at ``route``'s two ends comes from, seen from the supplier:
    ``above`` (the customer owns it and it is copied down), ``below`` (the supplier owns it
    and it is copied up), or ``own`` (not copied)."""
    owner = route.owner_of(field)
    if owner == "customer":
        return "above"
    return "below" if field in (*REQUEST_FIELDS, "status") else "own"


def owner_problems(routes: list[RouteConfig]) -> Iterator[tuple[int, str, str]]:
    """``(route index, field, message)`` for each owners entry the router cannot honour."""
    # The defaults never contradict themselves, so every field can be checked on every route.
    for out_index in range(len(routes)):
        for field in (*REQUEST_FIELDS, "status"):
            yield from _middle(routes, out_index, field)
    for first_index, first in enumerate(routes):
        for second_index in range(first_index + 1, len(routes)):
            second = routes[second_index]
            if second.from_unit != first.from_unit or not _may_overlap(first.when, second.when):
                continue
            for field in WRITTEN_FROM_BELOW_FIELDS:
                if field not in first.owners and field not in second.owners:
                    continue
                if written_from(first, field) == written_from(second, field) == "below":
                    index = second_index if field in second.owners else first_index
                    yield (
                        index,
                        field,
                        f"routes {first.name!r} and {second.name!r} both give {field} to their "
                        f"supplier, and a call at {first.from_unit!r} may take both routes: its "
                        f"{field} would come from two suppliers; give it to the customer on one "
                        "of them, or make their 'when' conditions exclude each other",
                    )


def _middle(
    routes: list[RouteConfig], out_index: int, field: str
) -> Iterator[tuple[int, str, str]]:
    out = routes[out_index]
    if written_from(out, field) != "below":
        return
    for in_index, into in enumerate(routes):
        if into.to_unit != out.from_unit or into.from_unit == out.to_unit:
            continue
        if written_from(into, field) != "above":
            continue
        index = out_index if field in out.owners else in_index
        yield (
            index,
            field,
            f"unit {out.from_unit!r} would take {field} both from {into.from_unit!r} above it "
            f"(route {into.name!r} gives it to the customer) and from {out.to_unit!r} below it "
            f"(route {out.name!r} gives it to the supplier); give {field} one owner along the "
            "chain",
        )


def _may_overlap(first: dict[str, JsonValue], second: dict[str, JsonValue]) -> bool:
    """Whether some call could meet both conditions (False only when a shared key's values
    exclude each other)."""
    for key in first.keys() & second.keys():
        a, b = first[key], second[key]
        values_a = a if isinstance(a, list) else [a]
        values_b = b if isinstance(b, list) else [b]
        if not any(value in values_b for value in values_a):
            return False
    return True
