"""A cycle the daemon skips because its instance runs in another process (a ``sync --once``):
due again an interval later, counted as skipped, neither a success nor a failure."""

from __future__ import annotations

import logging

import pytest
from daemon_fakes import START, FakeClock, FakeEngine, gaps, make_config, simulate

from usm_bridge.sync.metrics import BridgeMetrics


def test_a_skipped_cycle_is_due_an_interval_later_and_counts_neither_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(horizon=START + 600)
    engine = FakeEngine(clock, skipping={"busy"})
    metrics = BridgeMetrics()
    with caplog.at_level(logging.INFO, logger="usm_bridge.sync.daemon"):
        daemon = simulate(make_config({"busy": 60.0, "free": 60.0}), engine, metrics=metrics)
    tried = engine.times("busy")
    assert 9 <= len(tried) <= 11  # an interval apart, not backed off, not retried at once
    assert all(54.0 <= gap <= 66.0 for gap in gaps(tried)), gaps(tried)
    assert engine.censuses == [("free", t) for t in engine.times("free")[:1]]  # none skipped
    value = metrics.registry.get_sample_value
    assert value("usm_bridge_cycles_total", {"instance": "busy", "outcome": "skipped"}) == len(
        tried
    )
    assert value("usm_bridge_cycles_total", {"instance": "busy", "outcome": "ok"}) == 0
    assert value("usm_bridge_cycles_total", {"instance": "busy", "outcome": "error"}) == 0
    assert value("usm_bridge_cycle_running", {"instance": "busy"}) == 0
    assert value("usm_bridge_last_success_timestamp_seconds", {"instance": "busy"}) is None
    said = [r for r in caplog.records if getattr(r, "event", None) == "cycle_skipped"]
    assert len(said) == len(tried)
    assert (
        said[0]
        .getMessage()
        .startswith("cycle busy skipped: a cycle of busy runs in pid 1 on elsewhere; next in ")
    )
    health = daemon.health()
    # Ten minutes without a cycle of its own: late, though never failing.
    assert health.detail["failing"] == ["busy"]
    busy = health.detail["instances"]["busy"]
    assert busy["consecutive_failures"] == 0 and busy["last_error"] is None
    assert busy["last_success"] is None
