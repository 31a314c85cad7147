"""Each record the connector yields carries its files (``RawRecord.attachments``).

They are listed a page of records at a time (``table_sys_idIN``, a ``journal_batch`` of
records a request), never a request per record; a table that held no file when files were
last looked at is not listed at all (a file attached since is found by following files, and
its record yielded again with it). A 429 on a listing is waited out, or ends the read before
the page's records; a file on a record the connector does not read reaches no record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from usm_bridge.connector import Checkpoint, RawRecord
from usm_bridge.errors import RetriableRemoteError

from usm_bridge_servicenow.connector import ServiceNowConnector
from usm_bridge_servicenow.simulator import SimFault
from usm_bridge_servicenow.testing import IncidentHarness

PERSON = "beth.anglin"
LISTING = "table_sys_idIN"  # what a listing of a page's records' files asks (encoded: %5E...)


def _attach(harness: IncidentHarness, record: str, name: str, content: bytes) -> str:
    return harness.sim.attachments.attach("incident", record, name, content, user=PERSON)


def _read(connector: ServiceNowConnector, cursor: str | None) -> tuple[list[RawRecord], str]:
    items = list(connector.read_changes(cursor))
    last = items[-1]
    assert isinstance(last, Checkpoint)
    return [item for item in items if isinstance(item, RawRecord)], last.cursor


@pytest.fixture
def paths(harness: IncidentHarness, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The path of every request the simulator serves from now on."""
    seen: list[str] = []
    answer = harness.sim.answer

    def counted(method: str, path: str, headers: dict[str, str], body: object) -> object:
        seen.append(path)
        return answer(method, path, headers, body)  # type: ignore[arg-type]

    monkeypatch.setattr(harness.sim, "answer", counted)
    return seen


def _listings(paths: list[str]) -> int:
    return sum(1 for path in paths if path.startswith("/api/now/attachment?") and LISTING in path)


def _files(records: list[RawRecord]) -> dict[str, list[tuple[str, str | None]]]:
    """Each record's files (name, SHA-256) as its last yield listed them."""
    return {r.remote_id: [(a.name, a.sha256) for a in r.attachments] for r in records}


def test_a_backfill_lists_each_pages_files_in_one_request(
    harness: IncidentHarness, connector: ServiceNowConnector, paths: list[str]
) -> None:
    ids = harness.seed(6)  # page size 3: two pages of records
    _attach(harness, ids[0], "a.pdf", b"first")
    harness.let_time_pass()  # files of one second are listed by sys_id: these by time
    _attach(harness, ids[0], "b.txt", b"second")
    _attach(harness, ids[4], "c.txt", b"third")
    harness.let_time_pass()

    records, cursor = _read(connector, None)

    # The 6 records in order, each once: following files from the newest file's second finds
    # the files the two records were yielded with already, and reads neither again.
    assert len(records) == 6
    table_phase = records[:6]
    assert [r.remote_id for r in table_phase] == sorted(ids)  # one second: by sys_id
    digest = {c: hashlib.sha256(c).hexdigest() for c in (b"first", b"second", b"third")}
    assert _files(table_phase) == {
        ids[0]: [("a.pdf", digest[b"first"]), ("b.txt", digest[b"second"])],
        ids[1]: [], ids[2]: [], ids[3]: [],
        ids[4]: [("c.txt", digest[b"third"])],
        ids[5]: [],
    }  # fmt: skip
    # One listing per page of records (2), with or without files on it; none more.
    assert _listings(paths) == 2
    paths.clear()
    harness.let_time_pass()
    assert _read(connector, cursor)[0] == [] and _listings(paths) == 0


def test_a_table_without_files_is_not_listed_until_one_comes(
    harness: IncidentHarness, connector: ServiceNowConnector, paths: list[str]
) -> None:
    ids = harness.seed(7)
    records, cursor = _read(connector, None)
    assert {r.remote_id for r in records} == set(ids) and len(records) == 7
    assert all(r.attachments == [] for r in records)
    # The newest file's second (none: the epoch) and the files since: no listing per page.
    attachment_api = [p for p in paths if p.startswith("/api/now/attachment")]
    assert len(attachment_api) == 2 and _listings(paths) == 0

    harness.let_time_pass()
    harness.touch(ids[2])
    form = _attach(harness, ids[5], "form.pdf", b"%PDF-1.4 form")
    paths.clear()
    records, cursor = _read(connector, cursor)
    # The edited record, not listed (the table held no file); then the record that got the
    # file, yielded again by following files, with it (one listing).
    assert [(r.remote_id, [a.remote_id for a in r.attachments]) for r in records] == [
        (ids[2], []),
        (ids[5], [form]),
    ]
    assert _listings(paths) == 1
    # From now on the table holds files: an edited record is listed with its page.
    harness.let_time_pass()
    harness.touch(ids[5])
    paths.clear()
    records, _ = _read(connector, cursor)
    assert [(r.remote_id, [a.remote_id for a in r.attachments]) for r in records] == [
        (ids[5], [form])
    ]
    assert _listings(paths) == 1


