"""A mapping file fixed while the daemon runs is used from the next cycle, without a restart.

The engine is built once per process and reused between cycles; the admin's fix of a mapping
file (followed by ``usm-bridge dead-letters retry``) must reach it, and a file saved half-way
(one that does not load) must never stop it: the last good mapping stays in use.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sync.memory_tool import Bridge, write_mapping
from usm_bridge.dead_letters import retry_dead_letters
from usm_bridge.store import DeadLetterStage


def _hr_statuses(bridge: Bridge) -> dict[str, str]:
    with bridge.store.begin(readonly=True) as tx:
        return {stored.call.title: stored.call.status.value for stored in tx.list_calls(unit="hr")}


def _open_letters(bridge: Bridge) -> int:
    with bridge.store.begin(readonly=True) as tx:
        return len(tx.list_dead_letters())


def test_a_fixed_mapping_file_is_read_by_the_running_engine(bridge: Bridge, tmp_path: Path) -> None:
    hr = bridge.tools["hr-tool"]
    hr.add(title="Odd one", kind="incident", status="weird")
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok and summary.dead_letters == 1

    write_mapping(tmp_path / "memory.yaml", knows_weird=True)  # the admin's fix
    # A record in the same state, read by the same engine: mapped with the fixed file.
    hr.add(title="Odd two", kind="incident", status="weird")
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok, summary.error
    assert (summary.stored, summary.dead_letters) == (1, 0)
    outcome = retry_dead_letters(bridge.engine)
    assert len(outcome.resolved) == 1 and not outcome.failed
    assert _hr_statuses(bridge) == {"Odd one": "registered", "Odd two": "registered"}
    assert _open_letters(bridge) == 0


def test_a_mapping_file_that_no_longer_loads_keeps_the_last_good_one_and_is_reported_once(
    bridge: Bridge, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mapping = tmp_path / "memory.yaml"
    hr = bridge.tools["hr-tool"]
    hr.add(title="First", kind="incident")
    assert bridge.engine.run_cycle("hr-tool").ok

    good = mapping.read_text(encoding="utf-8")
    mapping.write_text(good.replace("fields:", "fields: [", 1), encoding="utf-8")  # half-saved
    with caplog.at_level(logging.ERROR, logger="usm_bridge.sync.engine"):
        for title in ("Second", "Third"):
            hr.add(title=title, kind="incident")
            summary = bridge.engine.run_cycle("hr-tool")
            assert summary.ok, summary.error
            assert (summary.stored, summary.dead_letters) == (1, 0)
    reports = [r for r in caplog.records if "does not load" in r.getMessage()]
    assert len(reports) == 1 and "memory.yaml" in reports[0].getMessage()
    assert sorted(_hr_statuses(bridge)) == ["First", "Second", "Third"]

    write_mapping(mapping, knows_weird=True)  # fixed at last
    hr.add(title="Odd", kind="incident", status="weird")
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok and (summary.stored, summary.dead_letters) == (1, 0)
    assert _hr_statuses(bridge)["Odd"] == "registered"


def test_a_mapping_file_that_vanished_keeps_the_last_good_one(
    bridge: Bridge, tmp_path: Path
) -> None:
    hr = bridge.tools["hr-tool"]
    hr.add(title="First", kind="incident")
    assert bridge.engine.run_cycle("hr-tool").ok
    (tmp_path / "memory.yaml").unlink()
    hr.add(title="Second", kind="incident")
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok and summary.stored == 1


def test_a_record_that_cannot_be_mapped_is_still_dead_lettered_with_an_unchanged_file(
    bridge: Bridge,
) -> None:
    # The check is no reload: a cycle with an unchanged file maps exactly as before.
    hr = bridge.tools["hr-tool"]
    for _ in range(2):
        hr.add(title="Odd", kind="incident", status="weird")
        summary = bridge.engine.run_cycle("hr-tool")
        assert summary.ok and summary.dead_letters == 1
    with bridge.store.begin(readonly=True) as tx:
        letters = tx.list_dead_letters()
    assert [letter.stage for letter in letters] == [DeadLetterStage.MAP] * 2
