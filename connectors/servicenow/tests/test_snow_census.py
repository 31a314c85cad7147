"""The census listing of the ServiceNow connector: ``remote_ids()`` over the simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import responses
from usm_bridge.errors import RemoteError
from usm_bridge.testing import FakeClock

from usm_bridge_servicenow.connector import ServiceNowConnector, ServiceNowSettings
from usm_bridge_servicenow.simulator import ServiceNowSimulator, SimFault
from usm_bridge_servicenow.testing import ServiceNowHarness


class _TwoTables(ServiceNowHarness):
    table = "incident"

    def settings(self) -> dict[str, object]:
        return {**super().settings(), "tables": ["incident", "sc_req_item"]}


@pytest.fixture
def harness() -> Iterator[_TwoTables]:
    made = _TwoTables()
    try:
        yield made
    finally:
        made.close()


def _seed(sim: ServiceNowSimulator, table: str, count: int) -> list[str]:
    return [sim.insert(table, {"short_description": f"{table} {n}"}) for n in range(count)]


def test_lists_every_record_of_every_table_across_pages(harness: _TwoTables) -> None:
    incidents = _seed(harness.sim, "incident", 8)  # page_size 3: three pages
    items = _seed(harness.sim, "sc_req_item", 4)
    connector = harness.make_connector()
    before = harness.sim.request_count
    listed = list(connector.remote_ids())
    assert sorted(listed) == sorted(incidents + items)
    assert len(listed) == len(set(listed)) == 12
    assert harness.sim.request_count - before == 3 + 2


def test_only_sys_id_is_asked_for(harness: _TwoTables) -> None:
    _seed(harness.sim, "incident", 2)
    seen: list[str] = []
    answer = harness.sim.answer

    def spy(method: str, raw_path: str, *rest: object) -> object:
        seen.append(raw_path)
        return answer(method, raw_path, *rest)  # type: ignore[arg-type]

    harness.sim.answer = spy  # type: ignore[assignment,method-assign]
    list(harness.make_connector().remote_ids())
    assert seen and all("sysparm_fields=sys_id&" in p or p.endswith("sysparm_fields=sys_id")
                        for p in seen)  # fmt: skip


def test_an_empty_table_lists_nothing(harness: _TwoTables) -> None:
    assert list(harness.make_connector().remote_ids()) == []


def test_a_deleted_record_disappears_from_the_listing(harness: _TwoTables) -> None:
    incidents = _seed(harness.sim, "incident", 7)
    items = _seed(harness.sim, "sc_req_item", 2)
    connector = harness.make_connector()
    assert sorted(connector.remote_ids()) == sorted(incidents + items)
    harness.sim.delete("incident", incidents[3])
    harness.sim.delete("sc_req_item", items[0])
    assert sorted(connector.remote_ids()) == sorted(
        [i for i in incidents if i != incidents[3]] + items[1:]
    )


def test_a_delete_during_the_listing_hides_no_other_record(harness: _TwoTables) -> None:
    """Keyset pages: a record deleted between two pages cannot shift another one out."""
    incidents = sorted(_seed(harness.sim, "incident", 9))
    listing = harness.make_connector().remote_ids()
    first = [next(listing) for _ in range(3)]
    assert first == incidents[:3]
    harness.sim.delete("incident", incidents[0])  # an offset read would now skip incidents[3]
    assert first + list(listing) == incidents


def test_a_fault_mid_listing_raises(harness: _TwoTables) -> None:
    _seed(harness.sim, "incident", 8)
    listing = harness.make_connector().remote_ids()
    assert len([next(listing) for _ in range(3)]) == 3
    harness.sim.inject(SimFault("503"), times=10)  # more than max_attempts
    with pytest.raises(RemoteError):
        list(listing)


def test_a_fault_in_the_second_table_raises(harness: _TwoTables) -> None:
    _seed(harness.sim, "incident", 2)
    _seed(harness.sim, "sc_req_item", 2)
    listing = harness.make_connector().remote_ids()
    assert len([next(listing) for _ in range(2)]) == 2
    harness.sim.inject(SimFault("reject", status=403, message="ACL"), times=1)
    with pytest.raises(RemoteError):
        list(listing)


def test_an_instance_ignoring_the_keyset_raises() -> None:
    base = "https://acme.service-now.com"
    clock = FakeClock()
    connector = ServiceNowConnector(
        "sn",
        ServiceNowSettings.model_validate(
            {"instance_url": base, "username": "u", "password": "p", "page_size": 2}
        ),
        session=requests.Session(),
        sleep=clock.sleep,
        clock=clock.monotonic,
        now=clock.now,
    )
    page = {"result": [{"sys_id": "a" * 32}, {"sys_id": "b" * 32}]}
    with responses.RequestsMock() as mock:
        # Always the first page, with another one announced: a keyset that is not applied.
        mock.get(f"{base}/api/now/v2/table/incident", json=page, headers={"X-Total-Count": "9"})
        with pytest.raises(RemoteError, match="keyset"):
            list(connector.remote_ids())
