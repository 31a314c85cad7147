"""What a conformance check and a report renderer are, for plugins to implement.

The full report engine comes later; these types are the contract plugins write against, so a
plugin written today keeps working when the engine arrives.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CheckOutcome", "ConformanceCheck", "Evidence", "ReportRenderer", "Verdict"]

Verdict = Literal["pass", "warn", "fail"]


class Evidence(BaseModel):
    """One record that supports a verdict, linked to the tool's own URL where known."""

    model_config = ConfigDict(extra="forbid")

    detail: str
    call_id: str | None = None
    remote_key: str | None = None
    url: str | None = None


class CheckOutcome(BaseModel):
    """The result of one check for one unit (or the whole enterprise when ``unit`` is None)."""

    model_config = ConfigDict(extra="forbid")

    check_id: str
    title: str
    verdict: Verdict
    summary: str
    unit: str | None = None
    evidence: list[Evidence] = Field(default_factory=list)


@runtime_checkable
class ConformanceCheck(Protocol):
    """A rule an auditor applies. ``run`` receives the report context (store, config, period)."""

    id: str
    title: str

    def run(self, context: Any) -> list[CheckOutcome]: ...


@runtime_checkable
class ReportRenderer(Protocol):
    """Turns a report into one output format (``html``, ``json``, ``markdown``, ``junit`` ...)."""

    format: str

    def render(self, report: Any) -> str: ...
