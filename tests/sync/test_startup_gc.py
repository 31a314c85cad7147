"""``sync --once``'s garbage collector settings hold while its cycles run, and only then."""

from __future__ import annotations

import gc

import pytest

from usm_bridge.sync.startup_gc import YOUNG_THRESHOLD, collecting_for_backfill


def test_the_start_up_is_frozen_and_young_collections_are_rarer_until_the_end() -> None:
    before = gc.get_threshold()
    with collecting_for_backfill():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
        # Cycles made meanwhile are still collected.
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_collector_is_restored_when_the_cycles_raise() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), collecting_for_backfill():
        raise RuntimeError("a cycle failed")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
