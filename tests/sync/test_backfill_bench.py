"""``bench/bench_sync_backfill.py`` at a tiny size: its helpers count what really happened.

The benchmark's figures are only worth something if its counts are right; this runs its
measurement of one tool on SQLite with 50 records (no timing is asserted: speed lives in
``bench/``) so that the benchmark cannot silently rot as the command it measures changes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import bench_sync_backfill as bench  # noqa: E402

SEEDED = 50

#: Per tool: the requests the bridge's backfill must send by path (its pages; ServiceNow's
#: journal too, read for up to 200 records a request), which the bare loop sends as well.
EXPECTED: dict[str, dict[str, int]] = {
    "jira": {"/rest/api/3/search/jql": 1},
    "servicenow": {"/api/now/v2/table/incident": 1, "/api/now/v2/table/sys_journal_field": 1},
}


@pytest.mark.parametrize("tool", sorted(bench.TOOLS))
def test_the_backfill_bench_counts_every_record_and_request(tool: str, tmp_path: Path) -> None:
    spec = bench.TOOLS[tool]
    pages = EXPECTED[tool]
    with spec.simulator(SEEDED) as sim:
        result = bench.measure(
            spec, sim, SEEDED, "sqlite", tmp_path, bench.DEFAULT_PG_URL, tmp_path / "profiles"
        )

    # The bare loop sends the connector's own requests: its pages (and ServiceNow's journal).
    assert result.bare == (SEEDED, sum(pages.values()), pytest.approx(result.bare.seconds))
    assert result.bare.requests == sum(result.backfill.requests[path] for path in pages)
    # The subprocess's backfill stored every record, the idle run after it nothing.
    assert (result.backfill.stored, result.backfill.read, result.backfill.dead) == (
        SEEDED,
        SEEDED,
        0,
    )
    assert (result.idle.stored, result.idle.dead) == (0, 0)
    assert result.backfill.max_rss_mib > 0 and result.backfill.cpu > 0
    # The hook in the subprocess counted statements and requests, the idle run's fewer.
    assert result.backfill.statements > result.idle.statements > 0
    assert {path: result.backfill.requests[path] for path in pages} == pages
    assert result.bridge_requests >= sum(pages.values()) and result.idle_requests >= 1

    row = bench.markdown_row(result)
    assert row.count("|") == bench.HEADER.count("|")
    assert f"| {SEEDED:,} / {SEEDED:,} |" in row
    # --profile ran the backfill once more in this process, profiled.
    profile = (tmp_path / "profiles" / f"{tool}-sqlite.txt").read_text(encoding="utf-8")
    assert "cumulative" in profile and "run_cycle" in profile


def test_the_config_names_the_shipped_mapping_and_the_store(tmp_path: Path) -> None:
    from usm_bridge.config import load_config

    settings: dict[str, Any] = {
        "instance_url": "http://127.0.0.1:1",
        "tables": ["incident"],
        "username": "admin",
        "password": "x",
    }
    url = f"sqlite:///{tmp_path / 'store.db'}"
    path = bench.write_config(tmp_path / "c.toml", bench.TOOLS["servicenow"], settings, url)
    config = load_config(path)
    assert list(config.instances) == ["it-snow"]
    assert config.instances["it-snow"].mapping.name == "servicenow-incident.yaml"
    assert config.store.url == url
