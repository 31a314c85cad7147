"""More records in one second than fit in a page: nothing lost, nothing duplicated."""

from __future__ import annotations

from collections import Counter

import pytest
from usm_bridge.connector import Checkpoint, RawRecord

from usm_bridge_servicenow.connector import ServiceNowConnector
from usm_bridge_servicenow.testing import IncidentHarness


class BigPages(IncidentHarness):
    page_size = 100


@pytest.fixture
def harness_class() -> type[BigPages]:
    return BigPages


def _read(connector: ServiceNowConnector, cursor: str | None) -> tuple[list[RawRecord], str]:
    items = list(connector.read_changes(cursor))
    assert isinstance(items[-1], Checkpoint)
    return [i for i in items if isinstance(i, RawRecord)], items[-1].cursor


def test_2500_records_in_one_second(harness: BigPages, connector: ServiceNowConnector) -> None:
    seeded = harness.seed(2500)  # the clock is frozen: one second for all
    assert len({harness.sim.get("incident", i)["sys_updated_on"] for i in seeded}) == 1  # type: ignore[index]
    records, cursor = _read(connector, None)
    counts = Counter(r.remote_id for r in records)
    assert set(counts) == set(seeded) and max(counts.values()) == 1
    # Pages past the first ask the second's keyset, never a growing offset.
    assert connector.requests <= 2 * (2500 // 100) + 5
    # Nothing changed: the same second is not yielded again.
    again, cursor = _read(connector, cursor)
    assert again == []
    # Changes within that same second still come through, once.
    harness.touch(seeded[0])
    harness.touch(seeded[-1])
    changed, _ = _read(connector, cursor)
    assert sorted(r.remote_id for r in changed) == sorted([seeded[0], seeded[-1]])


def test_interrupted_and_changed_while_reading(
    harness: BigPages, connector: ServiceNowConnector
) -> None:
    seeded = harness.seed(2500)
    yielded: list[str] = []
    cursor = None
    items = connector.read_changes(None)
    for item in items:
        if isinstance(item, Checkpoint):
            cursor = item.cursor
            if len(yielded) >= 1200:
                break
        else:
            yielded.append(item.remote_id)
    items.close()  # type: ignore[attr-defined]
    # People change records meanwhile: some already read, some not, in the same second.
    touched = [seeded[5], seeded[1500], seeded[2499]]
    for remote_id in touched:
        harness.touch(remote_id)
    harness.sim_clock.advance(1)
    later = harness.seed(150)
    rest, _ = _read(connector, cursor)
    rest_ids = [r.remote_id for r in rest]
    assert set(yielded) | set(rest_ids) == set(seeded) | set(later)
    assert len(rest_ids) == len(set(rest_ids))
    assert all(remote_id in rest_ids for remote_id in touched)
    # Only the touched records read before their change come again (in their new version).
    assert set(yielded) & set(rest_ids) == {t for t in touched if t in yielded}


def test_a_capped_page_is_not_taken_for_the_last(harness: BigPages) -> None:
    """The instance sends fewer records than asked (its own cap): the read goes on."""
    harness.sim.max_limit = 30
    seeded = harness.seed(250)
    harness.sim_clock.advance(1)
    seeded += harness.seed(70)
    connector = harness.make_connector()
    try:
        records, _ = _read(connector, None)
    finally:
        connector.close()
    assert sorted(r.remote_id for r in records) == sorted(seeded)
