"""The registry's answers about each call of a report, worked out once per set of the fields
they read.

A report asks the registry (:class:`usm_bridge.agreements.Agreements`) the same questions of
every call: which agreement it is made under, which priority matrix applies, which targets,
whether silence confirms it, what it names that is not registered. Most calls share their
answers (a unit's calls name a handful of services and agreements), and over a million calls
asking afresh each time is a good part of a report's CPU. Each answer is kept here under the
exact fields of the call that the registry's method reads: two calls equal in those fields get
the same answer from the registry, so the kept one is that answer. A key that left out a field
would give a call another call's verdict, which auditors sign: each key is written beside the
method it stands for, and ``tests/conformance/test_conformance_registry_answers.py`` varies
each field alone.

The memory stays flat: the answers kept are dropped whenever :data:`LIMIT` keys are kept.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from ..agreements import Agreements
from ..call_view import CallView
from ..config import RouteConfig
from ..model import Agreement, PriorityMatrix, ServiceTargets
from ..service_routes import reference_problems

__all__ = ["LIMIT", "RegistryAnswers", "remember"]

#: Keys kept per question before the answers are dropped (distinct keys are few in practice).
LIMIT = 4096

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


def remember(kept: dict[_K, _V], key: _K, value: _V) -> _V:
    """Keep ``value`` under ``key`` (emptying ``kept`` first when it is full); return it."""
    if len(kept) >= LIMIT:
        kept.clear()
    kept[key] = value
    return value


@dataclass(frozen=True)
class _Answers:
    """What the registry says of every call equal in :func:`_key`'s fields."""

    agreement: Agreement | None
    matrix: PriorityMatrix
    matrix_from: str
    implicit_after: timedelta | None
    references: tuple[tuple[str, str], ...]


_Key = tuple[str | None, str, str | None, str | None]


def _key(call: CallView) -> _Key:
    # Agreements.agreement_of reads the agreement the call names, else (agreement_for) its unit
    # as provider, its customer unit and its service. matrix_source reads agreement_of and the
    # unit; implicit_confirmation_after reads agreement_of; reference_problems reads the unit,
    # the service and the agreement (and the report's routes, the same for every call).
    return (call.agreement, call.unit, call.customer_unit, call.service)


class RegistryAnswers:
    """:class:`~usm_bridge.agreements.Agreements`' answers about calls, kept by the fields
    each reads (see the module docstring); one per report."""

    def __init__(self, registry: Agreements, routes: Sequence[RouteConfig]) -> None:
        self.registry = registry
        self.routes = routes
        self._answers: dict[_Key, _Answers] = {}
        self._targets: dict[tuple[_Key, str | None, object, object], ServiceTargets | None] = {}

    def _of(self, call: CallView) -> _Answers:
        key = _key(call)
        found = self._answers.get(key)
        if found is None:
            registry = self.registry
            matrix, source = registry.matrix_source(call)
            found = remember(
                self._answers,
                key,
                _Answers(
                    agreement=registry.agreement_of(call),
                    matrix=matrix,
                    matrix_from=source,
                    implicit_after=registry.implicit_confirmation_after(call),
                    references=tuple(reference_problems(registry, call, self.routes)),
                ),
            )
        return found

    def agreement_of(self, call: CallView) -> Agreement | None:
        """:meth:`Agreements.agreement_of <usm_bridge.agreements.Agreements.agreement_of>`."""
        return self._of(call).agreement

    def matrix_for(self, call: CallView) -> PriorityMatrix:
        """:meth:`Agreements.matrix_for <usm_bridge.agreements.Agreements.matrix_for>`."""
        return self._of(call).matrix

    def matrix_source(self, call: CallView) -> tuple[PriorityMatrix, str]:
        """:meth:`Agreements.matrix_source <usm_bridge.agreements.Agreements.matrix_source>`."""
        found = self._of(call)
        return found.matrix, found.matrix_from

    def implicit_confirmation_after(self, call: CallView) -> timedelta | None:
        """:meth:`Agreements.implicit_confirmation_after
        <usm_bridge.agreements.Agreements.implicit_confirmation_after>`."""
        return self._of(call).implicit_after

    def reference_problems(self, call: CallView) -> tuple[tuple[str, str], ...]:
        """:func:`usm_bridge.service_routes.reference_problems` over the report's routes."""
        return self._of(call).references

    def targets_for(self, call: CallView) -> ServiceTargets | None:
        """:meth:`Agreements.targets_for <usm_bridge.agreements.Agreements.targets_for>`."""
        found = self._of(call)
        if found.agreement is None:
            return None  # the registry's answer for a call under no agreement
        # agreement_of's fields, and the priority stated, else derived from impact x urgency
        # through matrix_for (whose fields agreement_of's key holds).
        key = (_key(call), call.priority, call.impact, call.urgency)
        if key in self._targets:
            return self._targets[key]
        return remember(self._targets, key, self.registry.targets_for(call))
