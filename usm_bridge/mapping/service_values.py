"""A mapping's service table against the services the config registers.

USM: a call is made for a service its provider delivers under an agreement. A mapping turns the
tool's own service field (a ServiceNow offering or business service, a JSM request type, the
address a mail was sent to) into a canonical service id through its ``values`` table; every
id it can produce must then be a registered service of the unit whose tool it reads, or calls
would carry a service nobody registered. ``usm-bridge check`` refuses such a table, naming the
mapping file, line and key; a config that registers no services is not held to it.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..agreements import Agreements
from .loader import Loc
from .spec import raw_text
from .types import Mapping

__all__ = ["service_value_problems"]


def service_value_problems(
    mapping: Mapping, unit: str, registry: Agreements
) -> Iterator[tuple[str, str]]:
    """``(file:line: key, problem)`` for each service id the mapping's ``service`` field can
    give that is not a registered service of ``unit``; nothing when no service is registered."""
    item = mapping.spec.fields.service
    if item is None or not registry.services:
        return
    mine = sorted(name for name, s in registry.services.items() if s.provider == unit)
    produced: list[tuple[Loc, str]] = [
        (("fields", "service", "values", raw_text(raw)), canonical)
        for raw, canonical in (item.values or {}).items()
    ]
    if item.default is not None:
        produced.append((("fields", "service", "default"), item.default))
    for loc, service in produced:
        provider = registry.provider_of(service)
        if provider == unit:
            continue
        why = (
            "is not a registered service"
            if provider is None
            else f"is a service of unit {provider!r}"
        )
        yield (
            mapping.where(loc),
            f"service {service!r} {why}, but the mapping reads unit {unit!r}'s tool "
            f"(its services: {', '.join(mine) or 'none registered'})",
        )
