"""The built-in conformance checks (USM.md, "Checks a conformance report can make").

They are a plugin like any organisation's own rules: registered through the ``usm_bridge``
entry point group as ``builtin_conformance_checks``, and blockable with
``USM_BRIDGE_DISABLE_PLUGINS``.

Mapping conformance, per connector instance:

* ``mapping.fields``     which canonical fields the mapping fills, the required ones flagged
* ``mapping.values``     which of the tool's own values fall outside the mapping's tables
* ``mapping.lifecycle``  whether the tool's statuses reach every lifecycle state (and which
  states the mapping declares its tool skips)
* ``mapping.outbound``   whether the outbound direction is unambiguous and complete

Data conformance, per unit, over the calls of the period:

* ``data.classified``          share of calls classified; unclassified calls and their age
* ``data.service-agreement``   calls without a service, or without the agreement they need
* ``data.priority``            priorities that contradict the impact x urgency matrix
* ``data.transitions``         illegal lifecycle transitions observed in the audit log (judged
  through the states the call's mapping declares skipped)
* ``data.incident-confirmation`` incidents closed without the customer's confirmation
* ``data.supplier-links``      supplier calls without their upstream link, or of a wrong type
* ``data.process-flows``       waits and forks between processes no USM workflow pattern has
  (:mod:`usm_bridge.conformance.process_flows`)
* ``data.dead-letters``        records and writes that did not go through, by reason
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from ..attachments.refusals import is_attachment_subject, refused_file
from ..call_view import CallView
from ..connector import RawRecord, VocabularyValue
from ..hookspecs import hookimpl
from ..lifecycle import TRANSITIONS
from ..mapping import (
    Mapping,
    MappingContext,
    field_specs,
    type_value_rule,
    unmapped_values,
)
from ..mapping.passes_through import describe_passes_through, legal_through, statuses_read
from ..mapping.spec import NOT_FOUND, FieldSpec, canonical_text, raw_text
from ..mapping.status import write_status
from ..model import CallType, Status, WaitingOn
from .api import (
    Category,
    CheckOutcome,
    ConformanceCheck,
    Evidence,
    Population,
    Severity,
    Threshold,
    Verdict,
)
from .call_feeds import UnitTally, run_fed
from .confirmation_verdicts import (
    ConfirmationVerdict,
    Standing,
    agreements_of,
    confirmation_verdict,
)
from .context import InstanceInfo, ReportContext, Transition
from .evidence_spool import SpooledEvidence
from .process_flows import ProcessFlowsCheck
from .registry_answers import RegistryAnswers, remember
from .related_rows import LinkView
from .sampling import draw

if TYPE_CHECKING:
    from ..plugins import PluginHost

__all__ = [
    "BUILTIN_CHECKS",
    "ClassifiedCheck",
    "DeadLettersCheck",
    "IncidentConfirmationCheck",
    "MappingFieldsCheck",
    "MappingLifecycleCheck",
    "MappingOutboundCheck",
    "MappingValuesCheck",
    "PriorityCheck",
    "ServiceAgreementCheck",
    "SupplierLinksCheck",
    "TransitionsCheck",
    "usm_bridge_conformance_checks",
]

_TERMINAL_DONE = frozenset({Status.CLOSED, Status.CANCELLED, Status.FULFILLED, Status.CONFIRMED})


class _Check(ABC):
    """Shared plumbing of the built-in checks: building outcomes."""

    id: str
    title: str
    category: ClassVar[Category]
    #: How much the check weighs in the scores (:mod:`usm_bridge.conformance.scoring`).
    severity: ClassVar[Severity] = "medium"

    def outcome(
        self,
        verdict: Verdict,
        summary: str,
        *,
        unit: str | None,
        instance: str | None = None,
        evidence: Iterable[Evidence] = (),
        count: int | None = None,
        metrics: dict[str, float | int | str] | None = None,
        population: Population | None = None,
    ) -> CheckOutcome:
        # Every item is kept: the JSON and the exceptions export list all of them; HTML and
        # Markdown show the first. Spooled items stay on disk (a million would not fit).
        items = evidence if isinstance(evidence, SpooledEvidence) else list(evidence)
        if verdict == "n/a" and population is not None:
            population = population.model_copy(update={"rule": NOTHING_TESTED})
        return CheckOutcome(
            check_id=self.id,
            title=self.title,
            verdict=verdict,
            summary=summary,
            unit=unit,
            instance=instance,
            category=self.category,
            evidence=items,
            count=len(items) if count is None else count,
            metrics=metrics or {},
            severity=self.severity,
            population=population,
        )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


#: The rule of every outcome whose population is empty.
NOTHING_TESTED = "Nothing was tested, so the check does not apply (N/A, never a pass)"


def _own_rule(items: str, size: int, exceptions: int, rule: str) -> Population:
    """What a check that decides its verdict by its own rule (no threshold) tested."""
    return Population(
        items=items,
        size=size,
        exceptions=exceptions,
        rate=exceptions / size if size else None,
        rule=f"By the check's own rule: {rule}",
    )


# ---------------------------------------------------------------------------------------------
# mapping conformance
# ---------------------------------------------------------------------------------------------


class _MappingCheck(_Check):
    category: ClassVar[Category] = "mapping"

    def run(self, context: ReportContext) -> list[CheckOutcome]:
        outcomes = []
        for info in context.instances.values():
            if info.mapping is None:
                outcomes.append(
                    self.outcome(
                        "fail",
                        f"the mapping cannot be loaded: {info.mapping_error}",
                        unit=info.unit,
                        instance=info.name,
                    )
                )
            else:
                outcomes.append(self.check(context, info, info.mapping))
        return outcomes

    @abstractmethod
    def check(self, context: ReportContext, info: InstanceInfo, mapping: Mapping) -> CheckOutcome:
        """The outcome of this check for one instance's mapping."""

    def of_instance(
        self, info: InstanceInfo, verdict: Verdict, summary: str, **fields: Any
    ) -> CheckOutcome:
        """An outcome about the instance (and its unit)."""
        return self.outcome(verdict, summary, unit=info.unit, instance=info.name, **fields)


class MappingFieldsCheck(_MappingCheck):
    """Which canonical fields the mapping fills; a required one missing fails, a recommended
    one missing warns."""

    id = "mapping.fields"
    title = "The mapping fills the canonical fields"
    #: Without these a call cannot be told apart, followed, or measured.
    REQUIRED: ClassVar[tuple[str, ...]] = ("title", "status", "created")
    #: USM needs these (type, service, impact x urgency, requester); a unit may fill them later.
    RECOMMENDED: ClassVar[tuple[str, ...]] = (
        "call_type",
        "description",
        "service",
        "impact",
        "urgency",
        "requester",
        "updated",
    )

    def check(self, context: ReportContext, info: InstanceInfo, mapping: Mapping) -> CheckOutcome:
        spec = mapping.spec
        mapped = {label.split(".")[0] for _, label, _, _ in field_specs(spec)}
        mapped.discard("attributes")
        if spec.classify.rules or spec.classify.default is not CallType.UNCLASSIFIED:
            mapped.add("call_type")
        if spec.fields.priority is None and {"impact", "urgency"} <= mapped:
            mapped.add("priority")  # derived through the matrix
        evidence = [
            Evidence(detail=f"required field {name} is not mapped")
            for name in self.REQUIRED
            if name not in mapped
        ] + [
            Evidence(detail=f"recommended field {name} is not mapped")
            for name in self.RECOMMENDED
            if name not in mapped
        ]
        required_missing = [n for n in self.REQUIRED if n not in mapped]
        recommended_missing = [n for n in self.RECOMMENDED if n not in mapped]
        order = [*self.REQUIRED, *self.RECOMMENDED]
        shown = sorted(mapped, key=lambda n: (order.index(n) if n in order else len(order), n))
        verdict: Verdict = "fail" if required_missing else "warn" if recommended_missing else "pass"
        tested = _own_rule(
            "required and recommended canonical fields",
            len(order),
            len(evidence),
            "fail when a required field is not mapped, warn when a "
            "recommended one is not, else pass",
        )
        summary = f"{mapping.name} fills {len(shown)} canonical fields"
        if required_missing:
            summary += f"; required missing: {', '.join(required_missing)}"
        if recommended_missing:
            summary += f"; recommended missing: {', '.join(recommended_missing)}"
        return self.outcome(
            verdict,
            summary,
            unit=info.unit,
            instance=info.name,
            evidence=evidence,
            metrics={
                "mapped": ", ".join(f"{n}*" if n in self.REQUIRED else n for n in shown),
                "required_missing": ", ".join(required_missing),
                "recommended_missing": ", ".join(recommended_missing),
            },
            population=tested,
        )


