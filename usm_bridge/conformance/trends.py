"""Scores over time: the previous period compared, the last periods drawn, this run recorded.

The previous period has the same length and ends where this one starts: the previous month
of a month, the previous quarter of a quarter, the previous year of a year (a period from the
first of a month to the first of a later month is shifted by whole months); any other closed
period, or ``--period 30d`` (ending now), is shifted by its duration. "All time" has none.

Its figures come from a recorded run of exactly that period when the store holds one (the
latest recording), else they are computed now from the store's data for that period: a
recording keeps the verdicts as they were, a computation applies today's mappings and checks.
The report says which.

A report records its scores only with ``--record``: ``report`` is a read-only command. A store
older than the code is refused by ``report`` anyway (``db upgrade`` brings it forward), so
``--record`` always writes into a store at the code's revision. Only a period with both ends
is recorded; recording it again with the same config replaces its earlier rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from ..errors import ConfigurationError
from ..store import Store
from ..store.conformance_scores import (
    RecordedScore,
    list_recorded_scores,
    replace_recorded_scores,
)
from .api import CheckOutcome
from .period import Period, _month_start, _show
from .report import ConformanceReport
from .scoring import score
from .trend_models import Comparison, ScoreChange, TrendPoint, Trends, TrendSeries

__all__ = [
    "TREND_PERIODS",
    "Figure",
    "build_trends",
    "check_recordable",
    "figures_of",
    "previous_period",
]

#: How many periods a trend line shows, this one included.
TREND_PERIODS = 12

#: (unit, check id); "" stands for the enterprise and for the overall score.
Key = tuple[str, str]


@dataclass(frozen=True)
class Figure:
    score: float | None
    verdict: str
    exceptions: int


def _exceptions(outcomes: Iterable[CheckOutcome]) -> int:
    # As the HTML counts them: every evidence item, or the check's count when it lists fewer.
    return sum(max(o.count or 0, len(o.evidence)) for o in outcomes)


def figures_of(report: ConformanceReport) -> dict[Key, Figure]:
    """The report's scores and exceptions: the enterprise, each unit, each check per unit."""
    figures: dict[Key, Figure] = {
        ("", ""): Figure(
            report.enterprise.score, report.enterprise.verdict, _exceptions(report.outcomes)
        )
    }
    for unit in report.units:
        outcomes = report.outcomes_of(unit.name)
        figures[(unit.name, "")] = Figure(
            unit.score.score, unit.score.verdict, _exceptions(outcomes)
        )
    by_check: dict[Key, list[CheckOutcome]] = defaultdict(list)
    for outcome in report.outcomes:
        by_check[(outcome.unit or "", outcome.check_id)].append(outcome)
    for key, outcomes in by_check.items():
        result = score(outcomes)
        figures[key] = Figure(result.score, result.verdict, _exceptions(outcomes))
    return figures


def _months(period: Period) -> int | None:
    """Whole months from a first of the month to a first of the month, else ``None``."""
    since, until = period.since, period.until
    if since is None or until is None:
        return None
    starts = [
        m.day == 1 and (m.hour, m.minute, m.second, m.microsecond) == (0, 0, 0, 0)
        for m in (since, until)
    ]
    if not all(starts):
        return None
    return (until.year - since.year) * 12 + until.month - since.month


def _calendar_label(since: datetime, months: int) -> str:
    if months == 1:
        return f"{since.year}-{since.month:02d}"
    if months == 3 and since.month % 3 == 1:
        return f"{since.year}-Q{since.month // 3 + 1}"
    if months == 12 and since.month == 1:
        return str(since.year)
    return f"{_show(since, '...')} to {_show(_month_start(since.year, since.month + months), '')}"


def _shift(period: Period, now: datetime, steps: int) -> Period | None:
    """The period ``steps`` lengths before ``period`` (1: the previous one)."""
    if period.since is None:
        return None
    months = _months(period)
    if months:
        first = period.since.month - steps * months
        since = _month_start(period.since.year, first)
        return Period(
            since, _month_start(period.since.year, first + months), _calendar_label(since, months)
        )
    until = period.until or now
    length = until - period.since
    since, end = period.since - steps * length, until - steps * length
    return Period(since, end, f"{_show(since, '...')} to {_show(end, 'now')}")


def previous_period(period: Period, now: datetime) -> Period | None:
    """The period of the same length just before ``period``; ``None`` for all time."""
    return _shift(period, now, 1)


def check_recordable(period: Period, *, whole: bool = True) -> None:
    """``--record`` needs a period with both ends, and every unit (``whole``).

    :raises ConfigurationError: the period is open at either end, or the report covers only
        some units (exit code 2).
    """
    if not whole:
        raise ConfigurationError(
            "--record keeps the whole enterprise's scores: leave out --unit to record"
        )
    if period.since is None or period.until is None:
        raise ConfigurationError(
            f"--record needs a period with both ends, not {period.label!r}",
            expected="--period 2026-03, 2026-Q1 or 2026, or --since with --until",
        )


@dataclass(frozen=True)
class _Run:
    recorded_at: datetime
    figures: dict[Key, Figure]


