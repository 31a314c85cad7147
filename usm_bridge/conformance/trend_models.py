"""The trend section of the report model: the previous period compared, and the last periods.

Kept apart from :mod:`usm_bridge.conformance.report` so that the figures over time grow without
touching the report's core; :mod:`usm_bridge.conformance.trends` fills them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Comparison", "ScoreChange", "TrendPoint", "TrendSeries", "Trends"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScoreChange(_Model):
    """One score then and now: the enterprise or a unit, overall or for one check."""

    unit: str | None = Field(description="null: the enterprise (or an enterprise-wide check)")
    check_id: str | None = Field(description="null: the overall score")
    score_then: float | None = Field(description="null: no figure in the previous period")
    score_now: float | None
    change: float | None = Field(description="now minus then, in points")
    exceptions_then: int | None
    exceptions_now: int


class Comparison(_Model):
    """The previous period of the same length, and where its figures come from."""

    since: datetime
    until: datetime
    label: str
    source: Literal["recorded", "computed"] = Field(
        description="recorded: a stored run of that period; computed: from the store's data now"
    )
    note: str
    changes: list[ScoreChange]


class TrendPoint(_Model):
    label: str
    since: datetime
    until: datetime | None
    score: float | None
    current: bool = Field(default=False, description="this report's own period")


class TrendSeries(_Model):
    """The scores of the last periods for the enterprise (``unit`` null) or one unit."""

    unit: str | None
    title: str
    points: list[TrendPoint]


class Trends(_Model):
    comparison: Comparison | None = None
    comparison_note: str | None = Field(
        default=None, description="why there is no comparison, when there is none"
    )
    series: list[TrendSeries] = Field(default_factory=list)
    recorded: bool = Field(default=False, description="this run's scores were stored")
    record_note: str = ""
