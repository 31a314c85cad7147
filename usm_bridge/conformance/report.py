"""The report model: what every renderer receives, and what the JSON format is.

The JSON format is this model dumped as JSON; its schema is published as
``usm_bridge/templates/conformance-report.schema.json`` (``usm-bridge report schema`` prints
it) and a test keeps the file equal to :func:`report_json_schema`. Bump
:data:`REPORT_FORMAT_VERSION` on any incompatible change.
"""

from __future__ import annotations

from datetime import date, datetime
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .api import CheckOutcome, Verdict
from .process_view_models import ProcessView
from .provenance import Provenance, SignOff
from .sampling import SamplingInfo
from .trend_models import Trends

__all__ = [
    "REPORT_FORMAT_VERSION",
    "SCHEMA_ID",
    "ChainRoute",
    "ChainUnit",
    "ChainView",
    "CheckInfo",
    "ConformanceReport",
    "InstanceSummary",
    "PeriodInfo",
    "RegisterEntryStatus",
    "RegisterSummary",
    "Score",
    "ScoringRule",
    "UnitSummary",
    "published_schema",
    "report_json_schema",
]

REPORT_FORMAT_VERSION = 1
SCHEMA_ID = "https://usm-bridge.dev/schemas/conformance-report-v1.json"
SCHEMA_RESOURCE = "conformance-report.schema.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PeriodInfo(_Model):
    """The period covered; ``null`` leaves an end open."""

    since: datetime | None
    until: datetime | None
    label: str


class Score(_Model):
    """0-100: the weighted mean of the outcomes' scores (``scoring`` in the report states the
    rule; :mod:`usm_bridge.conformance.scoring`)."""

    score: float | None = Field(description="null when no check applied")
    passed: int = 0
    warned: int = 0
    failed: int = 0
    not_applicable: int = Field(default=0, description="outcomes that had nothing to test")
    verdict: Verdict = Field(default="n/a", description="the worst verdict; n/a when none applied")


class InstanceSummary(_Model):
    """A connector instance: its mapping and where its vocabulary came from."""

    name: str
    kind: str
    mapping: str | None
    vocabulary_source: str = Field(description="live, file or none")
    vocabulary_note: str | None = None


class UnitSummary(_Model):
    name: str
    title: str
    score: Score
    calls: int = Field(description="calls of the unit in the period")
    instances: list[InstanceSummary] = Field(default_factory=list)


class CheckInfo(_Model):
    """A check that ran: its id, title and one line on what it verifies."""

    id: str
    title: str
    description: str = ""
    plugin: str | None = None


class ChainUnit(_Model):
    name: str
    title: str
    calls: int
    score: float | None = None


class ChainRoute(_Model):
    """A route between two units and the work that passed along it in the period."""

    name: str
    from_unit: str
    to_unit: str
    configured: bool
    volume: int = Field(description="supplier calls raised through the route in the period")
    open: int = Field(description="of those, not yet fulfilled, closed or cancelled")
    median_handoff_seconds: float | None = Field(
        description="median time from the upstream call's registration to its supplier call's"
    )


class ChainView(_Model):
    units: list[ChainUnit]
    routes: list[ChainRoute]


class ScoringRule(_Model):
    """How the scores follow from each outcome's score and weight, stated in the report."""

    text: str
    severity_weights: dict[str, int]


class RegisterEntryStatus(_Model):
    """An entry of the accepted-exceptions register and what it did in this report."""

    entry: int = Field(description="its number in the register, from 1")
    line: int | None = Field(description="the line it starts on")
    check: str
    covers: str = Field(description="the reference or the filter, as written")
    reason: str
    approver: str
    approved: date
    expires: date
    status: Literal["applied", "unmatched", "expired"] = Field(
        description="applied: accepted findings; unmatched: covered nothing (stale); "
        "expired: past its expiry, accepts nothing"
    )
    matched: int = Field(
        description="findings accepted; for an expired entry, those it would have covered "
        "(they count as exceptions again)"
    )


class RegisterSummary(_Model):
    """The accepted-exceptions register the report applied."""

    path: str
    entries: list[RegisterEntryStatus]

    def flagged(self) -> list[RegisterEntryStatus]:
        """The entries an auditor should look at: expired and unmatched ones."""
        return [entry for entry in self.entries if entry.status != "applied"]


class ConformanceReport(_Model):
    """A conformance report: scores, every outcome with its evidence, and the chain."""

    format_version: int = REPORT_FORMAT_VERSION
    generated_at: datetime
    period: PeriodInfo
    store: str | None = Field(default=None, description="the store, password masked")
    enterprise: Score
    units: list[UnitSummary]
    checks: list[CheckInfo]
    outcomes: list[CheckOutcome]
    chain: ChainView
    process_views: list[ProcessView] = Field(
        default_factory=list,
        description="per unit and process: volumes, times against targets, reopens, calls "
        "handled outside their process, forks (docs/conformance-process-views.md)",
    )
    exception_exports: list[str] = Field(
        default_factory=list,
        description="files written with this report that list every exception (CSV, XLSX)",
    )
    trends: Trends | None = Field(
        default=None, description="the previous period compared and the last periods' scores"
    )
    provenance: Provenance | None = Field(default=None, description="what produced the report")
    sign_off: SignOff = Field(default_factory=SignOff)
    scoring: ScoringRule | None = Field(default=None, description="how the scores are computed")
    sampling: SamplingInfo | None = Field(
        default=None, description="the sample of each check's population (--sample, --seed)"
    )

    exceptions_register: RegisterSummary | None = Field(
        default=None, description="the accepted-exceptions register applied, when one is"
    )

    def outcomes_of(self, unit: str | None) -> list[CheckOutcome]:
        return [outcome for outcome in self.outcomes if outcome.unit == unit]

    def unit(self, name: str) -> UnitSummary | None:
        return next((unit for unit in self.units if unit.name == name), None)


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the JSON format, generated from the model."""
    schema = ConformanceReport.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "usm-bridge conformance report",
        **{key: value for key, value in schema.items() if key != "title"},
    }


def published_schema() -> str:
    """The published schema file's text (shipped with the package)."""
    return (
        resources.files("usm_bridge")
        .joinpath("templates", SCHEMA_RESOURCE)
        .read_text(encoding="utf-8")
    )
