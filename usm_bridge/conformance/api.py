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

An outcome may also say what it tested (``population``: items, size, exceptions, rate and
the rule its verdict follows) and how grave its findings are (``severity``); the report weighs
it by both (:mod:`usm_bridge.conformance.scoring`). Without a population it scores by its
verdict and weighs its severity's weight, ``medium`` unless it says.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TextIO, runtime_checkable

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

if TYPE_CHECKING:
    from .context import ReportContext
    from .report import ConformanceReport

__all__ = [
    "AcceptedException",
    "Category",
    "CheckOutcome",
    "ConformanceCheck",
    "Evidence",
    "EvidenceItems",
    "Population",
    "ReportRenderer",
    "ReportWriter",
    "Severity",
    "Threshold",
    "Verdict",
]

#: ``n/a``: the check had nothing to test (an empty population). It is never a pass: it
#: scores nothing, weighs nothing, and says so in every format.
Verdict = Literal["pass", "warn", "fail", "n/a"]
#: Which part of the report an outcome belongs to; plugins may leave it at ``custom``.
Category = Literal["mapping", "data", "chain", "custom"]
#: How much a check weighs in the scores (see :mod:`usm_bridge.conformance.scoring`).
Severity = Literal["high", "medium", "low"]


class Threshold(BaseModel):
    """The exception rates a check tolerates: pass up to ``pass_up_to``, warn up to
    ``warn_up_to``, fail above. Rates are fractions from 0 to 1 (0.05 is 5%)."""

    model_config = ConfigDict(extra="forbid")

    pass_up_to: float = Field(ge=0, le=1)
    warn_up_to: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _warn_not_below_pass(self) -> Threshold:
        if self.warn_up_to < self.pass_up_to:
            raise ValueError("warn_up_to must not be below pass_up_to")
        return self

    def verdict(self, rate: float) -> Literal["pass", "warn", "fail"]:
        if rate <= self.pass_up_to:
            return "pass"
        return "warn" if rate <= self.warn_up_to else "fail"

    def sentence(self) -> str:
        """The rule in one sentence, with the rates as percentages."""
        if self.warn_up_to <= self.pass_up_to:
            return f"Pass when the exception rate is at most {_percent(self.pass_up_to)}, else fail"
        return (
            f"Pass when the exception rate is at most {_percent(self.pass_up_to)}, warn up to "
            f"{_percent(self.warn_up_to)}, fail above"
        )


def _percent(rate: float) -> str:
    return f"{100 * rate:.4g}%"


class Population(BaseModel):
    """What a check tested: how many items of which kind, how many of them are exceptions,
    and the rule that turned the rate into the verdict."""

    model_config = ConfigDict(extra="forbid")

    items: str = Field(description="what was tested, plural: calls, observed transitions ...")
    size: int = Field(ge=0, description="how many items were tested")
    exceptions: int = Field(ge=0, description="how many of them break the rule")
    rate: float | None = Field(description="exceptions / size; null when nothing was tested")
    threshold: Threshold | None = Field(
        default=None, description="null when the check decides its verdict by its own rule"
    )
    threshold_from: str | None = Field(
        default=None, description="the config table that set the threshold, or the check's default"
    )
    rule: str = Field(description="how the verdict follows, in one sentence")


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


def _keep_spooled(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # Spooled items were validated when they were written: never read them all back here.
    from .evidence_spool import SpooledEvidence

    if isinstance(value, SpooledEvidence):
        return value
    validated = handler(value)
    # A list, whatever sequence was given, as the field always held.
    return validated if isinstance(validated, list) else list(validated)


def _dump_evidence(value: Sequence[Evidence]) -> list[Evidence]:
    # Spooled items are read back whole here: correct for any caller, but in memory; the JSON
    # renderer streams them instead (:mod:`.json_stream`).
    return value if isinstance(value, list) else list(value)


#: Evidence items: a list, or a report's items on disk
#: (:class:`.evidence_spool.SpooledEvidence`): a report over a million calls lists more
#: exceptions than it can hold in memory. Read it as a sequence; the JSON format is a list.
EvidenceItems = Annotated[
    Sequence[Evidence],
    WrapValidator(_keep_spooled),
    PlainSerializer(_dump_evidence, return_type=list[Evidence]),
]


class AcceptedException(BaseModel):
    """A finding an unexpired entry of the accepted-exceptions register covers: shown apart,
    not counted as an exception (:mod:`usm_bridge.conformance.acceptance`)."""

    model_config = ConfigDict(extra="forbid")

    item: Evidence
    entry: int = Field(description="the entry's number in the register, from 1")
    reason: str
    approver: str
    expires: date


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
    evidence: EvidenceItems = Field(default_factory=list)
    #: How many records the finding covers; ``evidence`` may list only the first of them.
    count: int | None = None
    #: Figures behind the verdict (shares, ages, counts by value) for charts and pipelines.
    metrics: dict[str, float | int | str] = Field(default_factory=dict)
    #: What the check tested and how the verdict follows (built-in checks always say).
    population: Population | None = None
    severity: Severity = "medium"
    #: Filled when the report is assembled (:mod:`usm_bridge.conformance.scoring`).
    score: float | None = Field(default=None, description="0-100, this outcome's own score")
    weight: float | None = Field(default=None, description="its weight in the unit's score")
    #: Items of the population drawn for manual testing (``--sample N --seed S``).
    sample: list[Evidence] = Field(default_factory=list)
    #: Findings the accepted-exceptions register covers; not in ``evidence`` nor the counts.
    accepted: list[AcceptedException] = Field(default_factory=list)


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


@runtime_checkable
class ReportWriter(ReportRenderer, Protocol):
    """A renderer that can also write its text piece by piece (the JSON one): what
    ``report conformance -o FILE`` and its standard output use, so that a report listing
    millions of exceptions is never one string in memory."""

    def write(self, report: ConformanceReport, stream: TextIO) -> None:
        """Write exactly what :meth:`render` returns to ``stream``."""
