"""The services and agreements an enterprise registers, and what follows from them for a call.

USM: every provider-customer pair has an agreement (written, verbal or implicit); it names the
services covered, the priority classes with their matrix, the target times, and whether the
customer's silence confirms a fulfilled call. The config registers them::

    [services.workplace]
    provider = "facilities"

    [agreements.hr-facilities]
    provider = "facilities"
    customer = "hr"                     # a unit, or an outside party's name
    services = ["workplace"]            # empty: every service of the provider
    implicit_confirmation = "3d"        # leave out: only an explicit confirmation counts
    targets.high = { response = "1h", fulfilment = "1d" }

:class:`Agreements` answers the questions the router, the sync and the conformance report ask:
which agreement a call is made under, which priority matrix applies, what the targets are, and
whether (and when) silence confirms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Protocol

from .call_view import CallView
from .model import Agreement, PriorityMatrix, Service, ServiceTargets, Unit

__all__ = ["Agreements", "RegistryProblem", "registry_problems"]


@dataclass(frozen=True)
class RegistryProblem:
    """Something wrong with the registered services and agreements, with its config key."""

    loc: tuple[str | int, ...]
    message: str


class _HasRegistry(Protocol):
    # What Agreements.of and registry_problems read of a BridgeConfig (this module cannot
    # import config, which imports it).
    @property
    def services(self) -> Mapping[str, Service]: ...
    @property
    def agreements(self) -> Mapping[str, Agreement]: ...
    @property
    def units(self) -> Mapping[str, Unit]: ...
    @property
    def priority(self) -> PriorityMatrix: ...


class _Provided(Protocol):
    @property
    def provider(self) -> str: ...


_Reference = Literal["service", "agreement"]
_Lookup = Callable[[str], _Provided | None]


class Agreements:
    """Lookups over the registered services and agreements (read-only, built once)."""

    def __init__(
        self,
        *,
        services: Mapping[str, Service],
        agreements: Mapping[str, Agreement],
        units: Mapping[str, Unit],
        default_matrix: PriorityMatrix,
    ) -> None:
        self.services = dict(services)
        self.agreements = dict(agreements)
        self.units = dict(units)
        self.default_matrix = default_matrix

    @classmethod
    def of(cls, config: _HasRegistry) -> Agreements:
        """The registry of a loaded :class:`~usm_bridge.config.BridgeConfig`."""
        return cls(
            services=config.services,
            agreements=config.agreements,
            units=config.units,
            default_matrix=config.priority,
        )

    # -- plain lookups --------------------------------------------------------------------------

    def service(self, name: str | None) -> Service | None:
        return None if name is None else self.services.get(name)

    def agreement(self, name: str | None) -> Agreement | None:
        return None if name is None else self.agreements.get(name)

    def provider_of(self, service: str | None) -> str | None:
        """The unit providing a registered service; ``None`` when it is not registered."""
        found = self.service(service)
        return None if found is None else found.provider

    def agreement_for(
        self, *, provider: str, customer: str | None, service: str | None
    ) -> Agreement | None:
        """The agreement between ``customer`` and ``provider`` covering ``service``.

        An agreement listing no services covers all of the provider's. One naming the service
        wins over one covering everything; ``None`` when none or several equally apply (an
        ambiguity ``check`` refuses for registered agreements).
        """
        if customer is None:
            return None
        candidates = [
            a for a in self.agreements.values() if a.provider == provider and a.customer == customer
        ]
        named = [a for a in candidates if service is not None and service in a.services]
        if len(named) == 1:
            return named[0]
        blanket = [a for a in candidates if not a.services]
        return blanket[0] if len(blanket) == 1 and not named else None

    def between(self, *, provider: str, customer: str) -> list[Agreement]:
        """Every agreement of the pair, in config order."""
        return [
            a for a in self.agreements.values() if a.provider == provider and a.customer == customer
        ]

    def agreement_of(self, call: CallView) -> Agreement | None:
        """The agreement ``call`` is made under: the one it names if registered, else the one
        its unit (provider) has with its customer unit for its service."""
        if call.agreement is not None:
            return self.agreement(call.agreement)
        return self.agreement_for(
            provider=call.unit, customer=call.customer_unit, service=call.service
        )

    def provides_under_agreement(self, unit: str) -> bool:
        """Whether a registered agreement has ``unit`` as its provider (its calls then name
        one)."""
        return any(a.provider == unit for a in self.agreements.values())

    def holds_at(self, name: str, value: object, unit: str) -> bool:
        """Whether a call of ``unit`` may carry ``value`` as its ``name`` (``service``,
        ``agreement``): a service it provides, an agreement it is the provider of. Other
        fields, and these when nothing is registered, always may.

        The router copies a service or agreement along a link only where it holds: a
        supplier call is made for the supplier's service under the supplier's agreement
        (USM: every provider-customer pair has its own), not its customer's.
        """
        if name == "service" and self.services and isinstance(value, str):
            return self.provider_of(value) == unit
        if name == "agreement" and self.agreements and isinstance(value, str):
            found = self.agreement(value)
            return found is not None and found.provider == unit
        return True

    # -- what follows for a call ----------------------------------------------------------------

    def matrix_for(self, call: CallView) -> PriorityMatrix:
        """The priority matrix that applies: the agreement's, else the provider unit's, else
        the config's ``[priority]``."""
        return self.matrix_source(call)[0]

    def matrix_source(self, call: CallView) -> tuple[PriorityMatrix, str]:
        """:meth:`matrix_for` with where the matrix comes from, in words for a report:
        ``agreement 'x'``, ``unit 'y'`` or ``the default [priority]``."""
        agreement = self.agreement_of(call)
        if agreement is not None and agreement.priority is not None:
            return agreement.priority, f"agreement {agreement.id!r}"
        return self.unit_matrix(call.unit)

    def unit_matrix(self, unit: str) -> tuple[PriorityMatrix, str]:
        """The unit's own matrix, else the config's ``[priority]``, with where it comes from
        (what ingest derives a priority with: a record names no agreement the bridge trusts
        before it is stored)."""
        found = self.units.get(unit)
        if found is not None and found.priority is not None:
            return found.priority, f"unit {unit!r}"
        return self.default_matrix, "the default [priority]"

    def targets_for(self, call: CallView) -> ServiceTargets | None:
        """The agreement's targets for the call's priority class (stated, else derived)."""
        agreement = self.agreement_of(call)
        if agreement is None:
            return None
        priority = call.priority or self.matrix_for(call).derive(call.impact, call.urgency)
        return None if priority is None else agreement.targets.get(priority)

    def implicit_confirmation_after(self, call: CallView) -> timedelta | None:
        """How long after fulfilment the customer's silence confirms the call; ``None`` when
        its agreement does not allow implicit confirmation (or it has none)."""
        agreement = self.agreement_of(call)
        if agreement is None or agreement.implicit_confirmation is None:
            return None
        return timedelta(seconds=agreement.implicit_confirmation)

    def unknown_references(self, call: CallView) -> list[str]:
        """What ``call`` names that is not registered (reported, never accepted silently).

        Empty when nothing is registered at all: an enterprise that registers no services or
        agreements is not told about each call.
        """
        return [reason for _, reason in self.unknown_fields(call)]

    def unknown_fields(self, call: CallView) -> list[tuple[Literal["service", "agreement"], str]]:
        """:meth:`unknown_references` with the field each is about (for the audit log, which
        tells each value once)."""
        problems: list[tuple[Literal["service", "agreement"], str]] = []
        # The same question of both references: registered, and provided by the call's unit?
        # (the wording differs: a service is provided by a unit, an agreement is with one).
        checks: tuple[tuple[_Reference, str | None, _Lookup | None, str], ...] = (
            ("service", call.service, self.service if self.services else None, "provided by"),
            (
                "agreement",
                call.agreement,
                self.agreement if self.agreements else None,
                "with provider",
            ),
        )
        for field, value, lookup, relation in checks:
            if value is None or lookup is None:
                continue
            found = lookup(value)
            if found is None:
                problems.append((field, f"{field} {value!r} is not registered"))
            elif found.provider != call.unit:
                unit = f"by {call.unit!r}" if field == "service" else repr(call.unit)
                problems.append(
                    (field, f"{field} {value!r} is {relation} {found.provider!r}, not {unit}")
                )
        return problems


