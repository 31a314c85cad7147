"""The exceptions export: every evidence item of a report as one row, in CSV or XLSX.

``usm-bridge report conformance --exceptions FILE`` writes it; the suffix of FILE (``.csv``,
``.xlsx``) decides the format. ``--samples FILE`` writes the items of the samples
(``--sample N``) in the same columns. A row names the period, the unit and instance, the check, its
verdict, the record in its tool (reference, title, link), what was observed, what the check
expects, and the times (the call opened and closed in its tool, and the finding's own moment,
such as a dead letter's first failure). Times are UTC. A finding the accepted-exceptions
register accepts is a row too, after its outcome's exceptions, with the ``accepted`` column
naming the register's entry, reason, approver and expiry; the column is empty for an exception
that counts, so a filter on it separates the two.

Ticket text is inert in both formats. A spreadsheet runs a cell that starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return as a formula, so CSV cells starting so get a leading
``'`` (OWASP's advice for CSV injection) and XLSX cells are always string cells, never
formulas. Bidirectional controls are shown as code points
(:func:`usm_bridge.conformance.inert_text.neutralise_bidi`).

The rows are streamed: the XLSX is written with openpyxl's write-only workbook, which writes
each row as it comes and never holds the sheet's cells in memory.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

from ..errors import ConfigurationError
from .api import AcceptedException, Evidence
from .context import safe_link
from .inert_text import neutralise_bidi
from .report import ConformanceReport

if TYPE_CHECKING:
    from openpyxl.cell import Cell
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

__all__ = [
    "COLUMNS",
    "EXPORT_FORMATS",
    "ExceptionRow",
    "check_export_paths",
    "exception_rows",
    "write_csv",
    "write_exports",
    "write_xlsx",
]

#: The formats by file suffix.
EXPORT_FORMATS = {".csv": "csv", ".xlsx": "xlsx"}

#: Excel keeps at most 66,530 hyperlinks per sheet; past this many the link is plain text.
MAX_HYPERLINKS = 65_000

#: What a spreadsheet may read as the start of a formula (OWASP, "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExceptionRow(NamedTuple):
    """One exception: an evidence item of an outcome, with what the outcome says around it."""

    period_from: datetime | None
    period_to: datetime | None
    unit: str | None
    instance: str | None
    check: str
    check_title: str
    verdict: str
    reference: str | None
    title: str | None
    link: str | None
    observed: str
    expected: str
    opened: datetime | None
    closed: datetime | None
    at: datetime | None
    accepted: str | None = None


class Column(NamedTuple):
    header: str
    #: Width in characters, for the XLSX.
    width: int
    kind: Literal["text", "time", "link"] = "text"


COLUMNS: tuple[Column, ...] = (
    Column("period from (UTC)", 19, "time"),
    Column("period to (UTC)", 19, "time"),
    Column("unit", 14),
    Column("instance", 18),
    Column("check", 26),
    Column("check title", 36),
    Column("verdict", 8),
    Column("reference", 14),
    Column("title", 40),
    Column("link", 40, "link"),
    Column("observed", 60),
    Column("expected", 50),
    Column("opened (UTC)", 19, "time"),
    Column("closed (UTC)", 19, "time"),
    Column("at (UTC)", 19, "time"),
    Column("accepted", 50),
)
assert len(COLUMNS) == len(ExceptionRow._fields)


def exception_rows(report: ConformanceReport, *, sample: bool = False) -> Iterator[ExceptionRow]:
    """Every evidence item of every outcome, in the report's order.

    ``observed`` is the item's detail; ``expected`` is the rule the check states (its
    description under "Checks applied", else its title). With ``sample``, the items of each
    outcome's sample (``--sample N``) instead: ``observed`` then says whether the item is an
    exception. Each outcome's accepted findings follow its exceptions, ``accepted`` set.
    """
    rules = {check.id: check.description or check.title for check in report.checks}
    since, until = report.period.since, report.period.until
    for outcome in report.outcomes:
        expected = rules.get(outcome.check_id) or outcome.title
        listed: list[tuple[Evidence, str | None]] = [
            (item, None) for item in (outcome.sample if sample else outcome.evidence)
        ]
        if not sample:
            listed += [(acc.item, _acceptance(acc)) for acc in outcome.accepted]
        for item, accepted in listed:
            yield ExceptionRow(
                period_from=since,
                period_to=until,
                unit=outcome.unit,
                instance=item.instance or outcome.instance,
                check=outcome.check_id,
                check_title=outcome.title,
                verdict=outcome.verdict,
                reference=item.remote_key or item.call_id,
                title=item.title,
                link=safe_link(item.url),
                observed=item.detail,
                expected=expected,
                opened=item.opened,
                closed=item.closed,
                at=item.at,
                accepted=accepted,
            )


def _acceptance(accepted: AcceptedException) -> str:
    return (
        f"entry {accepted.entry}: {accepted.reason} (approved by {accepted.approver}, "
        f"expires {accepted.expires.isoformat()})"
    )


def check_export_paths(paths: Iterable[Path], option: str = "--exceptions") -> None:
    """Refuse a file whose suffix names no export format, before any work is done.

    :raises ConfigurationError: the suffix is neither ``.csv`` nor ``.xlsx`` (exit code 2).
    """
    for path in paths:
        if path.suffix.lower() not in EXPORT_FORMATS:
            raise ConfigurationError(
                f"{option} {path}: the suffix {path.suffix or '(none)'!r} names no format",
                expected="a file ending in .csv or .xlsx",
            )


def write_exports(
    report: ConformanceReport, paths: Iterable[Path], *, sample: bool = False
) -> dict[Path, int]:
    """Write the export to each path in the format its suffix names; rows written per path.
    With ``sample``, the rows are the samples' items (:func:`exception_rows`).

    :raises ConfigurationError: an unknown suffix, or a file that cannot be written.
    """
    paths = list(paths)
    check_export_paths(paths, "--samples" if sample else "--exceptions")
    written = {}
    for path in paths:
        writer = write_xlsx if EXPORT_FORMATS[path.suffix.lower()] == "xlsx" else write_csv
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            written[path] = writer(report, path, sample=sample)
        except OSError as exc:
            raise ConfigurationError(f"cannot write: {exc.strerror}", where=str(path)) from None
    return written


# -- CSV ----------------------------------------------------------------------------------------


def _csv_text(value: str) -> str:
    text = neutralise_bidi(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def write_csv(report: ConformanceReport, path: Path, *, sample: bool = False) -> int:
    """The export as CSV: UTF-8 with a byte order mark (so Excel reads it as UTF-8), comma
    separated, a header row, times in ISO 8601 UTC (``2026-03-10T12:00:00Z``). Returns the
    number of exceptions written (rows after the header, accepted ones aside)."""
    count = 0
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(column.header for column in COLUMNS)
        for row in exception_rows(report, sample=sample):
            writer.writerow(
                ""
                if value is None
                else _iso(value)
                if isinstance(value, datetime)
                else _csv_text(value)
                for value in row
            )
            count += row.accepted is None
    return count


# -- XLSX ---------------------------------------------------------------------------------------


class _XlsxCells:
    """Turns a row's values into a write-only sheet's cells (openpyxl imported lazily)."""

    def __init__(self, sheet: WriteOnlyWorksheet) -> None:
        from openpyxl.styles import Font

        self.sheet = sheet
        self.links = 0
        self.link_font = Font(color="0563C1", underline="single")

    def header(self) -> list[Cell]:
        from openpyxl.styles import Font

        bold = Font(bold=True)
        cells = []
        for column in COLUMNS:
            cell = self._cell(column.header)
            cell.font = bold
            cells.append(cell)
        return cells

    def row(self, values: ExceptionRow) -> list[str | Cell | None]:
        return [self.value(column, value) for column, value in zip(COLUMNS, values, strict=True)]

    def value(self, column: Column, value: str | datetime | None) -> str | Cell | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            moment = self._cell(value.astimezone(UTC).replace(tzinfo=None))
            moment.number_format = "yyyy-mm-dd hh:mm:ss"
            return moment
        # safe_link let only http(s) URLs through; one holding bidi controls stays text.
        linkable = self.links < MAX_HYPERLINKS and neutralise_bidi(value) == value
        if column.kind == "link" and linkable:
            self.links += 1
            link = self._string(value)
            link.hyperlink = value
            link.font = self.link_font
            return link
        return self.text(value)

    def text(self, value: str) -> str | Cell:
        from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE

        # Characters XML 1.0 cannot hold would make openpyxl refuse the whole file.
        text = ILLEGAL_CHARACTERS_RE.sub("\ufffd", neutralise_bidi(value))[:32767]
        if text.startswith("=") or text in ERROR_CODES:
            return self._string(text)  # never a formula, nor an error value
        return text  # openpyxl makes every other str a string cell

    def _cell(self, value: str | datetime) -> Cell:
        from openpyxl.cell import WriteOnlyCell

        return WriteOnlyCell(self.sheet, value=value)

    def _string(self, text: str) -> Cell:
        cell = self._cell(text)
        cell.data_type = "s"
        return cell


def write_xlsx(report: ConformanceReport, path: Path, *, sample: bool = False) -> int:
    """The export as an Excel workbook, one sheet ``Exceptions``: a bold header row that stays
    in view (frozen pane) with an autofilter, column widths set, links as hyperlinks (the first
    :data:`MAX_HYPERLINKS`; Excel holds no more), times as date cells in UTC. Returns the
    number of exceptions written (rows after the header, accepted ones aside)."""
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Sample" if sample else "Exceptions")
    # Set before the first row: a write-only sheet writes its view and columns first.
    sheet.freeze_panes = "A2"
    for index, column in enumerate(COLUMNS, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = column.width
    cells = _XlsxCells(sheet)
    sheet.append(cells.header())
    count = rows = 0
    for row in exception_rows(report, sample=sample):
        sheet.append(cells.row(row))
        rows += 1
        count += row.accepted is None
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{rows + 1}"
    workbook.save(path)
    return count