def _run_transforms(item: FieldSpec[Any], value: Any, transforms: dict[str, Any]) -> Any:
    for ref in item.transform:
        func = transforms.get(ref.name)
        if func is None:
            raise ValueError(f"transform {ref.name!r} is not installed")
        value = func(value, **ref.args)
        if value is None:
            return None
    return value


def _in_table(item: FieldSpec[Any], value: VocabularyValue, transforms: dict[str, Any]) -> bool:
    """Whether the tool's value (by its value or its label) has a row in the field's table."""
    for candidate in (value.value, value.label):
        if candidate is None:
            continue
        try:
            transformed = _run_transforms(item, candidate, transforms)
        except Exception:  # noqa: S112 - a value a transform refuses is simply not mapped
            continue
        if transformed is not None and item.lookup(transformed) is not NOT_FOUND:
            return True
    return False


def _show(value: VocabularyValue) -> str:
    shown = repr(value.value)
    if value.label and value.label != value.value:
        shown += f" ({value.label})"
    if value.scope:
        shown += f" in {value.scope}"
    return shown


def _installed_plugins() -> PluginHost:
    """Every installed plugin: a report built without a host still knows each connector's
    transforms (a tool's values would otherwise all look unmapped)."""
    from ..plugins import PluginHost

    return PluginHost()


class MappingValuesCheck(_MappingCheck):
    """Which of the tool's own values (discovered live, or from a saved discovery) and of the
    values seen in dead-lettered records fall outside the mapping's value tables."""

    id = "mapping.values"
    title = "The tool's values are mapped"
    severity = "high"

    def check(self, context: ReportContext, info: InstanceInfo, mapping: Mapping) -> CheckOutcome:
        transforms = (context.host or _installed_plugins()).transforms()
        spec = mapping.spec
        evidence: list[Evidence] = []
        metrics: dict[str, float | int | str] = {}
        tested = 0
        vocab = info.vocabulary
        if vocab is not None:
            lists: list[tuple[str, list[VocabularyValue], FieldSpec[Any] | None]] = [
                ("status", vocab.statuses, spec.fields.status),
                ("priority", vocab.priorities, spec.fields.priority),
            ]
            labels = {label: item for _, label, item, _ in field_specs(spec)}
            for name, values in vocab.other.items():
                lists.append((name, values, labels.get(name)))
            for name, values, item in lists:
                if not values:
                    continue
                if item is None or item.values is None:
                    metrics[f"{name}_values"] = f"{len(values)} known, not mapped" + (
                        " (derived from impact x urgency)" if name == "priority" else ""
                    )
                    continue
                tested += len(values)
                outside = [v for v in values if not _in_table(item, v, transforms)]
                metrics[f"{name}_values"] = f"{len(values) - len(outside)}/{len(values)} mapped"
                evidence += [
                    Evidence(detail=f"{name} {_show(v)} is not in the mapping's table")
                    for v in outside
                ]
            if vocab.types:
                tested += len(vocab.types)
                evidence += self._types(mapping, vocab.types, metrics)
        observed = self._observed(context, info, mapping, transforms)
        tested += len(observed)
        evidence += observed
        if observed:
            metrics["values_in_dead_letters"] = len(observed)
        if evidence:
            verdict: Verdict = "fail"
            summary = f"{_plural(len(evidence), 'value')} of the tool fall outside {mapping.name}"
        elif vocab is None:
            verdict = "warn"
            summary = (
                f"the tool's vocabulary is unknown ({info.vocabulary_note or 'not discovered'}); "
                "no value seen in the data falls outside the mapping"
            )
        elif not tested:
            verdict = "n/a"
            summary = f"not applicable: no value the tool knows falls in a table of {mapping.name}"
        else:
            verdict = "pass"
            summary = f"every value the tool knows is mapped by {mapping.name}"
        metrics["vocabulary"] = info.vocabulary_source
        tested_values = _own_rule(
            "values of the tool in mapped tables (known or seen in dead letters)",
            tested,
            len(evidence),
            "fail when a value falls outside the mapping, warn "
            "when the tool's vocabulary is unknown, else pass",
        )
        return self.of_instance(
            info, verdict, summary, evidence=evidence, metrics=metrics, population=tested_values
        )

    @staticmethod
    def _types(
        mapping: Mapping, types: list[VocabularyValue], metrics: dict[str, float | int | str]
    ) -> list[Evidence]:
        # The engine's own rule matching decides, on the record the type stands for.
        classify = mapping.spec.classify
        by_rule = [t for t in types if type_value_rule(mapping, (t.value, t.label)) is not None]
        rest = [t for t in types if t not in by_rule]
        metrics["type_values"] = f"{len(by_rule)}/{len(types)} named by a rule"
        if classify.default is not CallType.UNCLASSIFIED:
            if rest:
                metrics["type_default"] = f"{len(rest)} fall to {classify.default.value}"
            return []
        return [
            Evidence(detail=f"type {_show(t)} matches no classification rule (stays unclassified)")
            for t in rest
        ]

    @staticmethod
    def _observed(
        context: ReportContext, info: InstanceInfo, mapping: Mapping, transforms: dict[str, Any]
    ) -> list[Evidence]:
        """Values of dead-lettered records of the instance that the tables do not know."""
        mapping_context = MappingContext(
            unit=info.unit,
            instance=info.name,
            transforms=transforms,
            priority_matrix=context.registry.unit_matrix(info.unit)[0],
        )
        seen: Counter[tuple[str, str]] = Counter()
        for letter in context.dead_letters_in_period():
            if letter.instance != info.name or letter.stage.value == "push":
                continue
            try:
                record = RawRecord.model_validate(letter.payload)
                found = unmapped_values(mapping, record, mapping_context)
            except Exception:  # noqa: S112 - a payload that is no record has no values to show
                continue
            for label, value in found.items():
                seen[(label, raw_text(value)[:200])] += 1
        return [
            Evidence(
                detail=f"{label} {value!r} seen in {_plural(count, 'dead-lettered record')} "
                "is not in the mapping's table"
            )
            for (label, value), count in sorted(seen.items())
        ]


