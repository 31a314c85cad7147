"""Every exception in the report: the JSON lists them all, the CSV and XLSX exports hold one row
each (read back with ``csv`` and ``openpyxl``), HTML and Markdown show the first rows with the
total and the export's name. The data is the whole real event log (890 incidents), whose
confirmation check alone finds more exceptions than the 200 the report used to keep."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from conformance_eventlog import build, csv_path, report
from openpyxl import load_workbook

from usm_bridge.cli import cli
from usm_bridge.config import load_config
from usm_bridge.conformance.exceptions_export import write_csv, write_exports, write_xlsx
from usm_bridge.conformance.renderers import HtmlRenderer, JsonRenderer, MarkdownRenderer
from usm_bridge.conformance.report import ConformanceReport, published_schema
from usm_bridge.errors import ConfigurationError

pytestmark = pytest.mark.skipif(not csv_path().exists(), reason="the event log is not present")

HEADER = [
    "period from (UTC)",
    "period to (UTC)",
    "unit",
    "instance",
    "check",
    "check title",
    "verdict",
    "reference",
    "title",
    "link",
    "observed",
    "expected",
    "opened (UTC)",
    "closed (UTC)",
    "at (UTC)",
    "accepted",
]


@pytest.fixture(scope="module")
def log_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the config (``usm-bridge.toml``) and the store of the whole log."""
    root = tmp_path_factory.mktemp("log")
    build(root, f"sqlite:///{root / 'it.db'}")
    return root


@pytest.fixture(scope="module")
def full_log(log_root: Path) -> Iterator[ConformanceReport]:
    yield report(load_config(log_root / "usm-bridge.toml"))


@pytest.fixture(scope="module")
def as_json(full_log: ConformanceReport) -> dict:  # type: ignore[type-arg]
    data = json.loads(JsonRenderer().render(full_log))
    jsonschema.Draft202012Validator(json.loads(published_schema())).validate(data)
    return data  # type: ignore[no-any-return]


def _evidence(data: dict) -> list[tuple[dict, dict]]:  # type: ignore[type-arg]
    return [(outcome, item) for outcome in data["outcomes"] for item in outcome["evidence"]]


def test_the_json_lists_every_exception(as_json: dict) -> None:  # type: ignore[type-arg]
    outcomes = {(o["check_id"], o["instance"]): o for o in as_json["outcomes"]}
    confirmation = outcomes[("data.incident-confirmation", None)]
    assert confirmation["count"] == 890 == len(confirmation["evidence"])
    assert len({item["remote_key"] for item in confirmation["evidence"]}) == 890
    for outcome in as_json["outcomes"]:
        assert outcome["count"] == len(outcome["evidence"]), outcome["check_id"]
    item = confirmation["evidence"][0]
    assert item["instance"] == "it-servicenow"
    opened, closed = datetime.fromisoformat(item["opened"]), datetime.fromisoformat(item["closed"])
    assert opened.tzinfo is not None and opened <= closed


@pytest.fixture(scope="module")
def exported(
    full_log: ConformanceReport, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, int]]:
    """Both exports of the whole log: ``{suffix: (path, rows written)}``."""
    folder = tmp_path_factory.mktemp("exports")
    return {
        suffix: (folder / f"exceptions{suffix}", writer(full_log, folder / f"exceptions{suffix}"))
        for suffix, writer in ((".csv", write_csv), (".xlsx", write_xlsx))
    }


def test_the_csv_holds_one_row_per_exception(
    exported: dict[str, tuple[Path, int]],
    as_json: dict,  # type: ignore[type-arg]
) -> None:
    path, written = exported[".csv"]
    assert written == len(_evidence(as_json))
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads it as UTF-8
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == HEADER
        rows = list(reader)
    assert len(rows) == len(_evidence(as_json))
    for row, (outcome, item) in zip(rows, _evidence(as_json), strict=True):
        assert row["check"] == outcome["check_id"] and row["verdict"] == outcome["verdict"]
        assert row["unit"] == "it" and row["observed"] == item["detail"]
        assert row["reference"] == (item["remote_key"] or item["call_id"] or "")
        assert row["instance"] == (item["instance"] or outcome["instance"] or "")
    confirmations = [r for r in rows if r["check"] == "data.incident-confirmation"]
    assert len(confirmations) == 890
    first = confirmations[0]
    assert first["expected"].startswith("A closed incident carries the customer's confirmation")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["opened (UTC)"])
    assert first["period from (UTC)"] == "" and first["closed (UTC)"] >= first["opened (UTC)"]
    letters = [r for r in rows if r["check"] == "data.dead-letters"]
    assert letters and all(re.fullmatch(r"\S+T\S+Z", r["at (UTC)"]) for r in letters)


def test_the_xlsx_holds_one_row_per_exception(
    exported: dict[str, tuple[Path, int]],
    as_json: dict,  # type: ignore[type-arg]
) -> None:
    path, written = exported[".xlsx"]
    expected = _evidence(as_json)
    assert written == len(expected)
    sheet = load_workbook(path)["Exceptions"]
    rows = list(sheet.iter_rows())
    assert [cell.value for cell in rows[0]] == HEADER
    assert all(cell.font.b for cell in rows[0])
    assert len(rows) - 1 == len(expected)
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == f"A1:P{len(rows)}"
    assert sheet.column_dimensions["K"].width == 60  # observed
    assert all(sheet.column_dimensions[c].width >= 8 for c in "ABCDEFGHIJKLMNO")
    column = {name: index for index, name in enumerate(HEADER)}
    for row, (outcome, item) in zip(rows[1:], expected, strict=True):
        assert row[column["check"]].value == outcome["check_id"]
        assert row[column["observed"]].value == item["detail"]
        assert row[column["reference"]].value == (item["remote_key"] or item["call_id"])
        if item["opened"] is not None:
            opened = row[column["opened (UTC)"]]
            assert opened.is_date
            moment = datetime.fromisoformat(item["opened"]).astimezone(UTC)
            assert opened.value == moment.replace(tzinfo=None)
        if item["url"] is not None:
            link = row[column["link"]]
            assert link.hyperlink is not None and link.hyperlink.target == item["url"]
            assert link.value == item["url"]
    assert all(cell.data_type != "f" for row in rows for cell in row)


