"""``data.process-flows``: waits and forks between processes that USM's workflow patterns have.

USM hands work from one process to another inside a unit only at the forks of its eight
workflow patterns (USM.md, "The eight workflow patterns"): a wish goes agree -> change (W1), an
incident recover -> change (W3) or recover -> operate (W4), a risk improve -> agree, change or
operate (W6-W8); rfc (W2) and service request (W5) stay in one process. Per unit, the check
lists, over the calls of the period:

- every call that waits on a process its own process does not fork to (ServiceNow's "Awaiting
  Problem" on an incident: improve is proactive, recover never waits on it);
- every fork to or from a process no pattern passes through (an incident linked to the problem
  behind it), and every fork whose link names another process than the linked call has;
- every fork still unresolved after more than a sync cycle of the call's instance (the bridge
  does not hold the other record), and every link the sync refused because it names a record
  of another unit (``fork_refused``: a fork is a link inside one unit).

Its metrics count the forks evidenced per pattern (``forks_W3`` ...): resolved forks, each
link once even when both of its ends record it. A unit with neither a wait on a process nor a
fork has nothing to check: its verdict is ``n/a``, never a pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from ..call_view import CallView
from ..model import ForkRole, ProcessLink, UsmProcess
from .api import Category, CheckOutcome, Evidence, Population, Severity, Threshold, Verdict
from .call_feeds import run_fed
from .context import ReportContext
from .evidence_spool import SpooledEvidence
from .related_rows import EventView

__all__ = ["FORK_PATTERNS", "ProcessFlowsCheck", "pattern_of"]

P = UsmProcess
#: The forks of USM's workflow patterns: (primary process, secondary process) -> pattern id.
FORK_PATTERNS: dict[tuple[UsmProcess, UsmProcess], str] = {
    (P.AGREE, P.CHANGE): "W1",
    (P.RECOVER, P.CHANGE): "W3",
    (P.RECOVER, P.OPERATE): "W4",
    (P.IMPROVE, P.AGREE): "W6",
    (P.IMPROVE, P.CHANGE): "W7",
    (P.IMPROVE, P.OPERATE): "W8",
}
#: The audit event the sync writes for a link to another unit's record (usm_bridge.sync.forks).
_REFUSED = "fork_refused"
#: A unit's default cycle when its instance is unknown to the report (the config's default).
_DEFAULT_CYCLE = 60.0


def pattern_of(primary: UsmProcess, secondary: UsmProcess) -> str | None:
    """The workflow pattern whose fork hands work from ``primary`` to ``secondary``."""
    return FORK_PATTERNS.get((primary, secondary))


@dataclass(frozen=True)
class _Finding:
    call: CallView
    detail: str
    at: datetime | None = None
    #: The wait or fork it is about (one may have several findings; the rate counts it once).
    item: str = "wait"


def _ends(call: CallView, fork: ProcessLink, other: UsmProcess) -> tuple[UsmProcess, UsmProcess]:
    """(primary, secondary) processes of a fork recorded on ``call``."""
    assert call.process is not None
    return (call.process, other) if fork.role is ForkRole.SECONDARY else (other, call.process)


def _age(seconds: float) -> str:
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} d"
    if seconds >= 3_600:
        return f"{seconds / 3_600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


class ProcessFlowsCheck:
    """See the module docstring."""

    id = "data.process-flows"
    title = "Waits and forks follow USM's workflow patterns"
    category: ClassVar[Category] = "data"
    severity: ClassVar[Severity] = "medium"
    #: Any exception fails unless ``[conformance.thresholds]`` says otherwise.
    threshold: ClassVar[Threshold] = Threshold(pass_up_to=0.0, warn_up_to=0.0)

    _tallies: dict[str, _Tally]

    def run(self, context: ReportContext) -> list[CheckOutcome]:
        return run_fed(context, self)

    def start(self, context: ReportContext) -> None:
        self._tallies = {}

    def feed(self, context: ReportContext) -> None:
        history = None
        for unit, page_calls in context.page_calls().items():
            tally = self._tallies.get(unit)
            if tally is None:
                tally = self._tallies[unit] = _Tally(evidence=context.evidence_list())
            # Only a call that waits on a process or records a fork has anything to check or
            # count (most calls have neither): the others are passed over.
            calls = [c for c in page_calls if c.chain.forks or c.waiting_process is not None]
            if not calls:
                continue
            if history is None:
                history = self._history(context.page_events())
            tally.items += sum(len(c.chain.forks) + (c.waiting_process is not None) for c in calls)
            for finding in self._findings(context, calls, *history):
                self._keep(context, tally, finding)
                tally.exceptions.add((finding.call.id, finding.item))
            self._count(context, calls, tally)

    def finish(self, context: ReportContext) -> list[CheckOutcome]:
        return [
            self._outcome(context, unit, self._tallies.get(unit) or _Tally())
            for unit in context.unit_names()
        ]

    # -- findings ------------------------------------------------------------------------------

    def _findings(
        self,
        context: ReportContext,
        calls: list[CallView],
        first_seen: dict[tuple[str, str], datetime],
        refused: dict[tuple[str, str], str],
    ) -> Iterator[_Finding]:
        for call in calls:
            waited = call.waiting_process
            if waited is not None:
                own = call.process
                if own is None or pattern_of(own, waited) is None:
                    yield _Finding(
                        call,
                        f"waits on {waited.value}, a process USM does not fork to from "
                        f"{own.value if own else 'an unclassified call'}",
                    )
            for fork in call.chain.forks:
                yield from self._fork_findings(context, call, fork, first_seen, refused)

    def _fork_findings(
        self,
        context: ReportContext,
        call: CallView,
        fork: ProcessLink,
        first_seen: dict[tuple[str, str], datetime],
        refused: dict[tuple[str, str], str],
    ) -> Iterator[_Finding]:
        via = f" ({fork.via})" if fork.via else ""
        item = f"fork:{fork.ref}"
        linked = context.call(fork.call) if fork.call is not None else None
        other = linked.process if linked is not None else None
        if fork.process is not None and other is not None and fork.process is not other:
            yield _Finding(
                call,
                f"the link{via} says {fork.process.value}, but the linked call "
                f"{fork.ref} is in {other.value}",
                item=item,
            )
        other = other or fork.process
        if call.process is not None and other is not None:
            primary, secondary = _ends(call, fork, other)
            if pattern_of(primary, secondary) is None:
                yield _Finding(
                    call,
                    f"fork {primary.value} -> {secondary.value} to {fork.ref}{via}: no USM "
                    "workflow pattern passes through it",
                    item=item,
                )
        if fork.call is not None:
            return
        unit = refused.get((call.id, fork.ref))
        if unit is not None:
            yield _Finding(
                call,
                f"links to {fork.ref}{via}, a record of unit {unit}: a fork is a link inside "
                "one unit, so it is not one",
                item=item,
            )
            return
        since = first_seen.get((call.id, fork.ref), call.updated)
        age = (context.now - since).total_seconds()
        cycle = self._cycle(context, call)
        if age > cycle:
            yield _Finding(
                call,
                f"fork to {fork.ref}{via} unresolved for {_age(age)} (a cycle is "
                f"{_age(cycle)}): the bridge does not hold that record",
                at=since,
                item=item,
            )

    @staticmethod
    def _cycle(context: ReportContext, call: CallView) -> float:
        info = context.instances.get(call.source.instance) if call.source else None
        return info.interval if info is not None else _DEFAULT_CYCLE

    @staticmethod
    def _history(
        events: Iterable[EventView],
    ) -> tuple[dict[tuple[str, str], datetime], dict[tuple[str, str], str]]:
        """When each (call, fork reference) was first stored, and the refused links' units,
        from the calls' audit events (each call's in the order appended)."""
        first_seen: dict[tuple[str, str], datetime] = {}
        refused: dict[tuple[str, str], str] = {}
        for event in events:
            if event.call_id is None:
                continue
            detail = event.detail if isinstance(event.detail, dict) else {}
            if event.kind == _REFUSED:
                ref, unit = detail.get("ref"), detail.get("other_unit")
                if isinstance(ref, str) and isinstance(unit, str):
                    refused[(event.call_id, ref)] = unit
                continue
            after = event.after if isinstance(event.after, dict) else {}
            chain = after.get("chain")
            forks = chain.get("forks") if isinstance(chain, dict) else None
            for fork in forks if isinstance(forks, list) else []:
                ref = fork.get("ref") if isinstance(fork, dict) else None
                if isinstance(ref, str):
                    first_seen.setdefault((event.call_id, ref), event.at)
        return first_seen, refused

    # -- the outcome ---------------------------------------------------------------------------

    def _outcome(self, context: ReportContext, unit: str, tally: _Tally) -> CheckOutcome:
        threshold, source = context.conformance.threshold_and_source(self.id, unit, self.threshold)
        metrics = tally.metrics()
        items, findings = tally.items, tally.evidence
        if not items:
            return self._make(
                unit,
                "n/a",
                "nothing to check: no call waits on a process or links to another process",
                Population(
                    items="waits and forks",
                    size=0,
                    exceptions=0,
                    rate=None,
                    threshold=threshold,
                    threshold_from=source,
                    rule="Nothing was tested, so not applicable",
                ),
                [],
                metrics,
            )
        # A wait or fork is one item however many findings it has: the rate stays a share.
        exceptions = len(tally.exceptions)
        rate = exceptions / items
        population = Population(
            items="waits on a process and forks",
            size=items,
            exceptions=exceptions,
            rate=rate,
            threshold=threshold,
            threshold_from=source,
            rule=threshold.sentence(),
        )
        summary = (
            f"{exceptions} of {items} waits and forks with findings ({len(findings)} finding(s))"
            if findings
            else f"every one of {items} waits and forks follows a workflow pattern"
        )
        return self._make(unit, threshold.verdict(rate), summary, population, findings, metrics)

    def _make(
        self,
        unit: str,
        verdict: Verdict,
        summary: str,
        population: Population,
        evidence: list[Evidence] | SpooledEvidence,
        metrics: dict[str, float | int | str],
    ) -> CheckOutcome:
        return CheckOutcome.model_validate(
            {
                "check_id": self.id,
                "title": self.title,
                "verdict": verdict,
                "summary": summary,
                "unit": unit,
                "category": self.category,
                "evidence": evidence,
                "count": len(evidence),
                "metrics": metrics,
                "population": population,
                "severity": self.severity,
            }
        )

    @staticmethod
    def _keep(context: ReportContext, tally: _Tally, finding: _Finding) -> None:
        """Add the finding's evidence to the tally (spooled: as its JSON, the same text)."""
        if isinstance(tally.evidence, SpooledEvidence):
            tally.evidence.append_json(
                context.evidence_json(finding.call, finding.detail, finding.at)
            )
            return
        evidence = context.evidence(finding.call, finding.detail)
        if finding.at is not None:
            evidence.at = finding.at
        tally.evidence.append(evidence)

    @staticmethod
    def _count(context: ReportContext, calls: list[CallView], tally: _Tally) -> None:
        """Forks evidenced per pattern: resolved ones (the bridge holds both calls, whose
        processes decide the pattern), each link once (both ends may record it)."""
        for call in calls:
            for fork in call.chain.forks:
                linked = context.call(fork.call) if fork.call is not None else None
                if call.process is None or linked is None or linked.process is None:
                    continue
                pattern = pattern_of(*_ends(call, fork, linked.process))
                if pattern is not None:
                    tally.links[pattern].add(frozenset({call.id, linked.id}))
        tally.waits += sum(1 for c in calls if c.waiting_process is not None)
        tally.unresolved += sum(1 for c in calls for fork in c.chain.forks if fork.call is None)


@dataclass
class _Tally:
    """What the check keeps of one unit's calls while they stream by."""

    #: The findings' evidence (spooled by the pass: a report may find as many as calls).
    evidence: list[Evidence] | SpooledEvidence = field(default_factory=list)
    items: int = 0
    #: The waits and forks with findings, as (call id, item).
    exceptions: set[tuple[str, str]] = field(default_factory=set)
    links: dict[str, set[frozenset[str]]] = field(
        default_factory=lambda: {pattern: set() for pattern in FORK_PATTERNS.values()}
    )
    waits: int = 0
    unresolved: int = 0

    def metrics(self) -> dict[str, float | int | str]:
        metrics: dict[str, float | int | str] = {
            f"forks_{pattern}": len(found) for pattern, found in sorted(self.links.items())
        }
        metrics["waits_on_a_process"] = self.waits
        metrics["unresolved_forks"] = self.unresolved
        return metrics