def _latest_runs(rows: list[RecordedScore]) -> dict[tuple[datetime, datetime], _Run]:
    """Per period, its latest recording (rows come latest first within a period)."""
    runs: dict[tuple[datetime, datetime], _Run] = {}
    chosen: dict[tuple[datetime, datetime], tuple[datetime, str]] = {}
    for row in rows:
        span = (row.period_since, row.period_until)
        pick = chosen.setdefault(span, (row.recorded_at, row.config_digest))
        if pick != (row.recorded_at, row.config_digest):
            continue
        run = runs.setdefault(span, _Run(row.recorded_at, {}))
        run.figures[(row.unit, row.check_id)] = Figure(row.score, row.verdict, row.exceptions)
    return runs


def _changes(now: dict[Key, Figure], then: dict[Key, Figure] | None) -> list[ScoreChange]:
    changes = []
    # The enterprise first, then unit by unit; each scope's overall score before its checks.
    for key, figure in sorted(now.items(), key=lambda item: item[0]):
        before = (then or {}).get(key)
        change = None
        if before is not None and before.score is not None and figure.score is not None:
            change = round(figure.score - before.score, 1)
        changes.append(
            ScoreChange(
                unit=key[0] or None,
                check_id=key[1] or None,
                score_then=before.score if before else None,
                score_now=figure.score,
                change=change,
                exceptions_then=before.exceptions if before else None,
                exceptions_now=figure.exceptions,
            )
        )
    return changes


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def build_trends(
    report: ConformanceReport,
    period: Period,
    store: Store,
    *,
    now: datetime,
    compute: Callable[[Period], ConformanceReport],
    record: bool = False,
    config_digest: str = "-",
    whole: bool = True,
) -> Trends:
    """The trend section of ``report`` over ``period``; records its scores when ``record``.

    :param compute: builds the report of another period from the store's data, for a previous
        period that was never recorded.
    :param whole: the report covers every unit. A report of some units (``--unit``) is never
        recorded, computes its previous period with the same units, and draws no enterprise
        line: a recorded run's enterprise figures cover every unit.
    """
    now_figures = figures_of(report)
    trends = Trends()
    if record:
        check_recordable(period, whole=whole)
        trends.recorded, trends.record_note = _record(
            report, period, store, now_figures, config_digest, now
        )
    else:
        trends.record_note = "not recorded (report conformance --record keeps a run's scores)"
    with store.begin(readonly=True) as tx:
        runs = _latest_runs(list_recorded_scores(tx, until_at_most=period.until or now))
    previous = previous_period(period, now)
    if previous is None or previous.since is None or previous.until is None:
        trends.comparison_note = f"{period.label} has no previous period to compare with"
    else:
        stored = runs.get((previous.since, previous.until)) if whole else None
        source: Literal["recorded", "computed"]
        if stored is not None:
            then, source = stored.figures, "recorded"
            note = f"from the run of {previous.label} recorded {_when(stored.recorded_at)}"
        else:
            then, source = figures_of(compute(previous)), "computed"
            why = "no recorded run" if whole else "the same units"
            note = f"computed now from the store's data for {previous.label} ({why})"
        trends.comparison = Comparison(
            since=previous.since,
            until=previous.until,
            label=previous.label,
            source=source,
            note=note,
            changes=_changes(now_figures, then),
        )
    trends.series = _series(report, period, now, runs, now_figures)
    if not whole:
        trends.series = [line for line in trends.series if line.unit is not None]
    return trends


def _series(
    report: ConformanceReport,
    period: Period,
    now: datetime,
    runs: dict[tuple[datetime, datetime], _Run],
    current: dict[Key, Figure],
) -> list[TrendSeries]:
    """Up to :data:`TREND_PERIODS` points per scope: recorded earlier periods, then this one."""
    earlier: list[tuple[Period, dict[Key, Figure]]] = []
    for steps in range(TREND_PERIODS - 1, 0, -1):
        before = _shift(period, now, steps)
        if before is None or before.since is None or before.until is None:
            break
        run = runs.get((before.since, before.until))
        if run is not None:
            earlier.append((before, run.figures))
    scopes = [("", "Enterprise")] + [(u.name, u.title) for u in report.units]
    series = []
    for unit, title in scopes:
        points = [
            TrendPoint(label=p.label, since=p.since, until=p.until, score=figures[(unit, "")].score)
            for p, figures in earlier
            if (unit, "") in figures and p.since is not None
        ]
        if period.since is not None:
            points.append(
                TrendPoint(
                    label=period.label,
                    since=period.since,
                    until=period.until,
                    score=current[(unit, "")].score,
                    current=True,
                )
            )
        if points:
            series.append(TrendSeries(unit=unit or None, title=title, points=points))
    return series


def _record(
    report: ConformanceReport,
    period: Period,
    store: Store,
    figures: dict[Key, Figure],
    config_digest: str,
    now: datetime,
) -> tuple[bool, str]:
    assert period.since is not None and period.until is not None  # check_recordable
    if store.engine.url.database == ":memory:" and store.display_url.find(":memory:") < 0:
        return False, "not recorded: the store file does not exist yet (the first sync makes it)"
    # Every row of the run shares the period, the config and the time; each fills its scope.
    blank = RecordedScore(
        period.since, period.until, period.label, config_digest, "", "", None, "pass", 0, now
    )
    rows = [
        replace(
            blank,
            unit=unit,
            check_id=check_id,
            score=figure.score,
            verdict=figure.verdict,
            exceptions=figure.exceptions,
        )
        for (unit, check_id), figure in figures.items()
    ]
    with store.begin() as tx:
        replace_recorded_scores(
            tx, since=period.since, until=period.until, config_digest=config_digest, scores=rows
        )
    return True, f"recorded in the store ({len(rows)} scores of {period.label})"