class MappingLifecycleCheck(_MappingCheck):
    """Whether the tool's statuses reach every state of the USM call lifecycle, and lead from
    registration to an end. A state the mapping declares its tool skips
    (``fields.status.passes_through``) is passed through, not missing; the summary and the
    ``passes_through`` metric show the declaration, once per mapping."""

    id = "mapping.lifecycle"
    title = "Every lifecycle state is reachable"
    severity = "high"

    def check(self, context: ReportContext, info: InstanceInfo, mapping: Mapping) -> CheckOutcome:
        status = mapping.spec.fields.status
        mapped = statuses_read(status)
        if not mapped:
            return self.outcome(
                "fail",
                f"{mapping.name} maps no status: every call stays registered",
                unit=info.unit,
                instance=info.name,
                evidence=[Evidence(detail="no status field")],
            )
        # States the tool's workflow skips, declared by the mapping: passed through, not missing.
        skipped = status.passes_through if status is not None else {}
        passed = {state for states in skipped.values() for state in states}
        missing = [s for s in Status if s not in mapped and s not in passed]
        entry = next(
            (s for s in (Status.REGISTERED, Status.CLASSIFIED, Status.IN_PROGRESS) if s in mapped),
            None,
        )
        reached: set[Status] = set()
        if entry is not None:
            reached, todo = {entry}, list[Status]([entry])
            while todo:
                here = todo.pop()
                through = {k for k, states in skipped.items() if legal_through(here, k, states)}
                for nxt in TRANSITIONS[here] | through:
                    if nxt in mapped and nxt not in reached:
                        reached.add(nxt)
                        todo.append(nxt)
        # A declared skip is a property of the mapping, not a finding: summary and metrics only.
        declared = describe_passes_through(status)
        evidence = [
            Evidence(detail=f"state {s.value} has no status in the tool") for s in missing
        ] + [
            Evidence(detail=f"state {s.value} is mapped but cannot be reached from {entry.value}")
            for s in sorted(mapped - reached, key=list(Status).index)
            if entry is not None
        ]
        ends = reached & {Status.CLOSED, Status.CANCELLED}
        if entry is None or not ends:
            verdict: Verdict = "fail"
            summary = f"{mapping.name}: no path from registration to closing a call"
        elif missing:
            verdict = "warn"
            summary = f"{len(mapped)} of {len(Status)} states reachable; missing: " + ", ".join(
                s.value for s in missing
            )
        else:
            verdict = "pass"
            summary = f"all {len(Status)} lifecycle states are reachable"
        if declared and entry is not None:
            summary += "; " + "; ".join(declared) + " (declared by the mapping)"
        metrics: dict[str, float | int | str] = {
            "states_mapped": len(mapped),
            "states_reachable": len(reached),
        }
        if declared:
            metrics["passes_through"] = "; ".join(declared)
        return self.of_instance(
            info,
            verdict,
            summary,
            evidence=evidence,
            metrics=metrics,
            population=_own_rule(
                "USM lifecycle states",
                len(Status),
                len(evidence),
                "fail when no path leads from registration to an "
                "end, warn when a state has no status in the tool, else pass",
            ),
        )


class MappingOutboundCheck(_MappingCheck):
    """Whether writing back is unambiguous (one raw value per canonical value) and which
    lifecycle states the bridge could not write into the tool."""

    id = "mapping.outbound"
    title = "The outbound direction is unambiguous"

    def check(self, context: ReportContext, info: InstanceInfo, mapping: Mapping) -> CheckOutcome:
        evidence: list[Evidence] = []
        tested = 0
        for _, label, item, writable in field_specs(mapping.spec):
            if not writable or item.values is None:
                continue
            tested += len({canonical_text(c) for c in item.values.values()})
            for canonical, raws in item.ambiguities().items():
                evidence.append(
                    Evidence(
                        detail=f"{label}: {canonical!r} could be written as any of "
                        f"{[raw_text(r) for r in raws]}"
                    )
                )
        ambiguous = len(evidence)
        status = mapping.spec.fields.status
        unwritable: list[str] = []
        if status is not None and not status.read_only:
            tested += len(Status)
            for state in Status:
                if state is Status.WAITING:
                    keys = ["waiting", *(f"waiting:{w.value}" for w in WaitingOn)]
                    if all(write_status(status, key)[0] is NOT_FOUND for key in keys):
                        unwritable.append(state.value)
                elif write_status(status, state.value)[0] is NOT_FOUND:
                    unwritable.append(state.value)
        evidence += [
            Evidence(detail=f"state {state} cannot be written into the tool")
            for state in unwritable
        ]
        if ambiguous:
            verdict: Verdict = "fail"
            summary = f"{_plural(ambiguous, 'canonical value')} with several raw values to write"
        elif unwritable:
            verdict = "warn"
            summary = "unambiguous; states the tool cannot receive: " + ", ".join(unwritable)
        elif not tested:
            verdict = "n/a"
            summary = "not applicable: no value table and no status is written back"
        elif status is None or status.read_only:
            verdict = "pass"
            summary = "unambiguous; the status is not written back"
        else:
            verdict = "pass"
            summary = "unambiguous, and every lifecycle state can be written"
        return self.outcome(
            verdict,
            summary,
            unit=info.unit,
            instance=info.name,
            evidence=evidence,
            count=len(evidence),
            population=_own_rule(
                "canonical values and lifecycle states written back",
                tested,
                len(evidence),
                "fail when a canonical value has several raw "
                "values to write, warn when a state cannot be written, else pass",
            ),
        )


# ---------------------------------------------------------------------------------------------
# data conformance
# ---------------------------------------------------------------------------------------------


#: One item of a check's population: its stable key (for sampling), its call, and what the
#: item is when it is not the call itself (a transition); "" for the call.
PopulationItem = tuple[str, CallView, str]


def _call_key(call: CallView) -> str:
    # The tool's own reference sorts the same in every store; the bridge's id breaks ties.
    if call.source is not None:
        return f"{call.source.instance}/{call.source.remote_key or call.source.remote_id}/{call.id}"
    return f"/{call.id}"


