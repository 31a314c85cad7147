"""Reports built without a store, for tests of what the renderers and exports do with text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from usm_bridge.conformance.api import CheckOutcome, Evidence
from usm_bridge.conformance.report import ChainView, ConformanceReport, PeriodInfo
from usm_bridge.conformance.scoring import score


def report_of(
    evidence: list[Evidence],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    label: str = "all time",
    **outcome: Any,
) -> ConformanceReport:
    """A report with one failed outcome (of ``acme.titles`` in unit hr, unless ``outcome``
    says otherwise) holding ``evidence``."""
    fields: dict[str, Any] = {
        "check_id": "acme.titles",
        "title": "Titles are plain",
        "verdict": "fail",
        "summary": f"{len(evidence)} findings",
        "unit": "hr",
        **outcome,
    }
    found = CheckOutcome(evidence=evidence, **fields)
    return ConformanceReport(
        generated_at=datetime(2026, 3, 10, tzinfo=UTC),
        period=PeriodInfo(since=since, until=until, label=label),
        enterprise=score([found]),
        units=[],
        checks=[],
        outcomes=[found],
        chain=ChainView(units=[], routes=[]),
    )
