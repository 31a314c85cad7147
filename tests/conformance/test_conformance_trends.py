"""Trends: the previous period compared per check and unit, recorded runs, the trend line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner, Result
from conformance_enterprise import Enterprise

from usm_bridge.cli import cli
from usm_bridge.conformance.period import Period, parse_period
from usm_bridge.conformance.trends import TREND_PERIODS, previous_period
from usm_bridge.store import SchemaPolicy, Store
from usm_bridge.store.conformance_scores import RecordedScore, replace_recorded_scores

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _at(year: int, month: int, day: int = 1) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "since", "until", "label"),
    [
        ("2026-03", _at(2026, 2), _at(2026, 3), "2026-02"),
        ("2026-01", _at(2025, 12), _at(2026, 1), "2025-12"),
        ("2026-Q1", _at(2025, 10), _at(2026, 1), "2025-Q4"),
        ("2026-q3", _at(2026, 4), _at(2026, 7), "2026-Q2"),
        ("2026", _at(2025, 1), _at(2026, 1), "2025"),
    ],
)
def test_the_previous_calendar_period(
    text: str, since: datetime, until: datetime, label: str
) -> None:
    previous = previous_period(parse_period(text, now=NOW), NOW)
    assert previous == Period(since, until, label)


def test_other_periods_shift_by_their_length_and_all_time_has_none() -> None:
    ten_days = parse_period(since="2026-03-05", until="2026-03-15", now=NOW)
    assert previous_period(ten_days, NOW) == Period(
        _at(2026, 2, 23), _at(2026, 3, 5), "2026-02-23 to 2026-03-05"
    )
    two_months = parse_period(since="2026-01-01", until="2026-03-01", now=NOW)
    shifted = previous_period(two_months, NOW)
    assert shifted is not None and (shifted.since, shifted.until) == (_at(2025, 11), _at(2026, 1))
    last_30 = previous_period(parse_period("30d", now=NOW), NOW)
    assert last_30 is not None
    assert (last_30.since, last_30.until) == (NOW - timedelta(days=60), NOW - timedelta(days=30))
    assert previous_period(parse_period("all", now=NOW), NOW) is None


def _invoke(config: Path, *args: str) -> Result:
    """``report conformance`` on ``config``, offline."""
    return CliRunner().invoke(cli, ["report", "conformance", "-c", str(config), "--offline", *args])


def _report(enterprise: Enterprise, *args: str) -> dict[str, Any]:
    """The JSON report, the saved discovery used."""
    discovery = str(enterprise.discovery_path)
    result = _invoke(enterprise.config_path, "-f", "json", "--discovery", discovery, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _figures(data: dict[str, Any]) -> dict[tuple[str | None, None], float | None]:
    """(unit, None) -> the overall score of the enterprise (unit None) and of each unit."""
    found = {(None, None): data["enterprise"]["score"]}
    found.update({(unit["name"], None): unit["score"]["score"] for unit in data["units"]})
    return found


def _changes(data: dict[str, Any]) -> dict[tuple[str | None, str | None], dict[str, Any]]:
    comparison = data["trends"]["comparison"]
    return {(c["unit"], c["check_id"]): c for c in comparison["changes"]}


def _rows(enterprise: Enterprise) -> int:
    with enterprise.store.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM conformance_scores")).scalar_one())


def test_a_recorded_previous_period_is_compared_check_by_check(enterprise: Enterprise) -> None:
    february = _report(enterprise, "--period", "2026-02", "--record")
    assert february["trends"]["recorded"] is True
    recorded = _rows(enterprise)
    assert recorded == 1 + len(february["units"]) + len(
        {(o["unit"], o["check_id"]) for o in february["outcomes"]}
    )
    march = _report(enterprise, "--period", "2026-03")
    comparison = march["trends"]["comparison"]
    assert comparison["label"] == "2026-02" and comparison["source"] == "recorded"
    assert comparison["note"].startswith("from the run of 2026-02 recorded ")
    changes = _changes(march)
    for key, score in _figures(february).items():
        assert changes[key]["score_then"] == score
    for key, score in _figures(march).items():
        assert changes[key]["score_now"] == score
        then = changes[key]["score_then"]
        assert changes[key]["change"] == round(score - then, 1)
    # per check: the March figures of a check the test data breaks in March only
    # (weighted scores: February tested no priority, so it has no score; March's is the share
    # of its tested calls that conform)
    priority = changes[("facilities", "data.priority")]
    tested = {
        month: next(
            o["population"]
            for o in data["outcomes"]
            if (o["unit"], o["check_id"]) == ("facilities", "data.priority")
        )
        for month, data in (("february", february), ("march", march))
    }
    assert tested["february"]["size"] == 0 and priority["score_then"] is None
    assert tested["march"]["exceptions"] == 1
    assert priority["score_now"] == round(100 * (1 - 1 / tested["march"]["size"]), 2)
    assert (priority["exceptions_then"], priority["exceptions_now"]) == (0, 1)
    assert march["trends"]["recorded"] is False and _rows(enterprise) == recorded


def test_recording_the_same_period_again_replaces_it(enterprise: Enterprise) -> None:
    _report(enterprise, "--period", "2026-02", "--record")
    once = _rows(enterprise)
    _report(enterprise, "--period", "2026-02", "--record")
    assert _rows(enterprise) == once


def test_without_a_recorded_run_the_previous_period_is_computed(enterprise: Enterprise) -> None:
    february = _report(enterprise, "--period", "2026-02")
    march = _report(enterprise, "--period", "2026-03")
    comparison = march["trends"]["comparison"]
    assert comparison["source"] == "computed"
    assert comparison["note"] == "computed now from the store's data for 2026-02 (no recorded run)"
    changes = _changes(march)
    for key, score in _figures(february).items():
        assert changes[key]["score_then"] == score
    assert _rows(enterprise) == 0


def test_all_time_has_no_comparison_and_cannot_be_recorded(enterprise: Enterprise) -> None:
    data = _report(enterprise)
    assert data["trends"]["comparison"] is None
    assert data["trends"]["comparison_note"] == "all time has no previous period to compare with"
    result = _invoke(enterprise.config_path, "--record")
    assert result.exit_code == 2
    assert "--record needs a period with both ends, not 'all time'" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_trend_line_shows_the_last_recorded_periods(enterprise: Enterprise) -> None:
    # Fifteen earlier months recorded (2024-12 .. 2026-02): the line keeps the last eleven and
    # this report's own month.
    with enterprise.store.begin() as tx:
        for back in range(1, 16):
            month = 3 - back
            since = _at(2026 + (month - 1) // 12, (month - 1) % 12 + 1)
            until = _at(2026 + month // 12, month % 12 + 1)
            rows = [
                RecordedScore(
                    since,
                    until,
                    f"{since:%Y-%m}",
                    "x" * 64,
                    unit,
                    "",
                    5.0 * back,
                    "fail",
                    back,
                    _at(2026, 4),
                )
                for unit in ("", "hr")
            ]
            replace_recorded_scores(
                tx, since=since, until=until, config_digest="x" * 64, scores=rows
            )
    data = _report(enterprise, "--period", "2026-03")
    series = {s["unit"]: s for s in data["trends"]["series"]}
    assert set(series) == {None, "hr", "facilities", "it"}
    points = series[None]["points"]
    assert len(points) == TREND_PERIODS
    assert [p["label"] for p in points][:2] == ["2025-04", "2025-05"]
    assert [p["score"] for p in points[:-1]] == [5.0 * back for back in range(11, 0, -1)]
    assert points[-1] == {
        **points[-1],
        "label": "2026-03",
        "current": True,
        "score": data["enterprise"]["score"],
    }
    assert [p["label"] for p in series["it"]["points"]] == ["2026-03"]  # never recorded
    html = _invoke(enterprise.config_path, "--period", "2026-03").stdout
    assert html.count('class="trend-chart"') == 4
    assert html.count('<g class="trend-point" data-period=') == 2 * TREND_PERIODS + 2
    assert '<g class="trend-point" data-period="2025-04" data-score="55">' in html


def test_an_older_store_is_refused_by_report_and_left_as_it_is(
    enterprise: Enterprise, tmp_path: Path
) -> None:
    config = enterprise.store._alembic_config()
    with enterprise.store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0006")
    result = _invoke(enterprise.config_path, "--period", "2026-03", "--record")
    assert result.exit_code != 0
    assert "usm-bridge db upgrade" in result.stderr
    with Store.open(str(enterprise.config.store.url), schema=SchemaPolicy.INSPECT) as store:
        assert store.schema_revision() == "0006"


def test_a_store_file_not_made_yet_records_nothing_and_says_so(
    enterprise: Enterprise, tmp_path: Path
) -> None:
    text = enterprise.config_path.read_text()
    start = text.index('url = "')
    end = text.index('"', start + 7) + 1
    missing = tmp_path / "later" / "store.db"
    config = tmp_path / "fresh.toml"
    config.write_text(text[:start] + f'url = "sqlite:///{missing}"' + text[end:])
    result = _invoke(config, "--period", "2026-03", "--record", "-f", "json")
    assert result.exit_code == 0, result.output
    trends = json.loads(result.stdout)["trends"]
    assert trends["recorded"] is False
    assert trends["record_note"] == (
        "not recorded: the store file does not exist yet (the first sync makes it)"
    )
    assert "not recorded: the store file does not exist yet" in result.stderr
    assert not missing.parent.exists()


def test_a_report_of_some_units_compares_the_same_units_and_is_not_recorded(
    enterprise: Enterprise,
) -> None:
    _report(enterprise, "--period", "2026-02", "--record")
    it_only = _report(enterprise, "--period", "2026-03", "--unit", "it")
    comparison = it_only["trends"]["comparison"]
    assert comparison["source"] == "computed"
    assert comparison["note"] == "computed now from the store's data for 2026-02 (the same units)"
    february_it = _report(enterprise, "--period", "2026-02", "--unit", "it")
    changes = _changes(it_only)
    assert changes[(None, None)]["score_then"] == february_it["enterprise"]["score"]
    assert changes[("it", None)]["score_then"] == february_it["units"][0]["score"]["score"]
    assert [line["unit"] for line in it_only["trends"]["series"]] == ["it"]
    assert [p["label"] for p in it_only["trends"]["series"][0]["points"]] == ["2026-02", "2026-03"]
    result = _invoke(enterprise.config_path, "--period", "2026-03", "--unit", "it", "--record")
    assert result.exit_code == 2
    assert "--record keeps the whole enterprise's scores: leave out --unit" in result.stderr