class _DataCheck(_Check):
    """A check over each unit's calls in the period: the exceptions among its population, and
    the verdict the exception rate gives against the threshold (the config's, else
    ``threshold``)."""

    category: ClassVar[Category] = "data"
    #: Summary when the unit's calls are all fine.
    clean: ClassVar[str] = "no finding"
    #: What the population is, plural (``population()`` lists it).
    items: ClassVar[str] = "calls"
    severity: ClassVar[Severity] = "high"
    #: The default: any exception fails. ``[conformance.thresholds]`` overrides it.
    threshold: ClassVar[Threshold] = Threshold(pass_up_to=0.0, warn_up_to=0.0)

    _tallies: dict[str, UnitTally]

    def run(self, context: ReportContext) -> list[CheckOutcome]:
        return run_fed(context, self)

    def start(self, context: ReportContext) -> None:
        self._tallies = {}

    def feed(self, context: ReportContext) -> None:
        for unit, calls in context.page_calls().items():
            tally = self._tallies.get(unit)
            if tally is None:
                tally = self._tallies[unit] = UnitTally.spooled(context)
            self.tally(context, calls, tally)

    def tally(self, context: ReportContext, calls: list[CallView], tally: UnitTally) -> None:
        """Add some of a unit's calls (of one page, in order) to its tally."""
        tally.calls += len(calls)
        if context.sample is None and self.judge_calls(context, calls, tally):
            return
        # The items themselves (each with its sampling key) only for a sample; else a count.
        population = self.population(context, calls) if context.sample is not None else None
        tally.population += (
            len(population) if population is not None else self.population_size(context, calls)
        )
        keep = self.keeper(context, tally)
        for call, detail in self.findings(context, calls):
            keep(call, detail)
        self.count(context, calls, tally)
        if population is not None:
            tally.items += [
                (key, (what, context.evidence(call, ""))) for key, call, what in population
            ]

    def settle(self, context: ReportContext, tally: UnitTally) -> None:
        """Complete a unit's tally once all its calls are in (for findings that depend on all
        of them)."""

    def finish(self, context: ReportContext) -> list[CheckOutcome]:
        outcomes = []
        for unit in context.unit_names():
            tally = self._tallies.get(unit) or UnitTally()
            self.settle(context, tally)
            found = len(tally.evidence)
            threshold, source = context.conformance.threshold_and_source(
                self.id, unit, self.threshold
            )
            measured = self._measured(tally.population, found, threshold)
            measured.threshold_from = source
            metrics = self.metrics(tally)
            if not tally.population:
                # An empty population proves nothing: not applicable, never a pass.
                outcome = self.outcome(
                    "n/a", self.nothing_to_test(tally.calls), unit=unit, metrics=metrics or None
                )
            elif found:
                outcome = self.outcome(
                    self.verdict(tally, threshold.verdict(measured.rate or 0.0)),
                    self.summary(found, tally.calls),
                    unit=unit,
                    evidence=tally.evidence,
                    metrics=metrics,
                )
            else:
                outcome = self.outcome("pass", f"{self.clean} ({_plural(tally.calls, 'call')})",
                                       unit=unit, metrics=metrics)  # fmt: skip
            outcome.population = measured
            if context.sample is not None:
                outcome.sample = self._sample(context, tally, unit)
            outcomes.append(outcome)
        return outcomes

    def _measured(self, size: int, exceptions: int, threshold: Threshold) -> Population:
        extra = self.extra_rule()
        rule = threshold.sentence() + (f"; {extra}" if extra else "")
        if not size:
            rule = NOTHING_TESTED
        return Population(
            items=self.items,
            size=size,
            exceptions=exceptions,
            rate=exceptions / size if size else None,
            threshold=threshold,
            rule=rule,
        )

    def _sample(self, context: ReportContext, tally: UnitTally, unit: str) -> list[Evidence]:
        assert context.sample is not None
        chosen = draw(tally.items, context.sample, self.id, unit)
        sample = []
        for what, evidence in chosen:
            own = tally.found.get(evidence.call_id or "", [])
            if what and what in own:
                detail = f"exception: {what}"
            elif not what and own:
                detail = "exception: " + "; ".join(own)
            else:
                detail = "no exception found" + (f": {what}" if what else "")
            sample.append(evidence.model_copy(update={"detail": detail}))
        return sample

    def extra_rule(self) -> str:
        """A rule the check applies on top of the threshold, said after it ("" for none)."""
        return ""

    def nothing_to_test(self, calls: int) -> str:
        """The summary of an empty population: no calls, or none the check applies to."""
        if not calls:
            return "not applicable: no calls in the period"
        return f"not applicable: no {self.items} among {_plural(calls, 'call')}"

    def judge_calls(self, context: ReportContext, calls: list[CallView], tally: UnitTally) -> bool:
        """Add the population, the findings (through :meth:`keep`) and the figures of some of
        a unit's calls to its tally in one pass, each call judged once; ``False`` when the
        check has no such pass (the default): then :meth:`population_size`,
        :meth:`findings` and :meth:`count` are asked apart. Not asked for a sample (each
        item is listed with its key then)."""
        return False

    def population(self, context: ReportContext, calls: list[CallView]) -> list[PopulationItem]:
        """Every item the check tests (by default the calls ``tests`` accepts); exceptions are
        among them."""
        return [(_call_key(call), call, "") for call in calls if self.tests(context, call)]

    def population_size(self, context: ReportContext, calls: list[CallView]) -> int:
        """How many items :meth:`population` lists, counted without building them (no key
        per call: a million calls tallied without a sample need only the count)."""
        if type(self).population is not _DataCheck.population:
            return len(self.population(context, calls))  # a check's own population
        if type(self).tests is _DataCheck.tests:
            return len(calls)  # every call: not asked of each
        return sum(1 for call in calls if self.tests(context, call))

    def tests(self, context: ReportContext, call: CallView) -> bool:
        """Whether the call is in the population (every call, unless the check says)."""
        return True

    def evidence_of(self, context: ReportContext, call: CallView, detail: str) -> Evidence:
        """The evidence of one finding; a check whose findings have their own time says it."""
        return context.evidence(call, detail)

    def evidence_json_of(self, context: ReportContext, call: CallView, detail: str) -> str:
        """:meth:`evidence_of` as the spool keeps it (its ``model_dump_json(indent=2)``)."""
        if type(self).evidence_of is _DataCheck.evidence_of:
            return context.evidence_json(call, detail)  # the same text, without the model
        return self.evidence_of(context, call, detail).model_dump_json(indent=2)

    def keeper(self, context: ReportContext, tally: UnitTally) -> Callable[[CallView, str], None]:
        """:meth:`keep` for the findings of one page of the unit's calls: what it decides for
        each finding (spooled? the default evidence? a sample?) decided once for all of them
        (a report over a million calls keeps well over a million findings)."""
        spooled = tally.evidence
        if (
            context.sample is None
            and isinstance(spooled, SpooledEvidence)
            and type(self).evidence_json_of is _DataCheck.evidence_json_of
            and type(self).evidence_of is _DataCheck.evidence_of
        ):
            append, write = spooled.append_json, context.evidence_json
            return lambda call, detail: append(write(call, detail))
        return functools.partial(self.keep, context, tally)

    def keep(
        self,
        context: ReportContext,
        tally: UnitTally,
        call: CallView,
        detail: str,
        at: datetime | None = None,
    ) -> None:
        """Add one finding to the unit's tally: its evidence, and its words for a sample.

        :param at: the finding's own time, where it has one (its evidence is then the call's
            with that time, as :meth:`evidence_of` gives it).
        """
        if isinstance(tally.evidence, SpooledEvidence):
            if at is None:
                tally.evidence.append_json(self.evidence_json_of(context, call, detail))
            else:
                tally.evidence.append_json(context.evidence_json(call, detail, at))
        else:
            evidence = self.evidence_of(context, call, detail)
            if at is not None:
                evidence = evidence.model_copy(update={"at": at})
            tally.evidence.append(evidence)
        if context.sample is not None:
            tally.found.setdefault(call.id, []).append(detail)

    @abstractmethod
    def findings(
        self, context: ReportContext, calls: list[CallView]
    ) -> Iterator[tuple[CallView, str]]:
        """Each call that breaks the rule, with what is wrong."""

    def verdict(self, tally: UnitTally, judged: Verdict) -> Verdict:
        """The verdict, from the one the threshold gives (``judged``)."""
        return judged

    def summary(self, found: int, total: int) -> str:
        return f"{found} of {_plural(total, 'call')}"

    def count(self, context: ReportContext, calls: list[CallView], tally: UnitTally) -> None:
        """Add the figures of some of a unit's calls to its tally, for :meth:`metrics`."""

    def metrics(self, tally: UnitTally) -> dict[str, float | int | str]:
        return {}


def _end_of(context: ReportContext, call: CallView) -> datetime:
    if call.status in (Status.CLOSED, Status.CANCELLED):
        return call.closed or call.updated
    end = context.now
    if context.period.until is not None:
        end = min(end, context.period.until)
    return max(end, call.created)


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.1f} days"


