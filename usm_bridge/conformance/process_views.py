"""Per-process views: what each unit's processes did with the calls registered in the period.

For every unit and every USM process (agree, change, recover, operate, improve; and the calls
still ``unclassified``) the report shows volumes, times from registration to response,
fulfilment and confirmation per priority class against the agreements' targets, how many
fulfilled calls went back to work, the calls handled outside their process, and the forks
between processes the calls record. ``docs/conformance-process-views.md`` defines each figure.

Everything is read from what the store records: the calls as they are now, and each call's
status moves and type changes in the audit log. One pass over the calls keeps only the numbers
(and the evidence of calls handled outside their process), never a second copy of the calls.
"""

from __future__ import annotations

import math
import operator
import statistics
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..call_view import CallView
from ..lifecycle import WORKFLOW_PATTERNS
from ..model import CallType, ConfirmationKind, ForkRole, Status, UsmProcess
from .api import Evidence
from .call_feeds import read_pages
from .context import ReportContext, Transition
from .evidence_spool import SpooledEvidence
from .process_view_models import PriorityTimes, ProcessView, TimeFigures
from .registry_answers import RegistryAnswers, remember
from .related_rows import EventView

__all__ = [
    "NO_PRIORITY",
    "OUTSIDE_THE_PATTERNS",
    "PROCESS_UNKNOWN",
    "UNCLASSIFIED",
    "nearest_rank_p90",
    "process_views",
    "within_text",
]

UNCLASSIFIED = "unclassified"
NO_PRIORITY = "none"
OUTSIDE_THE_PATTERNS = "outside the patterns"
PROCESS_UNKNOWN = "process unknown"
#: Reasons a call counts as handled outside its process.
WITHOUT_WORK = "fulfilled without ever being in progress"
RETYPED = "type changed after fulfilment"
WHILE_UNCLASSIFIED = "fulfilled while unclassified"

_PROCESS_ORDER = [process.value for process in UsmProcess] + [UNCLASSIFIED]
#: Each process's name in the views, by the call's process (``None``: unclassified).
_PROCESS_NAMES: dict[UsmProcess | None, str] = {
    **{process: process.value for process in UsmProcess},
    None: UNCLASSIFIED,
}
_BEFORE_WORK = frozenset({Status.REGISTERED, Status.CLASSIFIED})
_AT_WORK = frozenset({Status.IN_PROGRESS, Status.WAITING})
_DONE = frozenset({Status.FULFILLED, Status.CONFIRMED, Status.CLOSED})
_NOT_DONE = _BEFORE_WORK | _AT_WORK
_CONFIRMED = frozenset({Status.CONFIRMED, Status.CLOSED})
#: Where a call goes when it is responded to: to work, or straight to fulfilment.
_WORKED = _AT_WORK | _DONE


@dataclass(frozen=True)
class _TypeChange:
    event_id: int
    before: str
    after: str


