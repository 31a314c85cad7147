"""The connector's attachment methods and its reading of new files, against the simulator.

Listing, streamed download and streamed upload (``carries_attachments``), every fault path of
each (429, 5xx, an ACL, a record gone, the instance's size cap and extension allow-list, a
download cut mid-way, chunks that are not the size announced), and ``read_changes`` finding the
records that got files, which attaching never marks as updated.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pydantic import SecretStr
from pysnc import ServiceNowClient
from usm_bridge.attachments import spool
from usm_bridge.connector import Checkpoint, CommentDraft, CommentFile, OutgoingFile, RawRecord
from usm_bridge.errors import PermanentRemoteError, RetriableRemoteError

from usm_bridge_servicenow.connector import ServiceNowConnector, ServiceNowSettings
from usm_bridge_servicenow.simulator import ServiceNowSimulator, SimFault
from usm_bridge_servicenow.testing import IncidentHarness

PERSON = "beth.anglin"
FORM = b"%PDF-1.4 signed onboarding form\n" * 5_000  # 160 KB: several chunks each way


def _attach(harness: IncidentHarness, record: str, name: str, content: bytes) -> str:
    return harness.sim.attachments.attach("incident", record, name, content, user=PERSON)


def _pieces(content: bytes, size: int = 40_000) -> Iterator[bytes]:
    for start in range(0, len(content), size):
        yield content[start : start + size]


class _Again:
    """Chunks that read from the start each time (a spooled file's ``chunks`` does so)."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def __iter__(self) -> Iterator[bytes]:
        return _pieces(self.content)


def _content(connector: ServiceNowConnector, attachment_id: str) -> bytes:
    with connector.open_attachment(attachment_id) as chunks:
        return b"".join(chunks)


# -- listing and reading -----------------------------------------------------------------------


def test_the_files_of_a_record_are_listed_oldest_first_with_their_hash(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    record, other = harness.seed(2)
    first = _attach(harness, record, "form.pdf", FORM)
    harness.let_time_pass()
    second = _attach(harness, record, "notes.txt", b"first line\n")
    _attach(harness, other, "elsewhere.txt", b"not this record's")

    listed = connector.list_attachments(record)

    assert [(a.remote_id, a.name, a.declared_type, a.size, a.sha256, a.author) for a in listed] == [
        (first, "form.pdf", "application/pdf", len(FORM), hashlib.sha256(FORM).hexdigest(), PERSON),
        (
            second,
            "notes.txt",
            "text/plain",
            11,
            hashlib.sha256(b"first line\n").hexdigest(),
            PERSON,
        ),
    ]
    assert listed[0].created is not None and listed[1].created is not None
    assert (listed[1].created - listed[0].created).total_seconds() == 1
    assert connector.list_attachments(other)[0].name == "elsewhere.txt"


def test_a_listing_longer_than_a_page_is_read_whole(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    (record,) = harness.seed(1)
    made = harness.sim.attachments.seed("incident", record, 8, size=100)  # page size 3: 3 pages
    before = harness.sim.request_count
    # All in one second (the clock is frozen): then in sys_id order.
    assert [a.remote_id for a in connector.list_attachments(record)] == sorted(made)
    assert harness.sim.request_count - before == 3


def test_a_hash_that_is_no_sha256_is_not_taken_for_one(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    # An old release's 32-digit hash (see the simulator's docstring): left out, not believed.
    (record,) = harness.seed(1)
    file_id = _attach(harness, record, "old.txt", b"old")
    harness.sim.tables["sys_attachment"].records[file_id]["hash"] = "0" * 32
    harness.sim.tables["sys_attachment"].records[file_id]["size_bytes"] = "many"
    (listed,) = connector.list_attachments(record)
    assert (listed.sha256, listed.size, listed.name) == (None, None, "old.txt")


def test_a_listing_without_a_sys_id_is_an_error_naming_the_record(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    (record,) = harness.seed(1)
    file_id = _attach(harness, record, "x.txt", b"x")
    original = harness.sim.attachments.metadata
    harness.sim.attachments.metadata = lambda sys_id: {**original(sys_id), "sys_id": ""}  # type: ignore[method-assign]
    with pytest.raises(RetriableRemoteError, match=f"file of record {record} without"):
        connector.list_attachments(record)
    assert file_id


def test_a_file_is_downloaded_in_chunks_with_its_bytes(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    (record,) = harness.seed(1)
    file_id = _attach(harness, record, "form.pdf", FORM)
    with connector.open_attachment(file_id) as chunks:
        pieces = list(chunks)
    assert b"".join(pieces) == FORM
    assert len(pieces) > 1 and max(len(piece) for piece in pieces) <= 64 * 1024


def test_leaving_a_download_early_closes_it(
    harness: IncidentHarness, connector: ServiceNowConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    (record,) = harness.seed(1)
    file_id = _attach(harness, record, "big.bin", b"\0" * 5_000_000)
    closed: list[str] = []
    original = requests.Response.close

    def close(response: requests.Response) -> None:
        closed.append(response.url)
        original(response)

    monkeypatch.setattr(requests.Response, "close", close)
    with connector.open_attachment(file_id) as chunks:
        assert len(next(chunks)) > 0
        assert closed == []
    assert closed == [f"{harness.sim.base_url}/api/now/attachment/{file_id}/file"]
    # The half-read answer was closed, not handed back to the pool mid-body: the connection
    # pool serves the next request cleanly.
    assert connector.list_attachments(record)[0].remote_id == file_id
    assert _content(connector, file_id) == b"\0" * 5_000_000


# -- writing -----------------------------------------------------------------------------------


def test_a_file_is_uploaded_streamed_and_the_record_is_not_touched(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    (record,) = harness.seed(1)
    before = harness.sim.get("incident", record)
    file_id = connector.put_attachment(
        record, "form.pdf", "application/pdf", len(FORM), _pieces(FORM)
    )
    (listed,) = connector.list_attachments(record)
    assert (listed.remote_id, listed.name, listed.declared_type, listed.size) == (
        file_id,
        "form.pdf",
        "application/pdf",
        len(FORM),
    )
    assert listed.sha256 == hashlib.sha256(FORM).hexdigest()
    assert listed.author == harness.sim.username
    assert harness.sim.attachments.path_of(file_id).read_bytes() == FORM
    assert harness.sim.get("incident", record) == before
    assert harness.sim.journal(record) == []


def test_an_empty_file_is_uploaded(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    (record,) = harness.seed(1)
    file_id = connector.put_attachment(record, "empty.txt", "text/plain", 0, iter([]))
    assert _content(connector, file_id) == b""


@pytest.mark.parametrize(("public", "element"), [(True, "comments"), (False, "work_notes")])
def test_a_file_sent_with_a_comment_is_named_in_the_comments_own_entry(
    harness: IncidentHarness, connector: ServiceNowConnector, public: bool, element: str
) -> None:
    (record,) = harness.seed(1)
    comment = CommentDraft(body="Here is the signed form.", public=public)
    connector.put_attachment(
        record, "form.pdf", "application/pdf", len(FORM), _pieces(FORM), comment=comment
    )
    # One entry: the comment's words and the file's name together (no separate entry the
    # bridge would not know as its own when it reads the record back).
    entries = [(e["element"], e["value"]) for e in harness.sim.journal(record)]
    assert entries == [(element, "Here is the signed form.\n\nAttached: form.pdf (156.2 KB)")]


def test_a_comment_with_files_is_one_entry_whose_id_is_returned_and_ties_the_files(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    (record,) = harness.seed(1)
    files = [
        OutgoingFile("form.pdf", "application/pdf", len(FORM), "0" * 64, lambda: _pieces(FORM)),
        OutgoingFile("a.txt", "text/plain", 2, "1" * 64, lambda: iter([b"ok"])),
    ]
    draft = CommentDraft(body="Both forms.", correlation="c1",
                         files=[CommentFile(name="old.pdf", size=10)])  # fmt: skip
    entry_id, writes = connector.add_comment_with_files(
        record, draft.model_copy(update={"files": [*draft.files, *(
            CommentFile(name=f.name, size=f.size) for f in files)]}), files
    )  # fmt: skip
    [entry] = harness.sim.journal(record)
    assert entry["sys_id"] == entry_id
    assert entry["value"] == (
        "Both forms.\n\nAttached: old.pdf (10 bytes), form.pdf (156.2 KB), a.txt (2 bytes)"
    )
    listed = connector.list_attachments(record)
    assert {w.remote_id for w in writes} == {a.remote_id for a in listed}  # same second
    # Read back, each file is tied to the entry that names it (its comment).
    # (Each yield of the record: a record with files may come twice, see the read path.)
    reads = [r for r in connector.read_changes(None) if isinstance(r, RawRecord)]
    assert reads and {r.remote_id for r in reads} == {record}
    for read in reads:
        assert {(a.name, a.comment_id) for a in read.attachments} == {
            ("form.pdf", entry_id), ("a.txt", entry_id),
        }  # fmt: skip


@pytest.mark.parametrize(("given", "announced"), [(b"12345", 10), (b"1234567890ab", 10)])
def test_chunks_not_the_size_announced_are_refused_and_nothing_lands(
    harness: IncidentHarness, connector: ServiceNowConnector, given: bytes, announced: int
) -> None:
    (record,) = harness.seed(1)
    with pytest.raises(ValueError, match=f"of the {announced} bytes announced|longer than"):
        connector.put_attachment(record, "x.txt", "text/plain", announced, iter([given]))
    assert harness.sim.ids("sys_attachment") == []
    assert connector.list_attachments(record) == []  # the connection after it still works


# -- faults ------------------------------------------------------------------------------------


def test_a_429_before_a_listing_and_a_download_is_waited_out(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    (record,) = harness.seed(1)
    file_id = _attach(harness, record, "form.pdf", FORM)
    harness.sim.inject(SimFault("429", retry_after=3))
    assert [a.remote_id for a in connector.list_attachments(record)] == [file_id]
    harness.sim.inject(SimFault("429", retry_after=2))
    assert _content(connector, file_id) == FORM
    assert harness.clock.sleeps == [3.0, 2.0]


@pytest.mark.parametrize("kind", ["500", "503"])
def test_a_server_error_before_a_download_is_retried(
    harness: IncidentHarness, connector: ServiceNowConnector, kind: str
) -> None:
    (record,) = harness.seed(1)
    file_id = _attach(harness, record, "form.pdf", FORM)
    harness.sim.inject(SimFault(kind), times=2)
    assert _content(connector, file_id) == FORM
    assert len(harness.clock.sleeps) == 2


def test_an_upload_refused_by_a_429_is_sent_again_when_its_chunks_read_anew(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    (record,) = harness.seed(1)
    harness.sim.inject(SimFault("429", retry_after=4))
    file_id = connector.put_attachment(
        record, "form.pdf", "application/pdf", len(FORM), _Again(FORM)
    )
    assert harness.clock.sleeps == [4.0]
    assert [a.remote_id for a in connector.list_attachments(record)] == [file_id]
    assert _content(connector, file_id) == FORM


def test_an_upload_refused_by_a_429_is_not_sent_again_from_chunks_read_once(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    (record,) = harness.seed(1)
    harness.sim.inject(SimFault("429", retry_after=4))
    with pytest.raises(RetriableRemoteError, match="could be read only once") as caught:
        connector.put_attachment(record, "form.pdf", "application/pdf", len(FORM), _pieces(FORM))
    assert (caught.value.status, caught.value.retry_after) == (429, 4.0)
    assert harness.clock.sleeps == [] and harness.sim.ids("sys_attachment") == []


def test_an_upload_answered_500_is_not_repeated(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    # A 5xx may come after the file landed: the bridge looks for its copy before sending again.
    (record,) = harness.seed(1)
    harness.sim.inject(SimFault("500"))
    with pytest.raises(RetriableRemoteError, match="server error"):
        connector.put_attachment(record, "form.pdf", "application/pdf", len(FORM), _Again(FORM))
    assert harness.clock.sleeps == []


def test_an_upload_whose_answer_is_lost_leaves_one_file_to_be_found(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    (record,) = harness.seed(1)
    harness.sim.inject(SimFault("lose-create"))
    with pytest.raises(RetriableRemoteError):
        connector.put_attachment(record, "form.pdf", "application/pdf", len(FORM), _Again(FORM))
    (found,) = connector.list_attachments(record)
    assert found.sha256 == hashlib.sha256(FORM).hexdigest() and found.name == "form.pdf"


def test_an_acl_refusal_is_permanent_with_the_instances_message(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    (record,) = harness.seed(1)
    harness.sim.attachments.settings.denied.add(harness.sim.username)
    with pytest.raises(PermanentRemoteError) as caught:
        connector.put_attachment(record, "form.pdf", "application/pdf", len(FORM), _pieces(FORM))
    assert caught.value.status == 403
    assert caught.value.remote_message == "Operation Failed: ACL Exception Insert Failed"
    assert harness.sim.ids("sys_attachment") == []


def test_a_record_or_a_file_gone_is_a_404(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    record, gone = harness.seed(2)
    file_id = _attach(harness, record, "form.pdf", FORM)
    harness.sim.delete("incident", gone)
    harness.sim.attachments.delete(file_id)
    with pytest.raises(PermanentRemoteError, match="doesn't exist") as on_put:
        connector.put_attachment(gone, "form.pdf", "application/pdf", len(FORM), _pieces(FORM))
    with pytest.raises(PermanentRemoteError, match=f"No attachment {file_id}") as on_open:
        _content(connector, file_id)
    assert on_put.value.status == on_open.value.status == 404
    assert connector.list_attachments(gone) == []


def test_a_file_over_the_instances_size_cap_is_refused(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    (record,) = harness.seed(1)
    harness.sim.attachments.settings.max_size_mb = 0.1  # 104,857 bytes, FORM is 160,000
    with pytest.raises(PermanentRemoteError, match=r"com\.glide\.attachment\.max_size") as caught:
        connector.put_attachment(record, "form.pdf", "application/pdf", len(FORM), _pieces(FORM))
    assert caught.value.status == 400 and harness.sim.ids("sys_attachment") == []


def test_an_extension_the_instance_does_not_allow_is_refused(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    (record,) = harness.seed(1)
    harness.sim.attachments.settings.extensions = {"pdf", "txt"}  # an allow list
    with pytest.raises(
        PermanentRemoteError, match=r"'exe' is not in glide\.attachment\.extensions"
    ):
        connector.put_attachment(record, "setup.exe", "application/octet-stream", 3, iter([b"MZ!"]))
    assert connector.put_attachment(record, "notes.TXT", "text/plain", 2, iter([b"ok"]))
    assert [a.name for a in connector.list_attachments(record)] == ["notes.TXT"]


def test_a_download_cut_midway_is_an_error_and_no_partial_file_is_kept(
    harness: IncidentHarness, connector: ServiceNowConnector, tmp_path: Path
) -> None:
    (record,) = harness.seed(1)
    file_id = _attach(harness, record, "form.pdf", FORM)
    harness.sim.inject(SimFault("cut", after=100_000))
    with (
        pytest.raises(RetriableRemoteError, match=f"attachment {file_id} broke off"),
        connector.open_attachment(file_id) as chunks,
    ):
        spool(chunks, directory=tmp_path, cap=10_000_000)
    assert list(tmp_path.iterdir()) == []
    assert _content(connector, file_id) == FORM  # the next download is whole


def test_a_download_shorter_than_the_size_stated_is_an_error(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    # An answer without Content-Length (chunked, through a proxy) ends "cleanly" when cut:
    # the size the instance states in X-Attachment-Metadata still tells.
    (record,) = harness.seed(1)
    file_id = _attach(harness, record, "form.pdf", FORM)
    harness.sim.attachments.path_of(file_id).write_bytes(FORM[:1000])
    with pytest.raises(
        RetriableRemoteError, match=f"gave 1000 bytes, the instance states {len(FORM)}"
    ):
        _content(connector, file_id)


# -- new files on old records ------------------------------------------------------------------


def _read(connector: ServiceNowConnector, cursor: str | None) -> tuple[list[RawRecord], str]:
    items = list(connector.read_changes(cursor))
    last = items[-1]
    assert isinstance(last, Checkpoint)
    return [item for item in items if isinstance(item, RawRecord)], last.cursor


def _read_seeded(
    harness: IncidentHarness, connector: ServiceNowConnector, count: int
) -> tuple[list[str], str]:
    """``count`` records seeded and read: their ids and the cursor after them."""
    ids = harness.seed(count)
    return ids, _read(connector, None)[1]


def _nothing_new(harness: IncidentHarness, connector: ServiceNowConnector, cursor: str) -> None:
    """A second later, with nothing changed, a read from ``cursor`` yields no record."""
    harness.let_time_pass()
    assert _read(connector, cursor)[0] == []


def test_a_record_that_got_a_file_is_read_again(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    ids = harness.seed(5)
    _attach(harness, ids[0], "before.txt", b"on the record before the first read")
    first, cursor = _read(connector, None)
    # The record with a file in the newest file's second may come twice (repeats are allowed).
    assert {r.remote_id for r in first} == set(ids) and len(first) <= len(ids) + 1
    _nothing_new(harness, connector, cursor)

    harness.let_time_pass()
    _attach(harness, ids[3], "form.pdf", FORM)
    _attach(harness, ids[3], "second.txt", b"same record, same second")
    _attach(harness, ids[1], "photo.txt", b"another record")
    again, cursor = _read(connector, cursor)
    # ids[3] comes twice when its two files fall on two pages (files of one second are paged
    # in sys_id order): a record is read again per page, as a file may come between pages.
    assert {r.remote_id for r in again} == {ids[1], ids[3]} and len(again) <= 3
    assert all(r.data["sys_id"] == r.remote_id for r in again)
    _nothing_new(harness, connector, cursor)


def test_files_on_many_records_in_one_second_cost_no_request_per_record(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    ids, cursor = _read_seeded(harness, connector, 7)
    before = harness.sim.request_count
    assert _read(connector, cursor)[0] == []
    without_files = harness.sim.request_count - before  # the records' part, one files listing
    harness.let_time_pass()
    for record in ids:  # 7 files in one second, page size 3: a drain of that second
        _attach(harness, record, "form.txt", record.encode())
    before = harness.sim.request_count
    again, _ = _read(connector, cursor)
    assert sorted(r.remote_id for r in again) == sorted(ids)
    # Files: 4 listings in all (3 pages and the drain's last), each page's 3 records read in
    # one Table API request, their journal in one more and their files in one more: never a
    # request per record.
    assert harness.sim.request_count - before == without_files + 3 + 3 * 3
    assert all([a.name for a in r.attachments] == ["form.txt"] for r in again)


def test_a_first_read_does_not_page_through_the_files_already_there(
    harness: IncidentHarness, connector: ServiceNowConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = harness.seed(3)
    for record in ids:
        harness.sim.attachments.seed("incident", record, 3, size=10)
        harness.let_time_pass()
    asked: list[str] = []
    answer = harness.sim.answer

    def counted(method: str, path: str, headers: dict[str, str], body: object) -> object:
        if path.startswith("/api/now/attachment"):
            asked.append(path)
        return answer(method, path, headers, body)  # type: ignore[arg-type]

    monkeypatch.setattr(harness.sim, "answer", counted)
    first, cursor = _read(connector, None)
    assert {r.remote_id for r in first} == set(ids)
    # The newest file's second; the records' 9 files, listed with them (one listing of the
    # page's 3 records, 3 pages of 3); then the files from the newest second on: the last
    # record's 3 (one page), not the 9 there are, which it was yielded with already: not
    # read again.
    assert len(asked) == 1 + 3 + 1 and len(first) == len(ids)
    assert all(len(r.attachments) == 3 for r in first)
    _nothing_new(harness, connector, cursor)


def test_a_read_of_files_stopped_at_a_checkpoint_resumes_without_a_gap(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    ids, cursor = _read_seeded(harness, connector, 7)
    harness.let_time_pass()
    for n, record in enumerate(ids):
        _attach(harness, record, f"form-{n}.txt", b"x")
        if n % 2:
            harness.let_time_pass()
    seen: list[str] = []
    checkpoints = 0
    for item in connector.read_changes(cursor):
        if isinstance(item, RawRecord):
            seen.append(item.remote_id)
        else:
            checkpoints += 1
            if checkpoints == 3:  # the table's page, then the first page of files
                cursor = item.cursor
                break
    rest, _ = _read(connector, cursor)
    assert set(seen) | {r.remote_id for r in rest} == set(ids)


def test_a_cursor_from_before_files_were_followed_looks_at_files_since_its_second(
    harness: IncidentHarness, connector: ServiceNowConnector
) -> None:
    ids, cursor = _read_seeded(harness, connector, 2)
    old = json.loads(cursor)
    del old["files"]
    harness.let_time_pass()
    _attach(harness, ids[1], "form.pdf", FORM)
    again, _ = _read(connector, json.dumps(old))
    assert [r.remote_id for r in again] == [ids[1]]


def test_the_simulator_lists_files_by_their_creation_time(harness: IncidentHarness) -> None:
    (record,) = harness.seed(1)
    early = _attach(harness, record, "a.txt", b"a")
    harness.let_time_pass()
    late = _attach(harness, record, "b.txt", b"b")
    stamp = harness.sim.tables["sys_attachment"].records[late]["sys_created_on"]
    with requests.Session() as session:
        session.auth = (harness.sim.username, harness.sim.password)
        answer = session.get(
            f"{harness.sim.base_url}/api/now/attachment",
            params={"sysparm_query": f"table_name=incident^sys_created_on>={stamp}"},
            timeout=10,
        )
        newest = session.get(
            f"{harness.sim.base_url}/api/now/attachment",
            params={"sysparm_query": "ORDERBYDESCsys_created_on", "sysparm_limit": "1"},
            timeout=10,
        )
    assert [row["sys_id"] for row in answer.json()["result"]] == [late]
    assert [row["sys_id"] for row in newest.json()["result"]] == [late] and early != late


def test_following_files_can_be_turned_off(harness: IncidentHarness) -> None:
    class Quiet(IncidentHarness):
        def settings(self) -> dict[str, object]:
            return {**super().settings(), "follow_attachments": False}

    quiet = Quiet()
    try:
        connector = quiet.make_connector()
        ids = quiet.seed(2)
        _, cursor = _read(connector, None)
        quiet.let_time_pass()
        _attach(quiet, ids[0], "form.pdf", FORM)
        assert _read(connector, cursor)[0] == []
        connector.close()
    finally:
        quiet.close()


# -- the connector and pysnc agree -------------------------------------------------------------


@pytest.fixture
def tls_sim(tls_context: ssl.SSLContext) -> Iterator[ServiceNowSimulator]:
    """An instance over HTTPS, as pysnc requires."""
    with ServiceNowSimulator(ssl_context=tls_context) as simulator:
        yield simulator


@pytest.fixture
def tls_connector(tls_sim: ServiceNowSimulator) -> Iterator[ServiceNowConnector]:
    settings = ServiceNowSettings(
        instance_url=tls_sim.base_url,
        username=tls_sim.username,
        password=SecretStr(tls_sim.password),
        max_attempts=1,
    )
    connector = ServiceNowConnector("sn", settings)
    yield connector
    connector.close()


def test_a_file_pysnc_attaches_is_listed_and_read_by_the_connector(
    tls_sim: ServiceNowSimulator, tls_connector: ServiceNowConnector
) -> None:
    incident = tls_sim.insert("incident", {"short_description": "Onboarding"})
    tls_sim.add_user(PERSON, "Beth Anglin", "person-secret-1")
    client = ServiceNowClient(tls_sim.base_url, (PERSON, "person-secret-1"))
    record = client.GlideRecord("incident")
    assert record.get(incident)
    record.add_attachment("form.pdf", FORM, "application/pdf")

    (listed,) = tls_connector.list_attachments(incident)
    (by_pysnc,) = record.get_attachments()
    assert (listed.remote_id, listed.name, listed.sha256, listed.size, listed.author) == (
        by_pysnc.sys_id,
        by_pysnc.file_name,
        by_pysnc.hash,
        int(by_pysnc.size_bytes),
        PERSON,
    )
    assert _content(tls_connector, listed.remote_id) == by_pysnc.read() == FORM
    assert listed.sha256 == hashlib.sha256(FORM).hexdigest()


def test_a_file_the_connector_puts_is_read_by_pysnc(
    tls_sim: ServiceNowSimulator, tls_connector: ServiceNowConnector
) -> None:
    incident = tls_sim.insert("incident", {"short_description": "Onboarding"})
    file_id = tls_connector.put_attachment(
        incident, "form.pdf", "application/pdf", len(FORM), _pieces(FORM)
    )
    client = ServiceNowClient(tls_sim.base_url, (tls_sim.username, tls_sim.password))
    record = client.GlideRecord("incident")
    assert record.get(incident)
    (by_pysnc,) = record.get_attachments()
    assert (by_pysnc.sys_id, by_pysnc.file_name, by_pysnc.content_type) == (
        file_id,
        "form.pdf",
        "application/pdf",
    )
    assert by_pysnc.read() == FORM and by_pysnc.hash == hashlib.sha256(FORM).hexdigest()