class ClassifiedCheck(_DataCheck):
    """Every call gets exactly one USM type; unclassified calls are counted and aged. One left
    unclassified longer than ``max_age`` fails."""

    id = "data.classified"
    title = "Calls are classified"
    clean = "every call is classified"
    # Unclassified calls warn however many there are: their age decides the fail.
    threshold = Threshold(pass_up_to=0.0, warn_up_to=1.0)
    #: How long a call may stay unclassified before it fails the check.
    max_age: timedelta = timedelta(days=2)

    def findings(
        self, context: ReportContext, calls: list[CallView]
    ) -> Iterator[tuple[CallView, str]]:
        for call, age in self._unclassified(context, calls):
            yield call, f"unclassified for {_age(age)}"

    @staticmethod
    def _unclassified(
        context: ReportContext, calls: list[CallView]
    ) -> Iterator[tuple[CallView, timedelta]]:
        """Each unclassified call, with how long it stayed so."""
        for call in calls:
            if call.call_type is CallType.UNCLASSIFIED:
                yield call, _end_of(context, call) - call.created

    def judge_calls(self, context: ReportContext, calls: list[CallView], tally: UnitTally) -> bool:
        # findings() and count() in one pass.
        tally.population += self.population_size(context, calls)
        for call, age in self._unclassified(context, calls):
            self.keep(context, tally, call, f"unclassified for {_age(age)}")
            self._count_one(tally, age)
        return True

    def _count_one(self, tally: UnitTally, age: timedelta) -> None:
        tally.counts["unclassified"] += 1
        tally.counts["too_old"] += age > self.max_age
        tally.most("oldest", age.total_seconds() / 3600)

    def verdict(self, tally: UnitTally, judged: Verdict) -> Verdict:
        return "fail" if tally.counts["too_old"] else judged

    def extra_rule(self) -> str:
        return f"any call unclassified for more than {_age(self.max_age)} fails"

    def summary(self, found: int, total: int) -> str:
        return f"{found} of {_plural(total, 'call')} unclassified"

    def count(self, context: ReportContext, calls: list[CallView], tally: UnitTally) -> None:
        for _, age in self._unclassified(context, calls):
            self._count_one(tally, age)

    def metrics(self, tally: UnitTally) -> dict[str, float | int | str]:
        if not tally.calls:
            return {}
        unclassified = tally.counts["unclassified"]
        return {
            "share_classified": round(100 * (tally.calls - unclassified) / tally.calls, 1),
            "unclassified": unclassified,
            "oldest_unclassified_hours": round(tally.maxima["oldest"], 1) if unclassified else 0,
        }


class ServiceAgreementCheck(_DataCheck):
    """Every call names a service; an rfc, and every call of a unit that works with agreements,
    names its agreement (or the registry finds the one it is made under); what it names is
    registered, where the config registers services or agreements, and is its unit's."""

    id = "data.service-agreement"
    title = "Calls name their service and agreement"
    clean = "every call names its service (and agreement where needed)"
    severity = "medium"

    def findings(
        self, context: ReportContext, calls: list[CallView]
    ) -> Iterator[tuple[CallView, str]]:
        named = any(call.agreement for call in calls)
        for call in calls:
            found = self._problems(context, call).detail(named)
            if found:
                yield call, found

    def tally(self, context: ReportContext, calls: list[CallView], tally: UnitTally) -> None:
        # Whether a support request lacking an agreement is an exception depends on whether
        # any call of the unit names one: known once all of them are in (settle()).
        tally.calls += len(calls)
        tally.population += len(calls)
        # Both ways a call's finding may read, each spooled in the order of the calls.
        pending = self._pending.get(id(tally))
        if pending is None:
            pending = self._pending[id(tally)] = (context.evidence_list(), context.evidence_list())
        named_way, unnamed_way = pending
        judgements = self._judgements
        # Counted here, added to the tally after the page (the figures of its metrics).
        named, with_service, with_agreement, unknown = tally.counts["named"], 0, 0, 0
        key_of = _service_agreement_key
        for call in calls:
            key = key_of(call)
            judged = judgements.get(key)
            if judged is None:
                judged = remember(judgements, key, self._judgement(context, call))
            named += bool(call.agreement)
            with_service += bool(call.service)
            with_agreement += judged.agreement is not None
            unknown += judged.unknown_references
            if not judged.named:
                continue  # no finding either way (with an agreement named, the fewer words)
            # Mostly the same words both ways: the evidence is built once then.
            body = context.evidence_json(call, judged.named)
            named_way.append_json(body)
            # Once a call of the unit names an agreement, settle() keeps the first way: the
            # other is no longer needed.
            if judged.unnamed and not named:
                if judged.unnamed != judged.named:
                    body = context.evidence_json(call, judged.unnamed)
                unnamed_way.append_json(body)
        tally.counts.update(
            named=named - tally.counts["named"],
            with_service=with_service,
            with_agreement=with_agreement,
            unknown_references=unknown,
        )
        if context.sample is not None:
            tally.items += [(_call_key(call), ("", context.evidence(call, ""))) for call in calls]

    def _judgement(self, context: ReportContext, call: CallView) -> _Judged:
        """The call's verdict, from the fields :meth:`tally` keeps it by: the registry's (the
        agreement named, the unit, the customer unit, the service: :mod:`.registry_answers`)
        and the call's type (:meth:`_judged`)."""
        references, agreement = _references(context, call), _agreement_id(context, call)
        problems = self._judged(context, call, references, agreement)
        return _Judged(agreement, bool(references), problems.detail(True), problems.detail(False))

    def start(self, context: ReportContext) -> None:
        super().start(context)
        # By tally: the findings if the unit's calls name agreements, and if they do not.
        self._pending: dict[int, tuple[SpooledEvidence, SpooledEvidence]] = {}
        self._judgements: dict[tuple[object, ...], _Judged] = {}

    def settle(self, context: ReportContext, tally: UnitTally) -> None:
        pending = self._pending.pop(id(tally), None)
        if pending is None:
            return
        named = bool(tally.counts["named"])
        tally.evidence = pending[0] if named else pending[1]
        if context.sample is not None:
            for evidence in tally.evidence:
                tally.found.setdefault(evidence.call_id or "", []).append(evidence.detail)

    @classmethod
    def _problems(cls, context: ReportContext, call: CallView) -> _Problems:
        return cls._judged(context, call, _references(context, call), _agreement_id(context, call))

    @staticmethod
    def _judged(
        context: ReportContext,
        call: CallView,
        references: Sequence[tuple[str, str]],
        agreement: str | None,
    ) -> _Problems:
        """The call's problems, given its unregistered references and its agreement."""
        # A unit works with agreements when its calls name them or the config registers
        # one it provides; an agreement the registry finds for the call counts as named
        # (the report uses it; the tool is not written).
        problems = _Problems(
            service=not call.service,
            references=tuple(reason for _, reason in references),
        )
        rfc = call.call_type is CallType.RFC
        if agreement is None and (rfc or call.call_type.is_support_request):
            problems = dataclasses.replace(
                problems,
                agreement="no agreement" + (" (an rfc refers to one)" if rfc else ""),
                always=rfc or context.registry.provides_under_agreement(call.unit),
            )
        return problems

    def summary(self, found: int, total: int) -> str:
        return (
            f"{found} of {_plural(total, 'call')} lack a service or agreement, or name one "
            "that is not registered"
        )

    def metrics(self, tally: UnitTally) -> dict[str, float | int | str]:
        if not tally.calls:
            return {}
        return {
            "share_with_service": round(100 * tally.counts["with_service"] / tally.calls, 1),
            "share_with_agreement": round(100 * tally.counts["with_agreement"] / tally.calls, 1),
            "unknown_references": tally.counts["unknown_references"],
        }


