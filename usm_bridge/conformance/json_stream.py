"""The JSON report written piece by piece: its spooled evidence never whole in memory.

The JSON format is the report model dumped with ``indent=2``
(:class:`.renderers.JsonRenderer`). Dumped at once, a report over a million calls is a string
of some 800 MiB next to every exception's evidence read back from the spool. Here the report
is dumped without its spooled lists (each replaced by one marker item whose detail carries a
random token, so that no ticket text can pose as a marker), and each marker is replaced, as
the text is written, by its list's items read from the spool a batch at a time: each item is
kept there as its own ``indent=2`` JSON (:mod:`.evidence_spool`), so indenting it to its place
gives byte for byte what the whole dump would hold.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import TextIO

from .api import CheckOutcome, Evidence
from .evidence_spool import SpooledEvidence
from .process_view_models import ProcessView
from .report import ConformanceReport

__all__ = ["report_json_pieces", "write_report_json"]


class _Markers:
    """The spooled lists of one report and the marker item standing for each."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(16)
        self.lists: list[SpooledEvidence] = []

    def stand_in(self, items: object) -> list[Evidence] | None:
        """A one-item list standing for ``items`` if they are spooled and not empty."""
        if not isinstance(items, SpooledEvidence) or not items:
            return None
        self.lists.append(items)
        return [Evidence(detail=self.detail(len(self.lists) - 1))]

    def detail(self, index: int) -> str:
        return f"{self.token}:{index}"


def _skeleton(report: ConformanceReport, markers: _Markers) -> ConformanceReport:
    """The report with a marker for each spooled list (the report itself is not changed)."""
    outcomes: list[CheckOutcome] = []
    for outcome in report.outcomes:
        stand_in = markers.stand_in(outcome.evidence)
        outcomes.append(
            outcome if stand_in is None else outcome.model_copy(update={"evidence": stand_in})
        )
    views: list[ProcessView] = []
    for view in report.process_views:
        stand_in = markers.stand_in(view.outside_evidence)
        views.append(
            view if stand_in is None else view.model_copy(update={"outside_evidence": stand_in})
        )
    return report.model_copy(update={"outcomes": outcomes, "process_views": views})


def _indented(body: str, pad: str) -> str:
    return pad + body.replace("\n", "\n" + pad)


def report_json_pieces(report: ConformanceReport) -> Iterator[str]:
    """The report's JSON (what :class:`.renderers.JsonRenderer` renders), in pieces."""
    markers = _Markers()
    text = _skeleton(report, markers).model_dump_json(indent=2) + "\n"
    done = 0
    for index, items in enumerate(markers.lists):
        marker = Evidence(detail=markers.detail(index)).model_dump_json(indent=2)
        # The marker's detail is on the line after its opening brace: that line's start is
        # where the item starts, and its indentation is the item's.
        at = text.index(f'"detail": "{markers.detail(index)}"', done)
        brace = text.rindex("\n", done, at)
        start = text.rindex("\n", done, brace) + 1
        pad = text[start : brace - 1]
        end = start + len(_indented(marker, pad))
        if text[start:end] != _indented(marker, pad) or pad.strip():
            raise RuntimeError("the JSON report's skeleton is not shaped as expected")
        yield text[done:start]
        # A batch of items joined by ",\n" indents to its place in one step: each item's
        # lines, and the line each item starts on after a separator, take the pad.
        between = ""
        for row in items.json_rows():
            yield between + _indented(row, pad)
            between = ",\n"
        done = end
    yield text[done:]


def write_report_json(report: ConformanceReport, stream: TextIO) -> None:
    """Write the report's JSON to ``stream`` piece by piece."""
    for piece in report_json_pieces(report):
        stream.write(piece)
