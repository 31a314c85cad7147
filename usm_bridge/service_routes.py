"""Routes that choose their supplier by service: ``to = "by-service"``.

USM: a provider is itself the customer of its suppliers, and what it asks of each is a service
that supplier provides under their agreement. A route with ``to = "by-service"`` therefore does
not name its supplier unit: the call's service does. The supplier is the unit the registered
service names as its provider (``[services.ID] provider = ...``); the supplier call goes to that
unit's only instance, or to the one the route names for it::

    [[routes]]
    name = "facilities-by-service"
    from = "facilities"
    to = "by-service"
    targets = { it = "it-requests" }      # IT has two instances: requests take the calls
    when = { call_type = ["service_request"] }

``check`` (and every command loading the config) refuses such a route when no service is
registered, or a provider unit has several instances and the route names none of them.
:func:`choose_supplier` is the choice itself, shared by the router and ``usm-bridge trace``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .call_view import CallView
from .model import Call

if TYPE_CHECKING:
    from .agreements import Agreements
    from .config import BridgeConfig, RouteConfig

__all__ = [
    "BY_SERVICE",
    "SupplierChoice",
    "by_service_problems",
    "choose_supplier",
    "receiving_instances",
    "reference_problems",
]

#: The ``to`` of a route whose supplier unit is the provider of the call's service.
BY_SERVICE = "by-service"

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class SupplierChoice:
    """Which unit (and instance) the call's service chose, or why none."""

    #: The provider unit of the call's service; ``None`` when no unit can be chosen.
    unit: str | None
    #: The instance receiving the supplier call (set whenever ``unit`` is).
    instance: str | None
    #: One sentence for people: which service chose which unit, or why none.
    reason: str


def choose_supplier(
    route: RouteConfig,
    call: Call,
    registry: Agreements,
    instances_of: Callable[[str], list[str]],
) -> SupplierChoice:
    """The supplier a by-service ``route`` chooses for ``call``.

    :param instances_of: the instance names of a unit, in config order.
    """
    service = call.service
    if service is None:
        return SupplierChoice(None, None, "the call names no service, so no unit provides it")
    provider = registry.provider_of(service)
    if provider is None:
        return SupplierChoice(
            None, None, f"service {service!r} is not registered, so no unit provides it"
        )
    if provider == call.unit:
        return SupplierChoice(
            None,
            None,
            f"service {service!r} is provided by the calling unit {provider!r} itself",
        )
    named = route.targets.get(provider)
    instances = instances_of(provider)
    instance = named if named is not None else (instances[0] if len(instances) == 1 else None)
    if instance is None:  # the config check refuses this; a config changed under a store
        return SupplierChoice(
            None,
            None,
            f"service {service!r} is provided by unit {provider!r}, which has "
            f"{len(instances)} instances and the route names none",
        )
    return SupplierChoice(
        provider,
        instance,
        f"service {service!r} is provided by unit {provider!r} (instance {instance!r})",
    )


def reference_problems(
    registry: Agreements, call: CallView, routes: Iterable[RouteConfig]
) -> list[tuple[str, str]]:
    """``(field, reason)`` for each service or agreement of ``call`` that is not registered
    (:meth:`~usm_bridge.agreements.Agreements.unknown_fields`), except a registered service of
    another unit at a unit that routes by service: there the service names what the unit asks
    of its supplier (the route's very input), not a service the unit claims to provide."""
    brokers = any(route.by_service and route.from_unit == call.unit for route in routes)
    return [
        (field, reason)
        for field, reason in registry.unknown_fields(call)
        if not (
            brokers
            and field == "service"
            and registry.provider_of(call.service) not in (None, call.unit)
        )
    ]


def receiving_instances(config: BridgeConfig, route: RouteConfig) -> list[str]:
    """Every instance that can receive the route's supplier calls: its target (or the ``to``
    unit's only instance), or for a by-service route the one of each other provider unit."""
    if not route.by_service:
        return [route.target or config.instances_of(route.to_unit)[0].name]
    providers = sorted({service.provider for service in config.services.values()})
    out = []
    for unit in providers:
        instances = config.instances_of(unit)
        if unit != route.from_unit and (unit in route.targets or len(instances) == 1):
            out.append(route.targets.get(unit) or instances[0].name)
    return out


def by_service_problems(config: BridgeConfig, route: RouteConfig) -> Iterator[tuple[Loc, str]]:
    """What stops a by-service route from ever choosing a supplier, with the route's key."""
    if BY_SERVICE in config.units:
        yield ("to",), f"a unit is named {BY_SERVICE!r}, which a route's to cannot tell apart"
    if route.target is not None:
        yield (
            ("target",),
            f"a {BY_SERVICE} route has no single target; name one instance per provider unit "
            'in targets = { UNIT = "INSTANCE" }',
        )
    yield from _target_problems(config, route.targets)
    providers = sorted({service.provider for service in config.services.values()})
    if not providers:
        yield (
            ("to",),
            f"a {BY_SERVICE} route chooses its supplier by the call's service, but no service is "
            "registered ([services.ID] with provider = UNIT)",
        )
        return
    others = [unit for unit in providers if unit != route.from_unit]
    if not others:
        yield (
            ("to",),
            f"every registered service is provided by unit {route.from_unit!r}, the route's own "
            "unit: it could never choose a supplier",
        )
    for unit in others:
        if unit in route.targets:
            continue
        count = len(config.instances_of(unit))
        if count != 1:
            yield (
                ("targets",),
                f"unit {unit!r} provides services but has {count} instances, and the route names "
                f'none of them (targets = {{ {unit} = "INSTANCE" }})',
            )


def _target_problems(config: BridgeConfig, targets: Mapping[str, str]) -> Iterator[tuple[Loc, str]]:
    for unit, instance in targets.items():
        if unit not in config.units:
            yield ("targets", unit), f"unit {unit!r} is not defined"
            continue
        found = config.instances.get(instance)
        if found is None or found.unit != unit:
            names = [inst.name for inst in config.instances_of(unit)]
            yield (
                ("targets", unit),
                f"{instance!r} is not an instance of unit {unit!r} (its instances: "
                f"{', '.join(names) or 'none'})",
            )