def nearest_rank_p90(values: Sequence[float]) -> float | None:
    """The 90th percentile by nearest rank: the value at rank ceil(0.9 n) of the sorted values
    (an observed time, never an interpolated one); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[(9 * len(ordered) + 9) // 10 - 1]  # integer ceil(9n/10): no float rounding


def within_text(figures: TimeFigures) -> str:
    """The share within target as a report shows it: ``-`` when nothing was measured,
    ``no target`` when no agreement gives one."""
    if not figures.measured:
        return "-"
    if figures.share_within_target is None:
        return "no target"
    return f"{100 * figures.share_within_target:.1f}% of {figures.with_target}"


@dataclass
class _Times:
    # Every time is kept, exactly, to give exact medians and percentiles: as 8-byte floats
    # (a million calls take a few megabytes), a target of None as NaN.
    seconds: array[float] = field(default_factory=lambda: array("d"))
    targets: array[float] = field(default_factory=lambda: array("d"))

    def add(self, start: datetime, end: datetime | None, target: float | None) -> None:
        if end is None:
            return
        seconds = (end - start).total_seconds()
        # A tool's clock may put the end before the registration: that is no negative time.
        self.seconds.append(seconds if seconds > 0.0 else 0.0)
        self.targets.append(math.nan if target is None else target)

    def figures(self) -> TimeFigures:
        pairs = zip(self.seconds, self.targets, strict=True)
        judged = [(s, t) for s, t in pairs if not math.isnan(t)]
        within = sum(1 for s, t in judged if s <= t)
        return TimeFigures(
            measured=len(self.seconds),
            median_seconds=float(statistics.median(self.seconds)) if self.seconds else None,
            p90_seconds=nearest_rank_p90(self.seconds),
            with_target=len(judged),
            within_target=within,
            share_within_target=within / len(judged) if judged else None,
            targets_seconds=sorted({t for _, t in judged}),
        )


@dataclass
class _Class:
    calls: int = 0
    response: _Times = field(default_factory=_Times)
    fulfilment: _Times = field(default_factory=_Times)
    confirmation: _Times = field(default_factory=_Times)


@dataclass(slots=True)
class _Slot:
    """What every call equal in :func:`_slot_key`'s fields adds to: its unit's and process's
    tally, its priority class there, and what its agreement says (targets, and whether
    silence confirms it), worked out once for all of them."""

    tally: _Tally
    times: _Class
    response_target: float | None
    fulfilment_target: float | None
    implicit_allowed: bool


_SlotKey = tuple[object, ...]


#: What _slot reads of a call: its unit and process (the tally), the priority it states or
#: the one its matrix derives from impact x urgency (the matrix: RegistryAnswers' key, the
#: agreement named, the unit, the customer unit, the service), targets_for's fields (that
#: key, priority, impact, urgency) and implicit_confirmation_after's (that key). An
#: attrgetter: the key built in C, once per call of a report.
_slot_key: Callable[[CallView], _SlotKey] = operator.attrgetter(
    "unit", "call_type", "agreement", "customer_unit", "service", "priority", "impact", "urgency"
)


@dataclass
class _Tally:
    registered: int = 0
    fulfilled: int = 0
    reopened: int = 0
    reopen_moves: int = 0
    first_read_done: int = 0
    outside: Counter[str] = field(default_factory=Counter)
    #: Each call handled outside its process, with why (spooled by the pass: as many as calls).
    evidence: list[Evidence] | SpooledEvidence = field(default_factory=list)
    #: How many calls the evidence names (one call may be outside for several reasons).
    outside_calls: int = 0
    forks: Counter[str] = field(default_factory=Counter)
    patterns: Counter[str] = field(default_factory=Counter)
    classes: dict[str, _Class] = field(default_factory=dict)


def process_views(context: ReportContext) -> list[ProcessView]:
    """One view per unit and process that had calls registered in the period, ordered by unit
    (as the report lists them) and process (agree .. improve, then unclassified)."""
    views = ProcessViews()
    read_pages(context, [views], _raise)
    return views.views(context)


def _raise(_: object, exc: Exception) -> None:
    raise exc


class ProcessViews:
    """The process views as a feed of the report's pass over the calls (:mod:`.call_feeds`)."""

    def __init__(self) -> None:
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._slots: dict[_SlotKey, _Slot] = {}
        self._slots_by: RegistryAnswers | None = None

    def start(self, context: ReportContext) -> None:
        self._tallies = {}
        self._slots = {}

    def feed(self, context: ReportContext) -> None:
        # The registry's answers, kept by the fields each reads (the same as asking it).
        agreements = context.answers
        if self._slots_by is not agreements:
            self._slots, self._slots_by = {}, agreements
        slots = self._slots
        retyped = _type_changes(context.page_events())
        in_period, moves_of = context.period.contains, context.transitions_view
        for stored in context.page_stored_calls():
            call = stored.call
            created = call.created
            if not in_period(created):
                continue
            key = _slot_key(call)
            slot = slots.get(key)
            if slot is None:
                slot = remember(slots, key, self._slot(context, call, agreements))
            moves, changes = moves_of(call.id), retyped.get(call.id)
            if moves or changes or call.chain.forks:
                _count(context, slot, call, moves, changes or ())
                continue
            # Most calls: no recorded move, type change or fork. _count's steps for such a
            # call, without the steps that find nothing (its history is its status, first
            # read as it is: never judged outside its process, never responded to).
            tally, times, status = slot.tally, slot.times, call.status
            tally.registered += 1
            times.calls += 1
            if status in _DONE:
                tally.fulfilled += 1
                tally.first_read_done += 1
                times.fulfilment.add(created, call.fulfilled, slot.fulfilment_target)
                if status in _CONFIRMED:
                    confirmed = _confirmed_at(call, moves, slot.implicit_allowed)
                    times.confirmation.add(created, confirmed, None)

    def _slot(self, context: ReportContext, call: CallView, agreements: RegistryAnswers) -> _Slot:
        """What a call adds to, worked out from :func:`_slot_key`'s fields."""
        process = _PROCESS_NAMES[call.call_type.process]
        tally = self._tallies.get((call.unit, process))
        if tally is None:
            tally = self._tallies[call.unit, process] = _Tally(evidence=context.evidence_list())
        priority = (
            call.priority
            or agreements.matrix_for(call).derive(call.impact, call.urgency)
            or NO_PRIORITY
        )
        times = tally.classes.get(priority)
        if times is None:
            times = tally.classes[priority] = _Class()
        targets = agreements.targets_for(call)
        return _Slot(
            tally,
            times,
            targets.response if targets is not None else None,
            targets.fulfilment if targets is not None else None,
            agreements.implicit_confirmation_after(call) is not None,
        )

    def views(self, context: ReportContext) -> list[ProcessView]:
        """The views of what the pass fed."""
        units = {name: index for index, name in enumerate(context.unit_names())}
        classes = {name: index for index, name in enumerate(context.priority.classes)}

        def order(key: tuple[str, str]) -> tuple[int, str, int]:
            unit, process = key
            return units.get(unit, len(units)), unit, _PROCESS_ORDER.index(process)

        return [
            _view(unit, process, self._tallies[(unit, process)], classes)
            for unit, process in sorted(self._tallies, key=order)
        ]


