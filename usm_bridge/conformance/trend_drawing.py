"""Geometry of the trend lines: one small chart per unit and for the enterprise.

Only numbers are computed here, as in :mod:`usm_bridge.conformance.svg`; the templates draw
them and escape every text. The vertical axis always runs from 0 to 100, so charts of
different units compare at a glance; a period without a score leaves a gap in the line.
"""

from __future__ import annotations

from dataclasses import dataclass

from .trend_models import Trends, TrendSeries

__all__ = ["ChartPoint", "TrendChart", "trend_charts"]

CHART_W, CHART_H, LEFT, RIGHT, TOP, BOTTOM = 420, 150, 48, 32, 12, 34


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float | None
    label: str
    score: float | None
    current: bool


@dataclass(frozen=True)
class TrendChart:
    unit: str | None
    title: str
    width: float
    height: float
    path: str
    points: list[ChartPoint]
    #: (y, label) of the horizontal grid lines at 0, 50 and 100.
    grid: list[tuple[float, str]]
    #: Where the plot starts and how much room is kept right of it (labels of the ends).
    left: float = LEFT
    right: float = RIGHT


def _y(score: float) -> float:
    return TOP + (CHART_H - TOP - BOTTOM) * (1 - score / 100)


def _chart(series: TrendSeries) -> TrendChart:
    count = len(series.points)
    step = (CHART_W - LEFT - RIGHT) / max(1, count - 1)
    points = [
        ChartPoint(
            x=LEFT + (i * step if count > 1 else (CHART_W - LEFT - RIGHT) / 2),
            y=None if p.score is None else _y(p.score),
            label=p.label,
            score=p.score,
            current=p.current,
        )
        for i, p in enumerate(series.points)
    ]
    moves: list[str] = []
    pen_down = False
    for point in points:
        if point.y is None:
            pen_down = False
            continue
        moves.append(f"{'L' if pen_down else 'M'} {point.x:.1f} {point.y:.1f}")
        pen_down = True
    return TrendChart(
        unit=series.unit,
        title=series.title,
        width=CHART_W,
        height=CHART_H,
        path=" ".join(moves),
        points=points,
        grid=[(_y(value), str(value)) for value in (100, 50, 0)],
    )


def trend_charts(trends: Trends | None) -> list[TrendChart]:
    """A chart per series of ``trends`` (none without trends)."""
    return [] if trends is None else [_chart(series) for series in trends.series]
