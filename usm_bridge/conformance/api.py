"""What a conformance check and a report renderer are, for plugins to implement.

A check is any object with an ``id``, a ``title`` and a ``run(context)`` method returning
:class:`CheckOutcome` objects; a renderer is any object with a ``format`` and a
``render(report)`` method returning text. Both are contributed through the hooks
``usm_bridge_conformance_checks`` and ``usm_bridge_report_renderers``; the built-in ones are
plugins too (:mod:`usm_bridge.conformance.checks`, :mod:`usm_bridge.conformance.renderers`).

A minimal organisation rule::

    from usm_bridge.conformance.api import CheckOutcome, Evidence
    from usm_bridge.hookspecs import hookimpl

    class NoEmptyTitles:
        id = "acme.no-empty-titles"
        title = "Every call has a title a person can read"

        def run(self, context):
            outcomes = []
            for unit in context.unit_names():
                bad = [c for c in context.calls_of(unit) if len(c.title.strip()) < 5]
                outcomes.append(CheckOutcome(
                    check_id=self.id, title=self.title, unit=unit,
                    verdict="fail" if bad else "pass",
                    summary=f"{len(bad)} call(s) with a short title",
                    evidence=[context.evidence(c, "title too short") for c in bad],
                ))
            return outcomes

    @hookimpl
    def usm_bridge_conformance_checks():
        return [NoEmptyTitles()]

``context`` is a :class:`usm_bridge.conformance.context.ReportContext`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from .context import ReportContext
    from .report import ConformanceReport

__all__ = ["Category", "CheckOutcome", "ConformanceCheck", "Evidence", "ReportRenderer", "Verdict"]

Verdict = Literal["pass", "warn", "fail"]
#: Which part of the report an outcome belongs to; plugins may leave it at ``custom``.
Category = Literal["mapping", "data", "chain", "custom"]


class Evidence(BaseModel):
    """One record that supports a verdict, linked to the tool's own URL where known.

    Every text here may come from a ticket: renderers escape it, and only ``http``/``https``
    URLs ever become links.
    """

    model_config = ConfigDict(extra="forbid")

    detail: str
    call_id: str | None = None
    remote_key: str | None = None
    url: str | None = None
    #: The call's title as its tool holds it (untrusted ticket text).
    title: str | None = None
    #: The connector instance the record belongs to, where the outcome names none.
    instance: str | None = None
    #: When the call was opened and closed in its tool (a closed or cancelled call whose tool
    #: does not say when: its last change).
    opened: datetime | None = None
    closed: datetime | None = None
    #: When the finding itself happened, where it has its own time (a dead letter: its first
    #: failure).
    at: datetime | None = None


class CheckOutcome(BaseModel):
    """The result of one check for one unit (or the whole enterprise when ``unit`` is None)."""

    model_config = ConfigDict(extra="forbid")

    check_id: str
    title: str
    verdict: Verdict
    summary: str
    unit: str | None = None
    #: The connector instance the outcome is about (mapping checks are per instance).
    instance: str | None = None
    category: Category = "custom"
    evidence: list[Evidence] = Field(default_factory=list)
    #: How many records the finding covers; ``evidence`` may list only the first of them.
    count: int | None = None
    #: Figures behind the verdict (shares, ages, counts by value) for charts and pipelines.
    metrics: dict[str, float | int | str] = Field(default_factory=dict)


@runtime_checkable
class ConformanceCheck(Protocol):
    """A rule an auditor applies. ``run`` receives the :class:`ReportContext`.

    ``id`` (unique, dotted: ``acme.no-empty-titles``) and ``title`` may be plain class
    attributes.
    """

    @property
    def id(self) -> str: ...

    @property
    def title(self) -> str: ...

    def run(self, context: ReportContext) -> list[CheckOutcome]: ...


@runtime_checkable
class ReportRenderer(Protocol):
    """Turns a report into one output format (``html``, ``json``, ``markdown``, ``junit`` ...)."""

    @property
    def format(self) -> str: ...

    def render(self, report: ConformanceReport) -> str: ...