#: What data.service-agreement reads of a call: the registry's fields (the agreement named,
#: the unit, the customer unit, the service: :mod:`.registry_answers`) and its type. An
#: attrgetter: the key built in C, once per call of a report.
_service_agreement_key: Callable[[CallView], tuple[object, ...]] = operator.attrgetter(
    "agreement", "unit", "customer_unit", "service", "call_type"
)


@dataclasses.dataclass(frozen=True)
class _Problems:
    """What a call lacks or names wrongly, before its unit is known to name agreements."""

    service: bool
    references: tuple[str, ...]
    #: The words of a missing agreement ("" when none is missing) ...
    agreement: str = ""
    #: ... and whether it is an exception even where the unit's calls name no agreement.
    always: bool = False

    def detail(self, named: bool) -> str:
        """The finding's words when the unit's calls do (``named``) or do not name agreements;
        "" when there is none."""
        problems = ["no service"] if self.service else []
        if self.agreement and (self.always or named):
            problems.append(self.agreement)
        problems.extend(self.references)
        return ", ".join(problems)


@dataclasses.dataclass(frozen=True)
class _Judged:
    """A call's verdict in ``data.service-agreement``, as kept for the calls equal to it."""

    #: The agreement the call names, else the one the registry finds for it.
    agreement: str | None
    unknown_references: bool
    #: The finding's words where the unit's calls name agreements ("": no finding) ...
    named: str
    #: ... and where they do not.
    unnamed: str


def _references(context: ReportContext, call: CallView) -> Sequence[tuple[str, str]]:
    """The call's unregistered service or agreement, as the ingest audit tells them."""
    return context.answers.reference_problems(call)


def _agreement_id(context: ReportContext, call: CallView) -> str | None:
    """The agreement the call names, else the one the registry finds for it."""
    if call.agreement:
        return call.agreement
    found = context.answers.agreement_of(call)
    return None if found is None else found.id


class PriorityCheck(_DataCheck):
    """The priority a tool states agrees with impact x urgency through the matrix that applies
    to the call: its agreement's, else its unit's, else the config's ``[priority]``."""

    id = "data.priority"
    title = "Priorities follow the impact x urgency matrix"
    clean = "no priority contradicts the matrix"
    items = "calls with a priority, impact and urgency"
    severity = "medium"

    def __init__(self) -> None:
        self._judged: dict[tuple[object, ...], _Priority] = {}
        self._judged_by: RegistryAnswers | None = None

    def start(self, context: ReportContext) -> None:
        super().start(context)
        self._judged = {}

    def _verdicts(self, context: ReportContext) -> dict[tuple[object, ...], _Priority]:
        """The verdicts kept for the context's registry (asked of another report's calls, the
        check starts afresh)."""
        if self._judged_by is not context.answers:
            self._judged, self._judged_by = {}, context.answers
        return self._judged

    def _judge(self, context: ReportContext, call: CallView) -> _Priority:
        """The call's verdict, kept by the fields it reads: the matrix's (the agreement
        named, the unit, the customer unit, the service: :mod:`.registry_answers`), impact,
        urgency and the priority stated."""
        kept, key = self._verdicts(context), _priority_key(call)
        found = kept.get(key)
        if found is None:
            found = remember(kept, key, self._judgement(context, call))
        return found

    @staticmethod
    def _judgement(context: ReportContext, call: CallView) -> _Priority:
        # Per call: an agreement's matrix, else its unit's, else the default (USM leaves the
        # classes to each organisation; outside suppliers' contracts differ).
        matrix, source = context.answers.matrix_source(call)
        derived = matrix.derive(call.impact, call.urgency)
        # Only a call stating all three can contradict the matrix.
        tested = call.priority is not None and derived is not None
        if not matrix.contradicts(call.impact, call.urgency, call.priority):
            return _Priority(tested)
        assert call.impact is not None and call.urgency is not None
        return _Priority(
            tested,
            f"priority {call.priority}, but impact {call.impact.value} x urgency "
            f"{call.urgency.value} gives {derived} (matrix of {source})",
            f"{call.impact.value} x {call.urgency.value} -> {call.priority}",
        )

    def tests(self, context: ReportContext, call: CallView) -> bool:
        return self._judge(context, call).tested

    def findings(
        self, context: ReportContext, calls: list[CallView]
    ) -> Iterator[tuple[CallView, str]]:
        for call in calls:
            found = self._judge(context, call).finding
            if found:
                yield call, found

    def judge_calls(self, context: ReportContext, calls: list[CallView], tally: UnitTally) -> bool:
        # findings(), count() and the population in one pass, each call judged once.
        contradictions = tally.by_key("contradictions")
        kept, key_of, tested = self._verdicts(context), _priority_key, 0
        keep = self.keeper(context, tally)
        for call in calls:
            key = key_of(call)
            judged = kept.get(key)
            if judged is None:
                judged = remember(kept, key, self._judgement(context, call))
            tested += judged.tested
            if judged.finding:
                keep(call, judged.finding)
                contradictions[judged.contradiction] += 1
        tally.population += tested
        return True

    def summary(self, found: int, total: int) -> str:
        return f"{found} of {_plural(total, 'call')} contradict the matrix"

    def count(self, context: ReportContext, calls: list[CallView], tally: UnitTally) -> None:
        tally.by_key("contradictions").update(
            judged.contradiction
            for judged in (self._judge(context, call) for call in calls)
            if judged.finding
        )

    def metrics(self, tally: UnitTally) -> dict[str, float | int | str]:
        found = tally.by_key("contradictions")
        return {f"contradiction: {key}": count for key, count in sorted(found.items())}


#: What data.priority reads of a call: the fields of its matrix (agreement_of's: the
#: agreement named, the unit, the customer unit, the service), impact, urgency, priority.
#: An attrgetter: the key built in C, once per call of a report.
_priority_key: Callable[[CallView], tuple[object, ...]] = operator.attrgetter(
    "agreement", "unit", "customer_unit", "service", "impact", "urgency", "priority"
)


@dataclasses.dataclass(frozen=True)
class _Priority:
    """A call's verdict in ``data.priority``, as kept for the calls equal to it."""

    #: Whether the call states a priority, impact and urgency (it is in the population).
    tested: bool
    #: The finding's words ("": the priority agrees with the matrix) ...
    finding: str = ""
    #: ... and its key in the ``contradiction:`` metrics.
    contradiction: str = ""


def _skipped_states(context: ReportContext, call: CallView) -> dict[Status, list[Status]]:
    """The states the mapping of the call's own instance says its tool skips (``{}``: none)."""
    info = context.instances.get(call.source.instance) if call.source is not None else None
    status = info.mapping.spec.fields.status if info and info.mapping else None
    return dict(status.passes_through) if status is not None else {}


def _illegal(move: Transition, skipped: dict[Status, list[Status]]) -> bool:
    # The plain state machine: an incident closed straight from fulfilled (the incident rule of
    # allowed()) is reported by the confirmation check instead. A move into a state the mapping
    # says passes through others is judged through them (a ServiceNow item closed complete).
    return not legal_through(move.before, move.after, skipped.get(move.after, ()))


def _declared_only(move: Transition, skipped: dict[Status, list[Status]]) -> bool:
    """A legal move only because the mapping declares the states the tool skips."""
    return not legal_through(move.before, move.after) and not _illegal(move, skipped)


def _move(move: Transition) -> str:
    return (
        f"{move.before.value} -> {move.after.value} "
        f"(audit event {move.event_id}, {move.at:%Y-%m-%d %H:%M})"
    )