def _block(html: str, check: str) -> str:
    """The HTML of the outcome block of ``check``."""
    (found,) = [b for b in html.split('<div class="outcome ')[1:] if f'data-check="{check}"' in b]
    return found.split("</section>")[0]


def test_html_shows_the_first_rows_the_total_and_the_exports(full_log: ConformanceReport) -> None:
    full_log = full_log.model_copy(
        update={"exception_exports": ["out/exceptions.csv", "out/exceptions.xlsx"]}
    )
    html = HtmlRenderer().render(full_log)
    block = _block(html, "data.incident-confirmation")
    assert block.count("<li>") == 50
    more = re.search(r'<p class="more" data-shown="50" data-total="890">(.*?)</p>', block, re.S)
    assert more is not None
    text = " ".join(more.group(1).split())
    assert text == (
        'The first 50 of 890. Every listed one is in <code class="export">out/exceptions.csv'
        '</code> and <code class="export">out/exceptions.xlsx</code>.'
    )
    assert 'data-total="60"' in _block(html, "data.priority")
    # a check with no more exceptions than are shown gets no such line
    letters = _block(html, "data.dead-letters")
    assert letters.count("<li>") == 5 and 'class="more"' not in letters
    bare = HtmlRenderer().render(full_log.model_copy(update={"exception_exports": []}))
    assert "an exceptions export (<code>--exceptions FILE.csv</code> or <code>.xlsx</code>)" in (
        _block(bare, "data.incident-confirmation")
    )


def test_markdown_shows_the_first_rows_the_total_and_the_exports(
    full_log: ConformanceReport,
) -> None:
    exported = full_log.model_copy(update={"exception_exports": ["exceptions.xlsx"]})
    text = MarkdownRenderer().render(exported)
    section = text[text.index("**FAIL Closed incidents carry a customer confirmation**") :]
    section = section[: section.index("\n**", 3)]
    assert len(re.findall(r"^- ", section, re.M)) == 50
    assert "The first 50 of 890. Every listed one is in exceptions.xlsx." in section


def test_exports_by_suffix_and_a_suffix_that_names_no_format(
    full_log: ConformanceReport, tmp_path: Path
) -> None:
    written = write_exports(full_log, [tmp_path / "a" / "x.CSV", tmp_path / "b" / "x.xlsx"])
    assert set(written.values()) == {sum(len(o.evidence) for o in full_log.outcomes)}
    assert (tmp_path / "a" / "x.CSV").read_bytes().startswith(b"\xef\xbb\xbf")
    assert (tmp_path / "b" / "x.xlsx").read_bytes().startswith(b"PK")  # a zip, as XLSX is
    with pytest.raises(ConfigurationError, match=r"the suffix '\.txt' names no format"):
        write_exports(full_log, [tmp_path / "x.txt"])
    assert not (tmp_path / "x.txt").exists()
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(ConfigurationError, match="cannot write") as caught:
        write_exports(full_log, [blocked / "x.csv"])
    assert caught.value.where == str(blocked / "x.csv")


def test_the_command_writes_the_exports_the_report_names(log_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["report", "conformance", "-c", str(log_root / "usm-bridge.toml"), "--offline"]
    result = CliRunner().invoke(
        cli,
        [
            *args,
            "-o",
            str(out / "r.html"),
            "--exceptions",
            str(out / "e.csv"),
            "--exceptions",
            str(out / "e.xlsx"),
        ],
    )
    assert result.exit_code == 0, result.stderr
    total = sum(1 for _ in _csv_rows(out / "e.csv"))
    assert total > 890
    err = " ".join(result.stderr.split())
    assert f"wrote {out / 'e.csv'}: {total} exceptions" in err
    assert f"wrote {out / 'e.xlsx'}: {total} exceptions" in err
    sheet = load_workbook(out / "e.xlsx")["Exceptions"]
    assert (sheet.max_row, sheet.max_column) == (total + 1, 16)
    block = _block((out / "r.html").read_text(encoding="utf-8"), "data.incident-confirmation")
    assert f'<code class="export">{out / "e.csv"}</code>' in block
    assert f'<code class="export">{out / "e.xlsx"}</code>' in block
    # JSON names them too
    result = CliRunner().invoke(cli, [*args, "-f", "json", "--exceptions", str(out / "j.csv")])
    assert json.loads(result.stdout)["exception_exports"] == [str(out / "j.csv")]


def test_the_command_refuses_an_export_it_cannot_name_before_any_work(
    log_root: Path, tmp_path: Path
) -> None:
    args = ["report", "conformance", "-c", str(log_root / "usm-bridge.toml"), "--offline"]
    result = CliRunner().invoke(
        cli, [*args, "-o", str(tmp_path / "r.html"), "--exceptions", str(tmp_path / "e.ods")]
    )
    assert result.exit_code == 2
    assert "the suffix '.ods' names no format" in result.stderr
    assert "a file ending in .csv or .xlsx" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "r.html").exists()


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))
