"""``data.stored-calls``: the stored calls the model refuses, listed as exceptions.

A report is signed by an auditor: a call the report cannot read (see :mod:`.stored_rows`) is
judged by no other check, so it must not pass unnoticed. Each unit with such calls gets one
failing outcome that lists every one by id and says why, in the model's words. The outcome
exists only where there are such calls, so a report over a sound store is what it was.
"""

from __future__ import annotations

from .api import CheckOutcome, Evidence, Population
from .context import ReportContext
from .report import CheckInfo

__all__ = ["CHECK_ID", "unreadable_check_info", "unreadable_outcomes"]

CHECK_ID = "data.stored-calls"
TITLE = "Stored calls can be read"


def unreadable_check_info() -> CheckInfo:
    """The check's entry among the report's checks (shown when it has outcomes)."""
    return CheckInfo(
        id=CHECK_ID,
        title=TITLE,
        description=(
            "Every stored call validates against the canonical model; one that does not is "
            "judged by no other check and is listed here with its id."
        ),
        plugin=None,
    )


def unreadable_outcomes(context: ReportContext) -> list[CheckOutcome]:
    """One failing outcome per unit with stored calls the model refuses; none otherwise."""
    by_unit: dict[str, list[Evidence]] = {}
    for bad in context.unreadable_calls():
        by_unit.setdefault(bad.unit, []).append(
            Evidence(
                # The id in the words too: not every format shows an item's call id.
                detail=f"stored call {bad.id} no longer validates: {bad.reason}"[:500],
                call_id=bad.id,
                at=bad.created_at,
            )
        )
    outcomes = []
    for unit, evidence in by_unit.items():
        found = len(evidence)
        size = context.call_count(unit) + found
        outcomes.append(
            CheckOutcome(
                check_id=CHECK_ID,
                title=TITLE,
                verdict="fail",
                summary=f"{found} stored call(s) of the unit cannot be read: no check judged them",
                unit=unit,
                category="data",
                evidence=evidence,
                count=found,
                severity="high",
                population=Population(
                    items="stored calls",
                    size=size,
                    exceptions=found,
                    rate=found / size,
                    rule="By the check's own rule: fail when any stored call cannot be read",
                ),
            )
        )
    return outcomes