class TransitionsCheck(_DataCheck):
    """Every status change the bridge observed (audit log) is a legal lifecycle move. A tool
    read between two changes shows the two as one move. An incident closed straight from
    fulfilled is left to ``data.incident-confirmation``, so that it counts once. A move through
    a state the call's mapping declares its tool skips (``fields.status.passes_through``) is
    legal; ``mapping.lifecycle`` shows the declaration, and a metric counts such moves."""

    id = "data.transitions"
    title = "Observed transitions are legal"
    clean = "every observed transition is legal"
    items = "observed transitions"

    def population(self, context: ReportContext, calls: list[CallView]) -> list[PopulationItem]:
        return [
            (f"{_call_key(call)}#{move.event_id:012d}", call, _move(move))
            for call in calls
            for move in context.transitions_of(call.id)
        ]

    def population_size(self, context: ReportContext, calls: list[CallView]) -> int:
        return sum(len(context.transitions_view(call.id)) for call in calls)

    def findings(
        self, context: ReportContext, calls: list[CallView]
    ) -> Iterator[tuple[CallView, str]]:
        for call in calls:
            skipped = _skipped_states(context, call)
            for move in context.transitions_of(call.id):
                if _illegal(move, skipped):
                    yield call, _move(move)

    def evidence_of(self, context: ReportContext, call: CallView, detail: str) -> Evidence:
        """The finding's time is its move's (the audit event the detail names)."""
        evidence = context.evidence(call, detail)
        for move in context.transitions_of(call.id):
            if _move(move) == detail:  # the words findings() wrote for this very move
                return evidence.model_copy(update={"at": move.at})
        return evidence

    def summary(self, found: int, total: int) -> str:
        return f"{_plural(found, 'illegal transition')} in {_plural(total, 'call')}"

    def judge_calls(self, context: ReportContext, calls: list[CallView], tally: UnitTally) -> bool:
        # findings(), count() and the population in one pass over each call's moves.
        illegal, moves_of = tally.by_key("illegal"), context.transitions_view
        for call in calls:
            moves = moves_of(call.id)
            if not moves:
                continue
            tally.population += len(moves)
            skipped = _skipped_states(context, call)
            for move in moves:
                tally.counts["observed"] += 1
                if _illegal(move, skipped):
                    # The finding's time is its move's.
                    self.keep(context, tally, call, _move(move), at=move.at)
                    illegal[f"{move.before.value} -> {move.after.value}"] += 1
                elif _declared_only(move, skipped):
                    tally.counts["declared"] += 1
        return True

    def count(self, context: ReportContext, calls: list[CallView], tally: UnitTally) -> None:
        moves = tally.by_key("illegal")
        for call in calls:
            skipped = _skipped_states(context, call)
            for move in context.transitions_of(call.id):
                tally.counts["observed"] += 1
                if _illegal(move, skipped):
                    moves[f"{move.before.value} -> {move.after.value}"] += 1
                elif _declared_only(move, skipped):
                    tally.counts["declared"] += 1

    def metrics(self, tally: UnitTally) -> dict[str, float | int | str]:
        declared = tally.counts["declared"]
        metrics: dict[str, float | int | str] = {"transitions_observed": tally.counts["observed"]}
        if declared:
            metrics["moves_through_declared_states"] = declared
        for key, count in tally.by_key("illegal").most_common(10):
            metrics[f"illegal: {key}"] = count
        return metrics


class IncidentConfirmationCheck(_DataCheck):
    """A closed incident carries the customer's confirmation that the service is resumed
    (USM's key measure runs from the failure's notification until that confirmation); an
    automatic close counts only where the call's agreement allows implicit confirmation
    (:mod:`.confirmation_verdicts`)."""

    id = "data.incident-confirmation"
    title = "Closed incidents carry a customer confirmation"
    clean = "every closed incident was confirmed"
    items = "closed incidents"

    def tests(self, context: ReportContext, call: CallView) -> bool:
        return call.call_type is CallType.INCIDENT and call.status is Status.CLOSED

    def _verdicts(
        self, context: ReportContext, calls: list[CallView]
    ) -> list[tuple[CallView, Standing]]:
        agreements = agreements_of(context)
        # tests(), inline: asked of every call of the report.
        incident, closed = CallType.INCIDENT, Status.CLOSED
        return [
            (call, confirmation_verdict(context, agreements, call))
            for call in calls
            if call.call_type is incident and call.status is closed
        ]

    def findings(
        self, context: ReportContext, calls: list[CallView]
    ) -> Iterator[tuple[CallView, str]]:
        for call, verdict in self._verdicts(context, calls):
            if verdict.finding is not None:
                yield call, verdict.finding

    def summary(self, found: int, total: int) -> str:
        return f"{found} closed incident(s) without a confirmation that counts"

    def judge_calls(self, context: ReportContext, calls: list[CallView], tally: UnitTally) -> bool:
        # findings(), count() and the population in one pass, each verdict worked out once.
        kinds, keep = tally.by_key("kinds"), self.keeper(context, tally)
        for call, verdict in self._verdicts(context, calls):
            tally.population += 1
            tally.counts["closed_incidents"] += 1
            kinds[verdict.kind.value] += 1
            if verdict.finding is not None:
                keep(call, verdict.finding)
        return True

    def count(self, context: ReportContext, calls: list[CallView], tally: UnitTally) -> None:
        verdicts = self._verdicts(context, calls)
        tally.counts["closed_incidents"] += len(verdicts)
        tally.by_key("kinds").update(verdict.kind.value for _, verdict in verdicts)

    def metrics(self, tally: UnitTally) -> dict[str, float | int | str]:
        counted = tally.by_key("kinds")
        return {
            "closed_incidents": tally.counts["closed_incidents"],
            **{kind.value: counted[kind.value] for kind in ConfirmationVerdict},
        }


class SupplierLinksCheck(_DataCheck):
    """Supplier calls between units are one of the four support requests, and each is linked
    to its upstream call (a chain link that the call itself names)."""

    id = "data.supplier-links"
    title = "Supplier calls are linked to their upstream call"
    clean = "every supplier call is linked"
    items = "supplier calls"

    def tests(self, context: ReportContext, call: CallView) -> bool:
        """Linked as one, naming an upstream call, or created by the bridge along a route."""
        return self._problems(context, call, context.link_of(call.id)) is not None

    def _problems(
        self, context: ReportContext, call: CallView, link: LinkView | None
    ) -> str | None:
        """What is wrong with the supplier call and its link ("" nothing); ``None`` when it is
        no supplier call (:meth:`tests`)."""
        upstream = call.chain.upstream
        problems = []
        if link is None and upstream is None:
            for identity in context.identities_view(call.id):
                if identity.correlation:
                    problems.append(
                        f"created by the bridge in {identity.instance}, "
                        "but linked to no upstream call"
                    )
                    break
            else:
                return None  # not a supplier call
        elif link is None:
            problems.append(f"names upstream call {upstream}, but no chain link records it")
        elif upstream != link.upstream_call_id:
            problems.append(
                f"route {link.route} links it to {link.upstream_call_id}, but the call names "
                f"{upstream or 'no upstream call'}"
            )
        if not call.call_type.is_support_request:
            problems.append(f"is {call.call_type.value}, not one of the four support request types")
        return "; ".join(problems)

    def findings(
        self, context: ReportContext, calls: list[CallView]
    ) -> Iterator[tuple[CallView, str]]:
        for call in calls:
            problems = self._problems(context, call, context.link_of(call.id))
            if problems:
                yield call, problems

    def judge_calls(self, context: ReportContext, calls: list[CallView], tally: UnitTally) -> bool:
        # findings(), count() and the population in one pass, each call's link read once.
        linked = tested = 0
        linked_by, identities = context.linked_by, context.identities_view
        for call in calls:
            found = linked_by(call.id)
            if found is None and call.chain.upstream is None:
                # Most calls: no supplier call, unless the bridge created it along a route
                # (what _problems asks first of such a call, without its other steps).
                for identity in identities(call.id):
                    if identity.correlation:
                        break
                else:
                    continue
            link = found.link if found is not None else None
            linked += link is not None
            problems = self._problems(context, call, link)
            if problems is None:
                continue
            tested += 1
            if problems:
                self.keep(context, tally, call, problems)
        tally.counts["linked"] += linked
        tally.population += tested
        return True

    def summary(self, found: int, total: int) -> str:
        return f"{found} supplier call(s) with a broken or missing link"

    def count(self, context: ReportContext, calls: list[CallView], tally: UnitTally) -> None:
        tally.counts["linked"] += sum(1 for c in calls if context.link_of(c.id) is not None)

    def metrics(self, tally: UnitTally) -> dict[str, float | int | str]:
        return {"linked_supplier_calls": tally.counts["linked"]}


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|\b\d[\d:.T+-]*\b")