def _type_changes(audit: Iterable[EventView]) -> dict[str, list[_TypeChange]]:
    """Each call's recorded type changes (audit events whose diff changes ``call_type``)."""
    found: dict[str, list[_TypeChange]] = {}
    for event in audit:
        if event.kind != "call_updated" or event.call_id is None:
            continue
        before, after = event.before, event.after
        if not (isinstance(before, dict) and isinstance(after, dict)):
            continue
        old, new = before.get("call_type"), after.get("call_type")
        if isinstance(old, str) and isinstance(new, str) and old != new:
            found.setdefault(event.call_id, []).append(_TypeChange(event.id, old, new))
    return found


def _history(call: CallView, moves: Sequence[Transition]) -> list[Status]:
    """The statuses the store recorded, in order: before the first move, after each move, and
    the current status (when the audit log ends elsewhere)."""
    history = [moves[0].before, *(move.after for move in moves)] if moves else []
    if not history or history[-1] is not call.status:
        history.append(call.status)
    return history


def _count(
    context: ReportContext,
    slot: _Slot,
    call: CallView,
    moves: Sequence[Transition],
    type_changes: Sequence[_TypeChange],
) -> None:
    """Add one call registered in the period to its unit's and process's tally (``slot``'s)."""
    tally = slot.tally
    tally.registered += 1
    status = call.status
    # Most calls have no recorded move: their history is their status.
    history = _history(call, moves) if moves else [status]
    if not _DONE.isdisjoint(history):
        tally.fulfilled += 1
        tally.first_read_done += 1 if history[0] in _DONE else 0
        back = [m for m in moves if m.before in _DONE and m.after in _NOT_DONE]
        tally.reopen_moves += len(back)
        tally.reopened += 1 if back else 0
        outside = _outside(call, history, moves, type_changes)
        tally.outside_calls += bool(outside)
        for reason, detail in outside:
            tally.outside[reason] += 1
            _keep(context, tally, call, f"{reason}: {detail}")
    if call.chain.forks:
        _forks(tally, call)
    times = slot.times
    times.calls += 1
    created = call.created
    times.response.add(created, _responded(moves), slot.response_target)
    if status in _DONE:
        fulfilled = call.fulfilled or _last_into(moves, Status.FULFILLED)
        times.fulfilment.add(created, fulfilled, slot.fulfilment_target)
    if status in _CONFIRMED:
        # Agreements set response and fulfilment targets only: confirmation has none.
        times.confirmation.add(created, _confirmed_at(call, moves, slot.implicit_allowed), None)


def _keep(context: ReportContext, tally: _Tally, call: CallView, detail: str) -> None:
    """Add the evidence of a call handled outside its process to the tally."""
    if isinstance(tally.evidence, SpooledEvidence):
        tally.evidence.append_json(context.evidence_json(call, detail))  # the same text
    else:
        tally.evidence.append(context.evidence(call, detail))


