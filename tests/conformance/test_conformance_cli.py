"""``usm-bridge report conformance`` end to end through the real entry point, and the period
options."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from conformance_enterprise import DISCOVERY, Enterprise

from usm_bridge.cli import cli
from usm_bridge.conformance.period import parse_period
from usm_bridge.errors import ConfigurationError


def _run(enterprise: Enterprise, *args: str) -> tuple[int, str, str]:
    return enterprise.report_command(*args)


def test_json_to_stdout_with_a_saved_discovery(sqlite_enterprise: Enterprise) -> None:
    code, out, _ = _run(
        sqlite_enterprise, "--format", "json", "--discovery", str(sqlite_enterprise.discovery_path)
    )
    assert code == 0
    data = json.loads(out)
    sources = {i["name"]: i["vocabulary_source"] for u in data["units"] for i in u["instances"]}
    assert sources == {"hr-mail": "file", "fac-jira": "file", "it-snow": "none"}
    assert data["period"]["label"] == "all time"


def test_every_format_to_a_file(sqlite_enterprise: Enterprise, tmp_path: Path) -> None:
    for fmt, name in (("html", "r.html"), ("markdown", "r.md"), ("junit", "r.xml")):
        code, out, err = _run(sqlite_enterprise, "-f", fmt, "-o", str(tmp_path / "out" / name))
        assert code == 0, err
        assert out == ""
        assert f"wrote {tmp_path / 'out' / name}" in err.replace("\n", "")
    ET.parse(tmp_path / "out" / "r.xml")
    assert (tmp_path / "out" / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_fail_under_sets_the_exit_code(sqlite_enterprise: Enterprise) -> None:
    code, out, err = _run(sqlite_enterprise, "-f", "json", "--fail-under", "90")
    score = json.loads(out)["enterprise"]["score"]
    assert score < 90
    assert code == 3
    assert f"enterprise score {score} is below --fail-under 90" in err
    code, _, _ = _run(sqlite_enterprise, "-f", "json", "--fail-under", str(score))
    assert code == 0


def test_unit_filter(sqlite_enterprise: Enterprise) -> None:
    code, out, _ = _run(sqlite_enterprise, "-f", "json", "--unit", "it")
    assert code == 0
    data = json.loads(out)
    assert [u["name"] for u in data["units"]] == ["it"]
    assert {o["unit"] for o in data["outcomes"]} == {"it"}
    assert [r["name"] for r in data["chain"]["routes"]] == ["hr-to-it"]


def test_save_discovery_then_use_it(sqlite_enterprise: Enterprise, tmp_path: Path) -> None:
    saved = tmp_path / "saved.json"
    code, _, _ = _run(
        sqlite_enterprise,
        "-f",
        "json",
        "--discovery",
        str(sqlite_enterprise.discovery_path),
        "--save-discovery",
        str(saved),
    )
    assert code == 0
    assert set(json.loads(saved.read_text())) == set(DISCOVERY)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-f", "pdf"], "no report renderer for format 'pdf'"),
        (["--period", "lately"], "--period 'lately' is not a period"),
        (["--since", "yesterday"], "--since 'yesterday' is not a date"),
        (["--since", "2026-02-01", "--until", "2026-01-01"], "the period is empty"),
        (["--unit", "sales"], "unknown unit 'sales'"),
        (["--discovery", "/nonexistent/d.json"], "cannot read"),
        (["--fail-under", "120"], "120"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    sqlite_enterprise: Enterprise, args: list[str], message: str
) -> None:
    code, _, err = _run(sqlite_enterprise, *args)
    assert code == 2
    assert message in err.replace("\n", " ")
    assert "Traceback" not in err


def test_a_malformed_discovery_names_the_instance(
    sqlite_enterprise: Enterprise, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hr-mail": {"statuses": [{"label": "no value"}]}}))
    code, _, err = _run(sqlite_enterprise, "--discovery", str(bad))
    assert code == 2
    assert "instance 'hr-mail': statuses.0.value" in err.replace("\n", " ")


def test_live_discovery_of_an_uninstalled_connector_is_reported_not_fatal(
    sqlite_enterprise: Enterprise,
) -> None:
    result = CliRunner().invoke(
        cli, ["report", "conformance", "-c", str(sqlite_enterprise.config_path), "-f", "json"]
    )
    assert result.exit_code == 0
    notes = {
        i["name"]: i["vocabulary_note"]
        for u in json.loads(result.stdout)["units"]
        for i in u["instances"]
    }
    assert all("connector not available" in (note or "") for note in notes.values())


def test_report_schema_command_prints_the_published_schema() -> None:
    result = CliRunner().invoke(cli, ["report", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["$id"].endswith("conformance-report-v1.json")


NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "since", "until"),
    [
        ("all", None, None),
        ("7d", datetime(2026, 3, 3, 12, tzinfo=UTC), None),
        ("2025", datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-02", datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
        ("2025-12", datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-q4", datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_named_periods(period: str, since: datetime | None, until: datetime | None) -> None:
    parsed = parse_period(period, now=NOW)
    assert (parsed.since, parsed.until) == (since, until)


def test_since_and_until_narrow_a_period() -> None:
    parsed = parse_period("2026", "2026-02-01", "2026-02-15T12:00+01:00", now=NOW)
    assert parsed.since == datetime(2026, 2, 1, tzinfo=UTC)
    assert parsed.until == datetime(2026, 2, 15, 11, tzinfo=UTC)
    assert parsed.label == "2026-02-01 to 2026-02-15T11:00+00:00"
    assert parsed.contains(datetime(2026, 2, 1, tzinfo=UTC))
    assert not parsed.contains(datetime(2026, 2, 15, 11, tzinfo=UTC))
    with pytest.raises(ConfigurationError, match="no month 13"):
        parse_period("2026-13", now=NOW)