def _reason_group(reason: str) -> str:
    """A dead letter's reason without the values in it, so that letters group by cause."""
    return _QUOTED.sub("…", reason.strip().splitlines()[0] if reason.strip() else "")[:160]


class DeadLettersCheck(_Check):
    """Records the tool holds that did not reach the bridge (open ``map`` / ``store`` letters:
    not every call is registered) fail; writes that did not reach a tool (``push``) warn.
    Each letter is listed with its owning unit and its age; dismissed letters are counted
    apart and do not count against the unit."""

    id = "data.dead-letters"
    title = "Nothing is stuck in the dead letters"
    category: ClassVar[Category] = "data"
    severity = "high"

    def run(self, context: ReportContext) -> list[CheckOutcome]:
        by_unit: dict[str | None, list[Any]] = {unit: [] for unit in context.unit_names()}
        for letter in context.dead_letters_in_period():
            by_unit.setdefault(context.unit_of_instance(letter.instance), []).append(letter)
        dismissed_letters = context.dead_letters_in_period("dismissed")
        dismissed = Counter(
            context.unit_of_instance(letter.instance) for letter in dismissed_letters
        )
        for unit in dismissed:
            by_unit.setdefault(unit, [])
        files = _files_not_travelled(context, [*context.dead_letters_in_period(),
                                                *dismissed_letters])  # fmt: skip
        outcomes = []
        for unit, letters in by_unit.items():
            if unit is None and not letters and not dismissed[unit]:
                continue
            outcomes.append(
                self._of_unit(context, unit, letters, dismissed[unit], files.get(unit, {}))
            )
        return outcomes

    @staticmethod
    def _tested(open_: int, dismissed: int) -> Population:
        size = open_ + dismissed
        return _own_rule(
            "dead letters of the period (open and dismissed)",
            size,
            open_,
            "fail when a record did not reach the bridge, warn "
            "when only writes did not reach a tool, else pass; dismissed letters do not count",
        )

    def _of_unit(
        self,
        context: ReportContext,
        unit: str | None,
        letters: list[Any],
        dismissed_count: int,
        files: dict[str, int],
    ) -> CheckOutcome:
        apart = f" ({dismissed_count} dismissed, not counted)" if dismissed_count else ""
        # Only where a file could not travel: a report of a chain without files is unchanged.
        counts: dict[str, float | int | str] = {"dismissed": dismissed_count, **files}
        tested = self._tested(len(letters), dismissed_count)
        if not letters and not dismissed_count:
            return self.outcome(
                "n/a",
                "not applicable: no dead letters in the period",
                unit=unit,
                metrics=counts,
                population=tested,
            )
        if not letters:
            return self.outcome(
                "pass",
                f"no open dead letters{apart}",
                unit=unit,
                metrics=counts,
                population=tested,
            )
        reasons = Counter(
            f"{letter.stage.value}: {_reason_group(letter.reason)}" for letter in letters
        )
        # A refused file's letter (stage map) is no record missing: its call was stored.
        inbound = [
            letter
            for letter in letters
            if letter.stage.value != "push" and not is_attachment_subject(letter.subject)
        ]
        ages = {letter.id: max(context.now - letter.created_at, timedelta()) for letter in letters}
        oldest = max(ages.values())
        evidence = [
            Evidence(
                detail=f"{letter.stage.value} dead letter {letter.id} of {letter.instance} "
                f"(unit {unit or '-'}), open for {_age(ages[letter.id])}: "
                f"{letter.reason[:300]}",
                call_id=letter.call_id,
                instance=letter.instance,
                at=letter.created_at,
            )
            for letter in letters
        ]
        summary = (
            f"{_plural(len(inbound), 'record')} not registered, "
            f"{_plural(len(letters) - len(inbound), 'write')} not delivered; "
            f"{_plural(len(reasons), 'reason')}; oldest open for {_age(oldest)}{apart}"
        )
        return self.outcome(
            "fail" if inbound else "warn",
            summary,
            unit=unit,
            evidence=evidence,
            metrics={
                "oldest_open_hours": round(oldest.total_seconds() / 3600, 1),
                **counts,
                **{key: count for key, count in reasons.most_common(20)},
            },
            population=tested,
        )


def _files_not_travelled(
    context: ReportContext, letters: list[Any]
) -> dict[str | None, dict[str, int]]:
    """Per unit, the attachments that could not travel (from their dead letters, open or
    dismissed: one per file and instance, however many calls carry it, each of which has its
    letter), all and by why: refused by a policy, a tool that does not carry files, a write
    that failed (:mod:`usm_bridge.sync.call_files`)."""
    counted: dict[str | None, Counter[str]] = {}
    seen: set[tuple[str, str]] = set()
    for letter in letters:
        if not is_attachment_subject(letter.subject):
            continue
        file = (letter.instance, refused_file(letter.subject, letter.call_id))
        if file in seen:
            continue
        seen.add(file)
        payload = letter.payload if isinstance(letter.payload, dict) else {}
        kind = payload.get("could_not_travel")
        why = kind if kind in ("refused", "not_carried", "failed") else "refused"
        tally = counted.setdefault(context.unit_of_instance(letter.instance), Counter())
        tally["attachments_could_not_travel"] += 1
        tally[f"attachments_{why}"] += 1
    return {unit: dict(sorted(tally.items())) for unit, tally in counted.items()}


def _builtin() -> list[ConformanceCheck]:
    from .supplier_acceptance import SupplierAcceptanceCheck  # a _DataCheck: imported once here

    return [
        MappingFieldsCheck(),
        MappingValuesCheck(),
        MappingLifecycleCheck(),
        MappingOutboundCheck(),
        ClassifiedCheck(),
        ServiceAgreementCheck(),
        PriorityCheck(),
        TransitionsCheck(),
        IncidentConfirmationCheck(),
        SupplierLinksCheck(),
        ProcessFlowsCheck(),
        SupplierAcceptanceCheck(),
        DeadLettersCheck(),
    ]


BUILTIN_CHECKS: Callable[[], list[ConformanceCheck]] = _builtin


@hookimpl
def usm_bridge_conformance_checks() -> list[ConformanceCheck]:
    """The built-in checks (a fresh set each time: checks may keep per-run state)."""
    return _builtin()
