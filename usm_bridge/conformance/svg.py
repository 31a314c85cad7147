"""Geometry of the inline SVG drawings (the chain diagram, the score bars).

Only numbers are computed here; the templates draw them and Jinja escapes every text, so a
unit title or a route name can never break out of the drawing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .report import ChainView, ConformanceReport

__all__ = ["Bar", "ChainDrawing", "Edge", "Node", "chain_drawing", "format_duration", "score_bars"]

NODE_W, NODE_H, GAP, MARGIN = 170, 66, 120, 24


@dataclass(frozen=True)
class Node:
    name: str
    title: str
    calls: int
    score: float | None
    x: float
    y: float
    w: float = NODE_W
    h: float = NODE_H


@dataclass(frozen=True)
class Edge:
    name: str
    path: str
    label_x: float
    label_y: float
    label: str
    configured: bool


@dataclass(frozen=True)
class ChainDrawing:
    width: float
    height: float
    nodes: list[Node]
    edges: list[Edge]


def format_duration(seconds: float | None) -> str:
    """``None`` -> ``-``; otherwise minutes, hours or days, one decimal."""
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def chain_drawing(chain: ChainView) -> ChainDrawing:
    """Units in a row; a route arcs above the row when it goes right, below when it goes left."""
    count = max(1, len(chain.units))
    lanes_above = lanes_below = 0
    index = {unit.name: i for i, unit in enumerate(chain.units)}
    for route in chain.routes:
        a, b = index.get(route.from_unit), index.get(route.to_unit)
        if a is None or b is None:
            continue
        if b > a:
            lanes_above = max(lanes_above, b - a)
        else:
            lanes_below = max(lanes_below, a - b)
    top = MARGIN + 40 + 38 * lanes_above
    height = top + NODE_H + 40 + 38 * lanes_below + MARGIN
    width = 2 * MARGIN + count * NODE_W + (count - 1) * GAP
    nodes = [
        Node(
            name=unit.name,
            title=unit.title,
            calls=unit.calls,
            score=unit.score,
            x=MARGIN + i * (NODE_W + GAP),
            y=top,
        )
        for i, unit in enumerate(chain.units)
    ]
    edges = []
    seen: dict[tuple[int, int], int] = {}
    for route in chain.routes:
        a, b = index.get(route.from_unit), index.get(route.to_unit)
        if a is None or b is None or a == b:
            continue
        nth = seen.get((a, b), 0)
        seen[(a, b)] = nth + 1
        forward = b > a
        x0 = nodes[a].x + NODE_W / 2 + (12 if forward else -12) + 10 * nth
        x1 = nodes[b].x + NODE_W / 2 - (12 if forward else -12) + 10 * nth
        y = top if forward else top + NODE_H
        lift = 40 + 38 * (abs(b - a) - 1) + 14 * nth
        cy = y - 2 * lift if forward else y + 2 * lift
        cx = (x0 + x1) / 2
        calls = "call" if route.volume == 1 else "calls"
        label = f"{route.volume} {calls} · median {format_duration(route.median_handoff_seconds)}"
        edges.append(
            Edge(
                name=route.name,
                path=f"M {x0:.1f} {y:.1f} Q {cx:.1f} {cy:.1f} {x1:.1f} {y:.1f}",
                label_x=cx,
                label_y=(y + cy) / 2 + (-6 if forward else 14),
                label=label,
                configured=route.configured,
            )
        )
    return ChainDrawing(width=width, height=height, nodes=nodes, edges=edges)


@dataclass(frozen=True)
class Bar:
    label: str
    score: float | None
    y: float
    width: float
    verdict: str


def score_bars(report: ConformanceReport, scale: float = 3.0) -> list[Bar]:
    """One bar per unit and one for the enterprise, 100 points = ``100 * scale`` pixels."""
    rows = [("enterprise", report.enterprise)] + [(u.name, u.score) for u in report.units]
    return [
        Bar(
            label=label,
            score=value.score,
            y=8 + 26 * i,
            width=(value.score or 0) * scale,
            verdict=value.verdict,
        )
        for i, (label, value) in enumerate(rows)
    ]
