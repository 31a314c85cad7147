"""A re-edit is never skipped: within one ``sys_updated_on`` second, only unchanged rows are.

``sys_updated_on`` has whole seconds. The cursor remembers a digest of each row read in its last
second, so a second edit within that second is read even where ``sys_mod_count`` does not tell
the versions apart (a field-level ACL hides it from the integration user), and a row that did
not change is still skipped.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from pysnc import ServiceNowClient
from usm_bridge.connector import Checkpoint, RawRecord

from usm_bridge_servicenow.connector import ServiceNowConnector
from usm_bridge_servicenow.testing import IncidentHarness


def _read(connector: ServiceNowConnector, cursor: str | None) -> tuple[list[RawRecord], str]:
    items = list(connector.read_changes(cursor))
    assert isinstance(items[-1], Checkpoint)
    return [item for item in items if isinstance(item, RawRecord)], items[-1].cursor


def _descriptions(records: list[RawRecord]) -> list[object]:
    return [record.data["short_description"] for record in records]


def _edit(harness: IncidentHarness, sys_id: str, text: str) -> None:
    harness.sim.update("incident", sys_id, {"short_description": text}, user="beth.anglin")


def test_a_second_edit_in_the_same_second_is_read_when_sys_mod_count_is_hidden(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    harness.sim.unreadable.add("sys_mod_count")  # what a field-level read ACL does
    (sys_id,) = harness.seed(1)
    first, cursor = _read(connector, None)
    _edit(harness, sys_id, "Printer jammed, floor 2")
    second, cursor = _read(connector, cursor)
    _edit(harness, sys_id, "Printer jammed, floor 3")
    third, cursor = _read(connector, cursor)
    quiet, _ = _read(connector, cursor)
    assert _descriptions(first + second + third) == [
        "Seeded 1",
        "Printer jammed, floor 2",
        "Printer jammed, floor 3",
    ]
    # The real case: one second for all three versions, and no mod count to tell them apart.
    assert len({r.data["sys_updated_on"] for r in first + second + third}) == 1
    assert all("sys_mod_count" not in r.data for r in first + second + third)
    assert quiet == []


def test_unchanged_rows_of_the_last_second_are_skipped_and_changed_ones_read(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    seeded = harness.seed(5)  # page_size 3: the second spans pages
    first, cursor = _read(connector, None)
    harness.touch(seeded[1])
    harness.touch(seeded[4])
    again, cursor = _read(connector, cursor)
    quiet, _ = _read(connector, cursor)
    assert sorted(r.remote_id for r in first) == sorted(seeded)
    assert sorted(r.remote_id for r in again) == sorted([seeded[1], seeded[4]])
    assert quiet == []


def test_a_cursor_of_the_first_format_still_loads_and_reads_its_last_second_once(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    seeded = harness.seed(2)
    _, cursor = _read(connector, None)
    second = json.loads(cursor)["tables"]["incident"]["s"]
    # What the connector saved before digests: the mod count of each row of its last second.
    old = json.dumps(
        {"v": 1, "tables": {"incident": {"s": second, "seen": {s[:16]: "0" for s in seeded}}}}
    )
    again, cursor = _read(connector, old)
    quiet, _ = _read(connector, cursor)
    # No content was remembered: that second is read once more (never skipped), then not.
    assert sorted(r.remote_id for r in again) == sorted(seeded)
    assert json.loads(cursor)["v"] == 2
    assert quiet == []


@pytest.mark.parametrize(
    "cursor",
    ['{"v": 3, "tables": {}}', '{"v": 2, "tables": []}', '{"v": 2}', "not json"],
)
def test_a_cursor_the_connector_did_not_write_is_refused(
    connector: ServiceNowConnector, cursor: str
) -> None:
    with pytest.raises(ValueError, match="not a cursor of the ServiceNow connector"):
        list(connector.read_changes(cursor))


class TlsHarness(IncidentHarness):
    """The simulator over HTTPS with a throw-away CA: ``pysnc`` accepts only https:// URLs."""

    ca = trustme.CA()

    def __init__(self) -> None:
        super().__init__()
        self.sim.stop()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(context)
        self.sim.start(tls=context)


@pytest.fixture
def tls_harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TlsHarness, str]]:
    # requests prefers these to a session's own CA file: the throw-away CA must win here.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    harness = TlsHarness()
    ca_file = tmp_path / "ca.pem"
    harness.ca.cert_pem.write_to_path(str(ca_file))
    harness.session.verify = str(ca_file)
    yield harness, str(ca_file)
    harness.close()


def test_two_edits_by_pysnc_in_one_second_are_both_read(
    tls_harness: tuple[TlsHarness, str],
) -> None:
    """``pysnc`` edits the incident as another integration would, through the Table API."""
    harness, ca_file = tls_harness
    (sys_id,) = harness.seed(1)
    client = ServiceNowClient(
        harness.sim.base_url, (harness.sim.username, harness.sim.password), verify=ca_file
    )
    connector = harness.make_connector()
    try:
        _, cursor = _read(connector, None)
        for text in ("Toner empty", "Toner empty and paper jammed"):
            record = client.GlideRecord("incident")
            assert record.get(sys_id)
            record.short_description = text
            record.update()
        # Both edits landed in the second the record was created in (the clock is frozen).
        both, cursor = _read(connector, cursor)
        record = client.GlideRecord("incident")
        assert record.get(sys_id)
        record.description = "Third edit, same second"
        record.update()
        third, cursor = _read(connector, cursor)
        quiet, _ = _read(connector, cursor)
    finally:
        connector.close()
    assert _descriptions(both) == ["Toner empty and paper jammed"]
    assert [r.data["description"] for r in third] == ["Third edit, same second"]
    assert len({r.data["sys_updated_on"] for r in both + third}) == 1
    assert quiet == []
