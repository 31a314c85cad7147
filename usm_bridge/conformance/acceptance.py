"""Applying the accepted-exceptions register to a report's outcomes.

A finding an unexpired entry covers moves from the outcome's ``evidence`` to its
``accepted`` list and leaves the counts: the population's exceptions and rate, and so the
verdict (by the outcome's threshold) and the score. An entry past its ``expires`` date accepts
nothing; the findings it would have covered stay exceptions and the entry is reported as
expired. An unexpired entry that covers nothing is reported as unmatched: a stale acceptance
is an audit finding too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from .api import AcceptedException, CheckOutcome, Evidence
from .evidence_spool import SpooledEvidence
from .register import ExceptionsRegister, RegisterEntry
from .report import RegisterEntryStatus, RegisterSummary

__all__ = ["apply_register", "covers"]


def covers(entry: RegisterEntry, outcome: CheckOutcome, item: Evidence) -> bool:
    """Whether ``entry`` covers the finding ``item`` of ``outcome`` (expiry aside)."""
    if entry.check != outcome.check_id:
        return False
    if entry.reference is not None:
        return entry.reference in (item.remote_key, item.call_id)
    chosen = entry.filter
    if chosen is None:  # pragma: no cover - the register's validator requires one of the two
        return False
    opened = item.opened.date() if item.opened is not None else None
    return (
        (chosen.unit is None or chosen.unit == outcome.unit)
        and (chosen.instance is None or chosen.instance in (item.instance, outcome.instance))
        and (chosen.detail is None or chosen.detail.casefold() in item.detail.casefold())
        and (chosen.opened_since is None or (opened is not None and opened >= chosen.opened_since))
        and (chosen.opened_until is None or (opened is not None and opened <= chosen.opened_until))
    )


def _settle(outcome: CheckOutcome, accepted: int) -> None:
    """Take ``accepted`` findings out of the outcome's counts and judge it again."""
    if outcome.count is not None:
        outcome.count = max(0, outcome.count - accepted)
    population = outcome.population
    if population is not None:
        population.exceptions = max(0, population.exceptions - accepted)
        population.rate = population.exceptions / population.size if population.size else None
        if population.threshold is not None and population.rate is not None:
            outcome.verdict = population.threshold.verdict(population.rate)
        elif population.exceptions == 0:
            outcome.verdict = "pass"
    elif not outcome.evidence:
        # Without a population the findings are the evidence: none left, nothing to fault.
        outcome.verdict = "pass"
    outcome.summary += f" ({accepted} accepted in the exceptions register)"


def _covers_text(entry: RegisterEntry) -> str:
    if entry.reference is not None:
        return f"reference {entry.reference}"
    assert entry.filter is not None
    parts = entry.filter.model_dump(exclude_none=True)
    return "filter " + ", ".join(f"{key}={value}" for key, value in parts.items())


def _mark_sample(outcome: CheckOutcome) -> None:
    """Say in the outcome's sample which drawn items are accepted exceptions, not exceptions
    (a sampled item's detail reads ``exception: WHAT``, several joined by ``; ``)."""
    entry_of = {(a.item.call_id, a.item.detail): a.entry for a in outcome.accepted}
    for item in outcome.sample:
        if not item.detail.startswith("exception: "):
            continue
        parts = item.detail.removeprefix("exception: ").split("; ")
        entries = [entry_of.get((item.call_id, part)) for part in parts]
        if all(entry is not None for entry in entries):
            numbers = ", ".join(str(entry) for entry in dict.fromkeys(entries))
            item.detail = f"accepted exception (register entry {numbers}): " + "; ".join(parts)


def apply_register(
    outcomes: Sequence[CheckOutcome], register: ExceptionsRegister, today: date
) -> RegisterSummary:
    """Move the findings the register accepts out of ``outcomes`` (in place) and say what each
    entry did. The first unexpired entry covering a finding accepts it."""
    entries = register.entries
    live = [index for index, entry in enumerate(entries) if entry.expires >= today]
    matched = [0] * len(entries)
    for outcome in outcomes:
        evidence = outcome.evidence
        # Spooled findings are kept in the same spool: they may be more than memory holds.
        kept: list[Evidence] | SpooledEvidence = (
            evidence.new_like() if isinstance(evidence, SpooledEvidence) else []
        )
        for item in evidence:
            index = next((i for i in live if covers(entries[i], outcome, item)), None)
            if index is None:
                kept.append(item)
                for i, entry in enumerate(entries):
                    if entry.expires < today and covers(entry, outcome, item):
                        matched[i] += 1
                continue
            entry = entries[index]
            matched[index] += 1
            outcome.accepted.append(
                AcceptedException(
                    item=item,
                    entry=index + 1,
                    reason=entry.reason,
                    approver=entry.approver,
                    expires=entry.expires,
                )
            )
        if len(kept) != len(evidence):
            accepted = len(evidence) - len(kept)
            outcome.evidence = kept
            _settle(outcome, accepted)
            _mark_sample(outcome)
    return RegisterSummary(
        path=str(register.path),
        entries=[
            RegisterEntryStatus(
                entry=index + 1,
                line=register.lines[index],
                check=entry.check,
                covers=_covers_text(entry),
                reason=entry.reason,
                approver=entry.approver,
                approved=entry.approved,
                expires=entry.expires,
                status=(
                    "expired"
                    if entry.expires < today
                    else "applied"
                    if matched[index]
                    else "unmatched"
                ),
                matched=matched[index],
            )
            for index, entry in enumerate(entries)
        ],
    )