def _outside(
    call: CallView,
    history: list[Status],
    moves: Sequence[Transition],
    type_changes: Sequence[_TypeChange],
) -> list[tuple[str, str]]:
    """Why a call that reached fulfilment was handled outside its process, each reason with
    its detail (empty: it was not)."""

    def shown() -> str:
        return " -> ".join(status.value for status in history)

    # A call first read already done: how it was worked is not recorded, so it is not judged
    # on that (it is counted apart); a type change recorded since is still after fulfilment.
    judged = history[0] not in _DONE
    if judged and call.call_type is CallType.UNCLASSIFIED:
        return [(WHILE_UNCLASSIFIED, f"no process handled it (statuses recorded: {shown()})")]
    reasons: list[tuple[str, str]] = []
    if judged and _AT_WORK.isdisjoint(history):
        reasons.append(
            (
                WITHOUT_WORK,
                f"{call.call_type.value} never worked on in {call.call_type.process} "
                f"(statuses recorded: {shown()})",
            )
        )
    if not type_changes:
        return reasons
    first_done = next((move.event_id for move in moves if move.after in _DONE), None)
    if first_done is None:
        first_done = 0  # recorded done from its first read: every recorded change is after
    late = [change for change in type_changes if change.event_id >= first_done]
    if late:
        reasons.append(
            (
                RETYPED,
                "; ".join(
                    f"{change.before} -> {change.after} (audit event {change.event_id})"
                    for change in late
                ),
            )
        )
    return reasons


def _forks(tally: _Tally, call: CallView) -> None:
    evidenced: set[str] = set()
    for fork in call.chain.forks:
        process = fork.process.value if fork.process is not None else "unknown"
        tally.forks[f"{fork.role.value} {process}"] += 1
        if fork.role is not ForkRole.SECONDARY:
            continue  # the call this one works for counts the pattern, once
        if fork.process is None:
            evidenced.add(PROCESS_UNKNOWN)
        else:
            evidenced.add(_pattern_of(call.call_type, fork.process) or OUTSIDE_THE_PATTERNS)
    tally.patterns.update(evidenced)


def _pattern_of(call_type: CallType, secondary: UsmProcess) -> str | None:
    """The workflow pattern a call of this type forking to ``secondary`` follows (W3: an
    incident forking to change, W4: to operate, ...); ``None`` when USM has none."""
    return next(
        (
            found.id
            for found in WORKFLOW_PATTERNS
            if found.trigger is call_type
            and len(found.processes) > 1
            and found.processes[1] is secondary
        ),
        None,
    )


def _responded(moves: Sequence[Transition]) -> datetime | None:
    """When the call first left registered/classified for work or fulfilment (recorded)."""
    for move in moves:
        if move.before in _BEFORE_WORK and move.after in _WORKED:
            return move.at
    return None


def _last_into(moves: Sequence[Transition], status: Status) -> datetime | None:
    for move in reversed(moves):
        if move.after is status:
            return move.at
    return None


def _confirmed_at(
    call: CallView, moves: Sequence[Transition], implicit_allowed: bool
) -> datetime | None:
    """When the customer confirmed; ``None`` when unknown, or when the confirmation is implicit
    and the call's agreement does not allow implicit confirmation (``implicit_allowed``:
    whether it does; then it confirms nothing)."""
    confirmation = call.confirmation
    if confirmation is not None:
        if confirmation.kind is ConfirmationKind.IMPLICIT and not implicit_allowed:
            return None
        if confirmation.at is not None:
            return confirmation.at
    return call.confirmed or _last_into(moves, Status.CONFIRMED)


def _view(unit: str, process: str, tally: _Tally, classes: dict[str, int]) -> ProcessView:
    def order(name: str) -> tuple[int, int, str]:
        return (name == NO_PRIORITY, classes.get(name, len(classes)), name)

    return ProcessView(
        unit=unit,
        process=process,
        registered=tally.registered,
        fulfilled=tally.fulfilled,
        reopened=tally.reopened,
        reopen_rate=tally.reopened / tally.fulfilled if tally.fulfilled else None,
        reopen_moves=tally.reopen_moves,
        first_read_done=tally.first_read_done,
        outside_process=tally.outside_calls,
        outside_reasons=dict(sorted(tally.outside.items())),
        outside_evidence=tally.evidence,
        forks=dict(sorted(tally.forks.items())),
        patterns=dict(sorted(tally.patterns.items())),
        by_priority=[
            PriorityTimes(
                priority=name,
                calls=times.calls,
                response=times.response.figures(),
                fulfilment=times.fulfilment.figures(),
                confirmation=times.confirmation.figures(),
            )
            for name, times in sorted(tally.classes.items(), key=lambda item: order(item[0]))
        ],
    )