def test_a_record_edited_and_given_the_tables_first_file_is_yielded_once_with_it(
    harness: IncidentHarness, connector: ServiceNowConnector, paths: list[str]
) -> None:
    """The table held no file; in one cycle a record is edited and gets one, another is
    edited: each is yielded once, the first with its file (not bare, then again with it), for
    no request more than a cycle without files costs (following files' first page, asked
    before the records instead of after)."""
    ids = harness.seed(4)
    _, cursor = _read(connector, None)
    harness.let_time_pass()
    harness.touch(ids[1])
    form = _attach(harness, ids[1], "form.pdf", b"%PDF-1.4 form")
    harness.touch(ids[2])
    paths.clear()
    records, cursor = _read(connector, cursor)
    assert len(records) == 2
    assert {r.remote_id: [a.remote_id for a in r.attachments] for r in records} == {
        ids[1]: [form], ids[2]: [],
    }  # fmt: skip
    attachment_api = [p for p in paths if p.startswith("/api/now/attachment")]
    assert len(attachment_api) == 1 and _listings(paths) == 0
    # The records' pages only: ids[1] is not read again by its sys_id.
    assert not [p for p in paths if "/table/incident" in p and "sys_idIN" in p]
    # Nothing new: nothing yielded, and the table, which holds a file now, costs no listing.
    harness.let_time_pass()
    paths.clear()
    assert _read(connector, cursor)[0] == [] and _listings(paths) == 0


def test_the_bridges_own_file_is_listed_as_the_integration_users(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    (record,) = harness.seed(1)
    _, cursor = _read(connector, None)
    harness.let_time_pass()
    own = connector.put_attachment(record, "copy.txt", "text/plain", 4, [b"copy"])
    person = _attach(harness, record, "person.txt", b"mine")
    records, _ = _read(connector, cursor)
    assert [r.remote_id for r in records] == [record]
    # One second: listed by sys_id.
    assert [(a.remote_id, a.author) for a in records[0].attachments] == sorted(
        [(own, harness.sim.username), (person, PERSON)]
    )


def _listing_refused(harness: IncidentHarness, times: int) -> Iterator[None]:
    """The first listing of a page's files answered 429 ``times`` times."""
    answer = harness.sim.answer
    left = [times]

    def refusing(method: str, path: str, headers: dict[str, str], body: object) -> object:
        if LISTING in path and left[0]:
            left[0] -= 1
            harness.sim.inject(SimFault("429", retry_after=2))
        return answer(method, path, headers, body)  # type: ignore[arg-type]

    harness.sim.answer = refusing  # type: ignore[method-assign]
    try:
        yield
    finally:
        harness.sim.answer = answer  # type: ignore[method-assign]


def _with_a_file(harness: IncidentHarness) -> tuple[list[str], str]:
    """Three records, the second with a file, and a file on a record read before (so the
    table holds files); the cursor before the three."""
    (old,) = harness.seed(1)
    _attach(harness, old, "old.txt", b"old")
    harness.let_time_pass()
    connector = harness.make_connector()
    try:
        _, cursor = _read(connector, None)
    finally:
        connector.close()
    harness.let_time_pass()
    ids = harness.seed(3)
    _attach(harness, ids[1], "form.pdf", b"%PDF-1.4 form")
    return ids, cursor


def _assert_page_then_again(records: list[RawRecord], ids: list[str]) -> None:
    """The page of three (one second: by sys_id), ``ids[1]`` with its file; not yielded again
    by following files (it was yielded with that file already)."""
    assert [r.remote_id for r in records] == sorted(ids)
    assert [(r.remote_id, [a.name for a in r.attachments]) for r in records if r.attachments] == [
        (ids[1], ["form.pdf"]),
    ]


def test_a_429_on_a_listing_is_waited_out(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    ids, cursor = _with_a_file(harness)
    for _ in _listing_refused(harness, 1):
        records, _ = _read(connector, cursor)
    # The page, then the record with the file again (following files).
    _assert_page_then_again(records, ids)
    assert harness.clock.sleeps == [2.0]


def test_a_listing_refused_every_time_ends_the_read_before_its_page(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    ids, cursor = _with_a_file(harness)
    yielded: list[RawRecord | Checkpoint] = []
    for _ in _listing_refused(harness, 4):  # max_attempts
        with pytest.raises(RetriableRemoteError, match="429"):
            for item in connector.read_changes(cursor):
                yielded.append(item)
    # No record of the page went without its files, and no checkpoint passed it.
    assert not any(isinstance(item, RawRecord) for item in yielded)
    assert not any(isinstance(item, Checkpoint) for item in yielded)
    records, _ = _read(connector, cursor)  # read again: whole, with the file
    _assert_page_then_again(records, ids)


def test_a_file_on_a_record_the_connector_does_not_read_reaches_no_record(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    ids, cursor = _with_a_file(harness)
    problem = harness.sim.insert("problem", {"short_description": "not synced"}, user=PERSON)
    harness.sim.attachments.attach("problem", problem, "elsewhere.txt", b"x", user=PERSON)
    records, cursor = _read(connector, cursor)
    _assert_page_then_again(records, ids)
    harness.let_time_pass()
    assert _read(connector, cursor)[0] == []


def test_a_listing_that_ignores_the_records_asked_for_gives_no_record_anothers_file(
    harness: IncidentHarness, connector: ServiceNowConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, cursor = _with_a_file(harness)  # the record read before holds old.txt
    answer = harness.sim.answer

    def careless(method: str, path: str, headers: dict[str, str], body: object) -> object:
        # An instance that ignores an unknown condition would answer every file of the table.
        if LISTING in path:
            path = "/api/now/attachment?sysparm_query=table_name%3Dincident"
        return answer(method, path, headers, body)  # type: ignore[arg-type]

    monkeypatch.setattr(harness.sim, "answer", careless)
    records, _ = _read(connector, cursor)
    _assert_page_then_again(records, ids)
