"""The per-process views of the conformance report, as the JSON format carries them.

Computed by :mod:`usm_bridge.conformance.process_views`; every figure is defined in
``docs/conformance-process-views.md``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .api import EvidenceItems

__all__ = ["PriorityTimes", "ProcessView", "TimeFigures"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TimeFigures(_Model):
    """Times from registration to one moment (response, fulfilment, confirmation) of the calls
    of one priority class, against the targets their agreements set."""

    measured: int = Field(description="calls whose moment is known")
    median_seconds: float | None = Field(description="null when none was measured")
    p90_seconds: float | None = Field(description="nearest rank; null when none was measured")
    with_target: int = Field(description="measured calls whose agreement sets a target")
    within_target: int = Field(description="of those, the calls at or under their target")
    share_within_target: float | None = Field(
        description="within_target / with_target; null: no target (no agreement gives one)"
    )
    targets_seconds: list[float] = Field(
        default_factory=list, description="the distinct targets that applied, ascending"
    )


class PriorityTimes(_Model):
    """The times of one priority class of a unit's process."""

    priority: str = Field(description='the priority class; "none" when the call has none')
    calls: int = Field(description="calls of the class registered in the period")
    response: TimeFigures = Field(description="until the call first left registered/classified")
    fulfilment: TimeFigures
    confirmation: TimeFigures = Field(
        description="agreements set no confirmation target: always 'no target'"
    )


class ProcessView(_Model):
    """One process (or ``unclassified``) of one unit over the calls registered in the period."""

    unit: str
    process: str = Field(description="agree, change, recover, operate, improve or unclassified")
    registered: int = Field(description="calls registered in the period")
    fulfilled: int = Field(description="of those, calls that reached fulfilment at least once")
    reopened: int = Field(
        description="of the fulfilled, calls sent back to work at least once (reopens and "
        "customers' rejections together: the store does not record who sent a call back)"
    )
    reopen_rate: float | None = Field(description="reopened / fulfilled; null when none")
    reopen_moves: int = Field(description="moves back to work, all counted")
    first_read_done: int = Field(
        description="of the fulfilled, calls the bridge first read already fulfilled, confirmed "
        "or closed: their work is not recorded, so not judged on it"
    )
    outside_process: int = Field(description="calls handled outside their process")
    outside_reasons: dict[str, int] = Field(
        default_factory=dict, description="how many calls for each reason"
    )
    outside_evidence: EvidenceItems = Field(
        default_factory=list, description="each call handled outside its process, with why"
    )
    forks: dict[str, int] = Field(
        default_factory=dict,
        description='forks recorded on the calls, by "ROLE PROCESS" (secondary change, ...)',
    )
    patterns: dict[str, int] = Field(
        default_factory=dict,
        description="calls whose secondary forks evidence a workflow pattern (W3, W4, ...); "
        '"outside the patterns" for a fork no pattern has, "process unknown" when the tool '
        "does not say the other call's process",
    )
    by_priority: list[PriorityTimes] = Field(default_factory=list)
