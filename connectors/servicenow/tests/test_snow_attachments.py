"""The simulator's Attachment API as clients that did not come from this project see it.

ServiceNow's own Python client (pysnc: ``GlideRecord.add_attachment``, ``get_attachments``,
``Attachment.get`` / ``read`` / ``as_temp_file`` / ``delete``) over HTTPS, raw ``requests`` for
what pysnc never sends (multipart uploads, missing parameters, paging headers, refusals), and
each fault path.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
from collections import Counter
from collections.abc import Iterator

import pytest
import requests
from pysnc import ServiceNowClient
from pysnc.exceptions import RoleException

from usm_bridge_servicenow.simulator import ServiceNowSimulator, SimFault
from usm_bridge_servicenow.simulator.__main__ import build

PERSON, PERSON_PASSWORD = "beth.anglin", "beth-secret-1"


@pytest.fixture
def sim(tls_context: ssl.SSLContext) -> Iterator[ServiceNowSimulator]:
    """An instance over HTTPS (pysnc refuses plain http), which ``requests`` trusts too."""
    with ServiceNowSimulator(ssl_context=tls_context) as simulator:
        yield simulator


def _session(sim: ServiceNowSimulator, user: str = "", password: str = "") -> requests.Session:
    session = requests.Session()
    session.auth = (user or sim.username, password or sim.password)
    return session


def _api(sim: ServiceNowSimulator, path: str = "") -> str:
    return f"{sim.base_url}/api/now/attachment{path}"


def _stored(sim: ServiceNowSimulator) -> list[str]:
    """The files in the attachment store: one per attachment, nothing left of refused bodies."""
    return sorted(p.name for p in sim.attachments.directory.iterdir())


def _incident(sim: ServiceNowSimulator) -> str:
    return sim.insert("incident", {"short_description": "Badge reader broken"})


def _upload(
    sim: ServiceNowSimulator, fields: list[tuple[str, tuple[str | None, object]]]
) -> requests.Response:
    with _session(sim) as session:
        return session.post(_api(sim, "/upload"), files=fields, timeout=10)


# -- 1. pysnc ------------------------------------------------------------------------------


def test_pysnc_attaches_lists_reads_and_deletes(sim: ServiceNowSimulator) -> None:
    incident = _incident(sim)
    record_before = sim.get("incident", incident)
    client = ServiceNowClient(sim.base_url, (sim.username, sim.password))
    form = b"%PDF-1.4 signed form\n" * 200_000  # 4 MB: several blocks each way
    record = client.GlideRecord("incident")
    assert record.get(incident)
    location = record.add_attachment("form.pdf", form, "application/pdf")
    record.add_attachment("notes.txt", b"first line\nsecond line", "text/plain")
    sys_id = location.rsplit("/", 1)[1]
    assert location == f"{sim.base_url}/api/now/attachment/{sys_id}"

    listed = record.get_attachments()
    seen = [(a.file_name, a.content_type, a.size_bytes, a.hash) for a in listed]
    assert seen == [
        ("form.pdf", "application/pdf", str(len(form)), hashlib.sha256(form).hexdigest()),
        ("notes.txt", "text/plain", "22", hashlib.sha256(b"first line\nsecond line").hexdigest()),
    ]
    for attachment in listed:
        if attachment.file_name == "notes.txt":
            assert attachment.readlines() == ["first line", "second line"]
        else:
            with attachment.as_temp_file(chunk_size=1 << 16) as spooled:
                assert hashlib.sha256(spooled.read()).digest() == hashlib.sha256(form).digest()

    one = client.Attachment("incident")
    assert one.get(sys_id)
    assert (one.table_name, one.table_sys_id, one.file_name) == ("incident", incident, "form.pdf")
    assert int(one.size_compressed) < len(form) and one.compressed == "true"
    assert one.download_link == f"{sim.base_url}/api/now/attachment/{sys_id}/file"
    one.delete()
    assert not client.Attachment("incident").get(sys_id)
    assert [a.file_name for a in record.get_attachments()] == ["notes.txt"]
    # The record itself was not written: attaching is no update of the incident.
    record_after = sim.get("incident", incident)
    assert record_before is not None and record_after is not None
    assert record_after["sys_updated_on"] == record_before["sys_updated_on"]
    assert record_after["sys_mod_count"] == record_before["sys_mod_count"] == "0"


def test_pysnc_is_refused_by_an_acl(sim: ServiceNowSimulator) -> None:
    incident = _incident(sim)
    sim.attachments.settings.denied.add(sim.username)
    record = ServiceNowClient(sim.base_url, (sim.username, sim.password)).GlideRecord("incident")
    assert record.get(incident)
    with pytest.raises(RoleException):
        record.add_attachment("x.txt", b"x", "text/plain")
    assert sim.ids("sys_attachment") == [] and _stored(sim) == []


# -- 2. what pysnc never sends ---------------------------------------------------------------


def test_a_multipart_upload_takes_the_file_from_its_final_part(sim: ServiceNowSimulator) -> None:
    incident = _incident(sim)
    answer = _upload(
        sim,
        [
            ("table_name", (None, "incident")),
            ("table_sys_id", (None, incident)),
            ("uploadFile", ("shot.png", b"\x89PNG\r\n\x1a\n....", "image/png")),
        ],
    )
    assert answer.status_code == 201
    result = answer.json()["result"]
    assert answer.headers["Location"] == _api(sim, f"/{result['sys_id']}")
    assert (result["file_name"], result["content_type"], result["size_bytes"]) == (
        "shot.png",
        "image/png",
        "12",
    )
    assert (result["table_name"], result["table_sys_id"]) == ("incident", incident)
    assert all(isinstance(value, str) for value in result.values())
    with _session(sim) as session:
        content = session.get(result["download_link"], timeout=10)
    assert content.content == b"\x89PNG\r\n\x1a\n...."
    assert content.headers["Content-Type"] == "image/png"
    assert json.loads(content.headers["X-Attachment-Metadata"])["sys_id"] == result["sys_id"]


_FILE = ("uploadFile", ("a.txt", b"a", "text/plain"))
#: Multipart bodies that cannot be attached, given the incident's sys_id, and the refusal.
_UNATTACHABLE = {
    "no record id": (lambda i: [("table_name", (None, "incident")), _FILE], 400,
                     "Missing mandatory parameters"),
    "file not last": (lambda i: [_FILE, ("table_name", (None, "incident")),
                                 ("table_sys_id", (None, i))], 400, "final part"),
    "no such record": (lambda i: [("table_name", (None, "incident")),
                                  ("table_sys_id", (None, "0" * 32)), _FILE], 404,
                       "Record doesn't exist"),
    "no such table": (lambda i: [("table_name", (None, "no_such_table")),
                                 ("table_sys_id", (None, i)), _FILE], 400, "Invalid table"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(_UNATTACHABLE))
def test_a_multipart_upload_that_cannot_be_attached(sim: ServiceNowSimulator, case: str) -> None:
    build, status, message = _UNATTACHABLE[case]
    answer = _upload(sim, build(_incident(sim)))
    assert answer.status_code == status
    assert message in answer.json()["error"]["message"]
    assert answer.json()["status"] == "failure"
    assert sim.ids("sys_attachment") == [] and _stored(sim) == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"table_name": "incident"}'),
        ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nno end of the headers"),
        ("multipart/form-data", b"--XyZ--\r\n"),
    ],
)
def test_an_upload_body_that_is_no_form_is_refused(
    sim: ServiceNowSimulator, content_type: str, body: bytes
) -> None:
    with _session(sim) as session:
        answer = session.post(
            _api(sim, "/upload"), data=body, headers={"Content-Type": content_type}, timeout=10
        )
    assert answer.status_code == 400 and answer.json()["status"] == "failure"
    assert sim.ids("sys_attachment") == [] and _stored(sim) == []


def test_a_raw_upload_needs_every_parameter_and_a_content_type(sim: ServiceNowSimulator) -> None:
    incident = _incident(sim)
    full = {"table_name": "incident", "table_sys_id": incident, "file_name": "log.txt"}
    with _session(sim) as session:
        answers = {
            missing: session.post(
                _api(sim, "/file"),
                params={k: v for k, v in full.items() if k != missing},
                data=b"log",
                headers={"Content-Type": "text/plain"},
                timeout=10,
            )
            for missing in full
        }
        untyped = session.post(_api(sim, "/file"), params=full, data=b"log", timeout=10)
        typed = session.post(
            _api(sim, "/file"),
            params=full,
            data=b"log",
            headers={"Content-Type": "text/x-log; charset=utf-8"},
            timeout=10,
        )
    assert {k: (a.status_code, a.json()["error"]["detail"]) for k, a in answers.items()} == {
        name: (400, name) for name in full
    }
    assert untyped.status_code == 400
    assert typed.status_code == 201
    assert typed.json()["result"]["content_type"] == "text/x-log"
    assert len(sim.ids("sys_attachment")) == 1 and len(_stored(sim)) == 1


def test_the_size_limit_and_the_allowed_extensions_are_respected(sim: ServiceNowSimulator) -> None:
    incident = _incident(sim)
    settings = sim.attachments.settings
    settings.max_size_mb = 1 / 1024  # 1 KiB
    settings.extensions = {"pdf", "png"}

    def post(name: str, size: int) -> requests.Response:
        with _session(sim) as session:
            return session.post(
                _api(sim, "/file"),
                params={"table_name": "incident", "table_sys_id": incident, "file_name": name},
                data=b"x" * size,
                headers={"Content-Type": "application/octet-stream"},
                timeout=10,
            )

    too_big = post("big.pdf", 1025)
    refused_type = post("tool.exe", 10)
    no_extension = post("README", 10)
    accepted = [post("Scan.PDF", 1024), post("shot.png", 1)]
    assert too_big.status_code == 400
    assert "com.glide.attachment.max_size" in too_big.json()["error"]["detail"]
    assert refused_type.status_code == no_extension.status_code == 400
    assert "glide.attachment.extensions" in refused_type.json()["error"]["detail"]
    assert [a.status_code for a in accepted] == [201, 201]
    assert sorted(r["file_name"] for r in sim.tables["sys_attachment"].records.values()) == [
        "Scan.PDF",
        "shot.png",
    ]
    assert len(_stored(sim)) == 2


def test_the_list_pages_with_the_table_apis_headers(sim: ServiceNowSimulator) -> None:
    incident, other = _incident(sim), _incident(sim)
    made = sim.attachments.seed("incident", incident, 5, size=64)
    sim.attachments.seed("incident", other, 2)
    seen: list[str] = []
    url: str | None = _api(sim)
    params: dict[str, str] | None = {
        "sysparm_query": f"table_sys_id={incident}^ORDERBYfile_name^no_such_field=1",
        "sysparm_limit": "2",
    }
    with _session(sim) as session:
        while url:
            page = session.get(url, params=params, timeout=10)
            assert page.status_code == 200 and page.headers["X-Total-Count"] == "5"
            seen += [r["sys_id"] for r in page.json()["result"]]
            links = requests.utils.parse_header_links(page.headers["Link"])
            assert all(link["url"].startswith(_api(sim) + "?") for link in links)
            url = next((link["url"] for link in links if link["rel"] == "next"), None)
            params = None
        v1 = session.get(f"{sim.base_url}/api/now/v1/attachment/{made[0]}", timeout=10)
        quiet = session.get(
            _api(sim),
            params={"sysparm_query": f"table_sys_id={incident}",
                    "sysparm_suppress_pagination_header": "true"},
            timeout=10,
        )  # fmt: skip
    assert seen == made  # each exactly once, in file name order
    assert v1.json()["result"]["file_name"] == "note-0.txt"
    assert "Link" not in quiet.headers and len(quiet.json()["result"]) == 5


def test_delete_and_what_is_gone(sim: ServiceNowSimulator) -> None:
    incident = _incident(sim)
    [sys_id] = sim.attachments.seed("incident", incident, 1)
    with _session(sim) as session:
        deleted = session.delete(_api(sim, f"/{sys_id}"), timeout=10)
        again = session.delete(_api(sim, f"/{sys_id}"), timeout=10)
        metadata = session.get(_api(sim, f"/{sys_id}"), timeout=10)
        content = session.get(_api(sim, f"/{sys_id}/file"), timeout=10)
        via_table = session.post(
            f"{sim.base_url}/api/now/table/sys_attachment", json={"file_name": "x"}, timeout=10
        )
    assert deleted.status_code == 204
    assert [again.status_code, metadata.status_code, content.status_code] == [404, 404, 404]
    assert content.json()["error"]["message"] == "Record doesn't exist"
    assert via_table.status_code == 403  # attachments are made through the Attachment API
    assert _stored(sim) == []


def test_a_person_unsigned_or_wrongly_signed_is_told_so(sim: ServiceNowSimulator) -> None:
    sim.add_user(PERSON, "Beth Anglin", PERSON_PASSWORD)
    incident = _incident(sim)
    [sys_id] = sim.attachments.seed("incident", incident, 1)
    assert requests.get(_api(sim, f"/{sys_id}/file"), timeout=10).status_code == 401
    with _session(sim, PERSON, PERSON_PASSWORD) as session:
        made = session.post(
            _api(sim, "/file"),
            params={"table_name": "incident", "table_sys_id": incident, "file_name": "b.txt"},
            data=b"b",
            headers={"Content-Type": "text/plain"},
            timeout=10,
        )
        not_json = session.get(_api(sim, f"/{sys_id}"), headers={"Accept": "text/html"}, timeout=10)
    assert made.status_code == 201 and made.json()["result"]["sys_created_by"] == PERSON
    assert not_json.status_code == 406


# -- 3. faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "status"), [("429", 429), ("500", 500), ("503", 503)])
def test_a_fault_on_an_upload_attaches_nothing(
    sim: ServiceNowSimulator, kind: str, status: int
) -> None:
    incident = _incident(sim)
    sim.inject(SimFault(kind, retry_after=3))
    fields: list[tuple[str, tuple[str | None, object]]] = [
        ("table_name", (None, "incident")),
        ("table_sys_id", (None, incident)),
        ("uploadFile", ("a.txt", b"a", "text/plain")),
    ]
    failed = _upload(sim, fields)
    assert failed.status_code == status
    if kind == "429":
        assert failed.headers["Retry-After"] == "3"
    assert sim.ids("sys_attachment") == [] and _stored(sim) == []
    assert _upload(sim, fields).status_code == 201


@pytest.mark.parametrize("kind", ["429", "500"])
def test_a_fault_on_a_download(sim: ServiceNowSimulator, kind: str) -> None:
    incident = _incident(sim)
    [sys_id] = sim.attachments.seed("incident", incident, 1, size=10)
    sim.inject(SimFault(kind))
    with _session(sim) as session:
        failed = session.get(_api(sim, f"/{sys_id}/file"), timeout=10)
        served = session.get(_api(sim, f"/{sys_id}/file"), timeout=10)
    assert failed.status_code == int(kind) and failed.json()["status"] == "failure"
    assert served.status_code == 200 and len(served.content) == 10


def test_a_lost_upload_response_leaves_the_file_attached(sim: ServiceNowSimulator) -> None:
    # A crash between upload and commit, seen from the client: the upload was carried out.
    incident = _incident(sim)
    sim.inject(SimFault("lose-create"))
    with _session(sim) as session, pytest.raises(requests.ConnectionError):
        session.post(
            _api(sim, "/file"),
            params={"table_name": "incident", "table_sys_id": incident, "file_name": "f.pdf"},
            data=b"signed",
            headers={"Content-Type": "application/pdf"},
            timeout=10,
        )
    [record] = sim.tables["sys_attachment"].records.values()
    assert (record["file_name"], record["size_bytes"]) == ("f.pdf", "6")
    assert _stored(sim) == [record["sys_id"]]


def test_a_client_gone_mid_upload_attaches_nothing() -> None:
    sim = ServiceNowSimulator().start()  # plain HTTP: a half-closed socket says "gone" at once
    incident = _incident(sim)
    head = (
        f"POST /api/now/attachment/file?table_name=incident&table_sys_id={incident}"
        "&file_name=half.bin HTTP/1.1\r\nHost: sim\r\nContent-Type: application/octet-stream\r\n"
        f"Authorization: {requests.auth._basic_auth_str(sim.username, sim.password)}\r\n"
        "Content-Length: 100000\r\n\r\n"
    )
    try:
        with socket.create_connection((sim.host, sim.port), timeout=10) as sock:
            sock.sendall(head.encode() + b"x" * 1000)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(1024) == b""  # closed unanswered, once the server was done
        assert _stored(sim) == []  # the spooled half body is gone
        with _session(sim) as session:  # the instance serves on
            assert session.get(_api(sim), timeout=10).status_code == 200
        assert sim.ids("sys_attachment") == []
    finally:
        sim.stop()


def test_the_command_line_seeds_attachments() -> None:
    sim, _ = build(["--seed-records", "3", "--seed-attachments", "2"])
    try:
        records = sim.tables["sys_attachment"].records.values()
        per_incident = Counter(r["table_sys_id"] for r in records)
        assert sorted(per_incident) == sorted(sim.ids("incident"))
        assert set(per_incident.values()) == {2}
        assert {r["size_bytes"] for r in records} == {"1024"}
    finally:
        sim.stop()