def registry_problems(config: _HasRegistry) -> Iterator[RegistryProblem]:
    """Every inconsistency between units, services and agreements, with its config key."""
    units = set(config.units)
    for name, service in config.services.items():
        if service.provider not in units:
            yield RegistryProblem(
                ("services", name, "provider"),
                f"service {name!r} names provider unit {service.provider!r}, which is not "
                f"defined (units: {', '.join(sorted(units)) or 'none'})",
            )
    for name, agreement in config.agreements.items():
        yield from _agreement_problems(name, agreement, config)
    yield from _overlaps(config.agreements)


def _agreement_problems(
    name: str, agreement: Agreement, config: _HasRegistry
) -> Iterator[RegistryProblem]:
    if agreement.provider not in config.units:
        yield RegistryProblem(
            ("agreements", name, "provider"),
            f"agreement {name!r} names provider unit {agreement.provider!r}, which is not defined",
        )
    if agreement.customer == agreement.provider:
        yield RegistryProblem(
            ("agreements", name, "customer"),
            "an agreement is between two parties: customer and provider are the same unit",
        )
    for index, service in enumerate(agreement.services):
        found = config.services.get(service)
        if found is None:
            yield RegistryProblem(
                ("agreements", name, "services", index),
                f"service {service!r} is not registered (add [services.{service}])",
            )
        elif found.provider != agreement.provider:
            yield RegistryProblem(
                ("agreements", name, "services", index),
                f"service {service!r} is provided by {found.provider!r}, not by this "
                f"agreement's provider {agreement.provider!r}",
            )
    if (
        agreement.valid_from is not None
        and agreement.valid_until is not None
        and agreement.valid_until <= agreement.valid_from
    ):
        yield RegistryProblem(
            ("agreements", name, "valid_until"), "valid_until is not after valid_from"
        )
    unit = config.units.get(agreement.provider)
    matrix = agreement.priority or (unit.priority if unit else None) or config.priority
    for priority, targets in agreement.targets.items():
        if priority not in matrix.classes:
            yield RegistryProblem(
                ("agreements", name, "targets", priority),
                f"{priority!r} is not a priority class of the matrix that applies "
                f"({', '.join(matrix.classes)})",
            )
        if (
            targets.response is not None
            and targets.fulfilment is not None
            and targets.response > targets.fulfilment
        ):
            yield RegistryProblem(
                ("agreements", name, "targets", priority),
                "the response target is longer than the fulfilment target",
            )


def _overlaps(agreements: Mapping[str, Agreement]) -> Iterable[RegistryProblem]:
    """Two agreements of one pair that cover the same service make a call's agreement
    ambiguous; so do two blanket agreements of one pair."""
    seen: dict[tuple[str, str, str | None], str] = {}
    for name, agreement in agreements.items():
        keys: list[str | None] = list(agreement.services) or [None]
        for service in keys:
            key = (agreement.provider, agreement.customer, service)
            if key in seen:
                what = f"service {service!r}" if service else "all services"
                yield RegistryProblem(
                    ("agreements", name),
                    f"agreements {seen[key]!r} and {name!r} both cover {what} between "
                    f"{agreement.customer!r} and {agreement.provider!r}",
                )
            else:
                seen[key] = name
