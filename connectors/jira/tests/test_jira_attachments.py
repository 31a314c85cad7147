"""Issue attachments on the Jira simulator, as clients that did not come from this project see them.

pycontribs' ``jira`` (``add_attachment``, ``attachment``, ``Attachment.get``,
``attachment_meta``, ``delete_attachment``, ``issue.fields.attachment``) on both flavours, raw
``requests`` for what that client never varies (the XSRF header, several files at once, the
redirect, refusals), and each fault path. The ``cloud`` and ``simulator`` fixtures check every v3
answer against the official OpenAPI description.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest
import requests
from jira import JIRA
from jira.exceptions import JIRAError
from jira_openapi import spec_validator
from usm_bridge_jira.simulator import Issue, JiraSimulator, NotJson, SimFault

CASEY = "5b10ac8d82e05b22cc7d4ef5"
NO_CHECK = {"X-Atlassian-Token": "no-check"}


@contextmanager
def client(simulator: JiraSimulator, account: str | None = None) -> Iterator[JIRA]:
    """pycontribs' client on the flavour's own API version, signed in as ``account``."""
    site = simulator.site
    account = account or site.me
    if simulator.flavour == "cloud":
        auth = {"basic_auth": (site.users[account][1], site.tokens[account])}
        options = {"rest_api_version": "3"}
    else:
        auth = {"token_auth": site.tokens[account]}
        options = {"rest_api_version": "2"}
    jira = JIRA(simulator.base_url, options=options, get_server_info=False, **auth)  # type: ignore[arg-type]
    try:
        yield jira
    finally:
        jira.close()


def _session(simulator: JiraSimulator, account: str | None = None) -> requests.Session:
    session = requests.Session()
    session.headers.update(simulator.site.sign_in(account or simulator.site.me))
    return session


def _api(simulator: JiraSimulator) -> str:
    return f"{simulator.base_url}/rest/api/{'3' if simulator.flavour == 'cloud' else '2'}"


def _post_files(
    simulator: JiraSimulator, issue: Issue, files: list[tuple[str, bytes]], **headers: str
) -> requests.Response:
    with _session(simulator) as session:
        return session.post(
            f"{_api(simulator)}/issue/{issue.key}/attachments",
            files=[("file", (name, content)) for name, content in files],
            headers=headers,
            timeout=10,
        )


def _stored(simulator: JiraSimulator) -> list[str]:
    """The files in the simulator's attachment store (parts in flight included)."""
    return sorted(p.name for p in simulator.site.attachments.files.directory.iterdir())


# -- 1. pycontribs, both flavours -----------------------------------------------------------


def test_pycontribs_attaches_reads_downloads_and_deletes(simulator: JiraSimulator) -> None:
    site = simulator.site
    [issue] = site.seed(1)
    site.clock.advance(timedelta(minutes=5))
    before = issue.updated
    form = b"%PDF-1.4 signed onboarding form\n" * 1000
    with client(simulator) as jira:
        added = jira.add_attachment(issue.key, io.BytesIO(form), filename="form.pdf")
        log = jira.add_attachment(issue.key, io.BytesIO(b"line 1\nline 2\n"), filename="log.txt")
        assert issue.updated > before
        assert (added.filename, added.size, added.mimeType) == (
            "form.pdf",
            len(form),
            "application/pdf",
        )
        assert added.author.displayName == "Sim Admin"

        listed = jira.issue(issue.key).fields.attachment
        assert [(a.id, a.filename, a.size) for a in listed] == [
            (added.id, "form.pdf", len(form)),
            (log.id, "log.txt", 14),
        ]
        meta = jira.attachment(added.id)
        assert (meta.filename, meta.size, meta.mimeType) == (
            "form.pdf",
            len(form),
            "application/pdf",
        )
        assert meta.content == listed[0].content
        # The bytes, through the content URL each flavour gives (Cloud: a 303 to the media
        # service, followed by the client; Data Center: /secure/attachment/{id}/{name}).
        assert meta.get() == form
        assert b"".join(log.iter_content(4)) == b"line 1\nline 2\n"
        assert jira.attachment_meta() == {"enabled": True, "uploadLimit": 10 * 1024 * 1024}

        deleted_at = site.clock.now()
        assert jira.delete_attachment(added.id).status_code == 204
        assert [a.filename for a in jira.issue(issue.key).fields.attachment] == ["log.txt"]
        with pytest.raises(JIRAError) as gone:
            jira.attachment(added.id)
        assert gone.value.status_code == 404
        assert issue.updated >= deleted_at
        history = jira.issue(issue.key, expand="changelog").raw["changelog"]["histories"]
    items = [item for h in reversed(history) for item in h["items"]]
    assert items == [
        {"field": "Attachment", "fieldtype": "jira", "fieldId": "attachment",
         "to": added.id, "toString": "form.pdf"},
        {"field": "Attachment", "fieldtype": "jira", "fieldId": "attachment",
         "to": log.id, "toString": "log.txt"},
        {"field": "Attachment", "fieldtype": "jira", "fieldId": "attachment",
         "from": added.id, "fromString": "form.pdf"},
    ]  # fmt: skip


def test_content_urls_are_the_flavours_own(simulator: JiraSimulator) -> None:
    [issue] = simulator.site.seed(1)
    attachment = simulator.site.attachments.add(issue, "Grundriss 2.OG.txt", b"plan")
    url = simulator.site.attachments.as_json(attachment, "2")["content"]
    if simulator.flavour == "cloud":
        assert url.endswith(f"/rest/api/2/attachment/content/{attachment.id}")
    else:
        assert url.endswith(f"/secure/attachment/{attachment.id}/Grundriss%202.OG.txt")
    with _session(simulator) as session:
        assert session.get(url, timeout=10).content == b"plan"
    anonymous = requests.get(url, timeout=10, allow_redirects=False)
    assert anonymous.status_code == 401


def test_search_shows_attachments_only_when_asked(cloud: JiraSimulator) -> None:
    site = cloud.site
    issues = site.seed(3)
    for n, issue in enumerate(issues):
        site.attachments.seed(issue, n, size=100)
    with _session(cloud) as session:
        asked = session.get(
            f"{cloud.base_url}/rest/api/3/search/jql",
            params={"jql": "project = IT ORDER BY key", "fields": "summary,attachment"},
            timeout=10,
        ).json()["issues"]
        not_asked = session.get(
            f"{cloud.base_url}/rest/api/3/search/jql",
            params={"jql": "project = IT", "fields": "summary"},
            timeout=10,
        ).json()["issues"]
    assert [len(i["fields"]["attachment"]) for i in asked] == [0, 1, 2]
    assert [a["size"] for i in asked for a in i["fields"]["attachment"]] == [100, 100, 100]
    assert all("attachment" not in i["fields"] for i in not_asked)


# -- 2. what pycontribs never varies ------------------------------------------------------------


def test_several_files_in_one_request_each_become_an_attachment(cloud: JiraSimulator) -> None:
    [issue] = cloud.site.seed(1)
    files = [("a.png", b"\x89PNG\r\n\x1a\n...."), ("b.txt", b"bb"), ("c.bin", bytes(range(256)))]
    answer = _post_files(cloud, issue, files, **NO_CHECK)
    assert answer.status_code == 200
    body = answer.json()
    assert [(a["filename"], a["size"], a["mimeType"]) for a in body] == [
        ("a.png", 12, "image/png"),
        ("b.txt", 2, "text/plain"),
        ("c.bin", 256, "application/octet-stream"),
    ]
    assert all(isinstance(a["id"], str) for a in body)
    assert ["thumbnail" in a for a in body] == [True, False, False]
    stored = {a.filename: a.sha256 for a in issue.attachments}
    assert stored == {name: hashlib.sha256(content).hexdigest() for name, content in files}


def test_an_upload_without_the_xsrf_header_is_blocked(cloud: JiraSimulator) -> None:
    [issue] = cloud.site.seed(1)
    before = issue.updated
    refused = _post_files(cloud, issue, [("x.txt", b"x")])
    assert refused.status_code == 403
    assert refused.headers["Content-Type"].startswith("text/plain")
    assert refused.text == "XSRF check failed"
    assert issue.attachments == [] and issue.updated == before
    assert _stored(cloud) == []  # the received part is not kept
    wrong = _post_files(cloud, issue, [("x.txt", b"x")], **{"x-atlassian-token": "check"})
    assert wrong.status_code == 403
    # Blocked before the issue is looked for; with the header, a missing issue is a 404.
    missing = replace(issue, number=999)
    assert _post_files(cloud, missing, [("x.txt", b"x")]).text == "XSRF check failed"
    assert _post_files(cloud, missing, [("x.txt", b"x")], **NO_CHECK).status_code == 404


def test_a_file_over_the_size_limit_is_refused_with_413_and_nothing_attached(
    cloud: JiraSimulator,
) -> None:
    [issue] = cloud.site.seed(1)
    cloud.site.attachments.upload_limit = 1000
    answer = _post_files(
        cloud, issue, [("ok.txt", b"o" * 1000), ("big.txt", b"b" * 1001)], **NO_CHECK
    )
    assert answer.status_code == 413
    assert "big.txt" in answer.json()["errorMessages"][0]
    assert issue.attachments == [] and _stored(cloud) == []
    with _session(cloud) as session:
        meta = session.get(f"{cloud.base_url}/rest/api/3/attachment/meta", timeout=10).json()
    assert meta == {"enabled": True, "uploadLimit": 1000}


def test_more_than_sixty_files_at_once_are_refused(cloud: JiraSimulator) -> None:
    [issue] = cloud.site.seed(1)
    answer = _post_files(cloud, issue, [(f"{n}.txt", b"x") for n in range(61)], **NO_CHECK)
    assert answer.status_code == 413
    assert issue.attachments == [] and _stored(cloud) == []


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b'{"file": "x"}', 415),
        ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nno headers end", 400),
        ("multipart/form-data", b"--XyZ--\r\n", 400),
        ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nContent-Disposition: form-data; "
         b'name="other"\r\n\r\nvalue\r\n--XyZ--\r\n', 400),
    ],
)  # fmt: skip
def test_a_body_that_is_no_upload_is_refused(
    cloud: JiraSimulator, content_type: str, body: bytes, status: int
) -> None:
    [issue] = cloud.site.seed(1)
    with _session(cloud) as session:
        answer = session.post(
            f"{cloud.base_url}/rest/api/3/issue/{issue.key}/attachments",
            data=body,
            headers={"Content-Type": content_type, **NO_CHECK},
            timeout=10,
        )
        # The connection is still usable: the refused body was read to its end.
        after = session.get(f"{cloud.base_url}/rest/api/3/attachment/meta", timeout=10)
    assert answer.status_code == status
    assert answer.json()["errorMessages"]
    assert after.status_code == 200
    assert issue.attachments == [] and _stored(cloud) == []


def test_attachments_disabled_refuse_uploads(cloud: JiraSimulator) -> None:
    [issue] = cloud.site.seed(1)
    cloud.site.attachments.enabled = False
    assert _post_files(cloud, issue, [("x.txt", b"x")], **NO_CHECK).status_code == 403
    assert issue.attachments == []


def test_the_content_redirect_and_its_media_url(cloud: JiraSimulator) -> None:
    [issue] = cloud.site.seed(1)
    attachment = cloud.site.attachments.add(issue, "shot.png", b"\x89PNG-bytes")
    url = f"{cloud.base_url}/rest/api/3/attachment/content/{attachment.id}"
    with _session(cloud) as session:
        redirect = session.get(url, allow_redirects=False, timeout=10)
        direct = session.get(url, params={"redirect": "false"}, timeout=10)
        missing = session.get(f"{cloud.base_url}/rest/api/3/attachment/content/999", timeout=10)
    assert redirect.status_code == 303 and redirect.content == b""
    media = redirect.headers["Location"]
    assert media.startswith(f"{cloud.base_url}/media/file/{attachment.media_id}/binary?token=")
    # The media URL is signed by its token alone: no Jira credentials go with it.
    fetched = requests.get(media, timeout=10)
    assert fetched.status_code == 200 and fetched.content == b"\x89PNG-bytes"
    assert fetched.headers["Content-Type"] == "image/png"
    forged = requests.get(media.replace("token=", "token=x"), timeout=10)
    assert forged.status_code == 401
    # A token opens its own file only.
    other = cloud.site.attachments.add(issue, "other.png", b"\x89PNG-other")
    borrowed = requests.get(media.replace(attachment.media_id, other.media_id), timeout=10)
    assert borrowed.status_code == 401
    assert direct.status_code == 200 and direct.content == b"\x89PNG-bytes"
    assert missing.status_code == 404


def test_only_an_admin_deletes_someone_elses_attachment(cloud: JiraSimulator) -> None:
    [issue] = cloud.site.seed(1)
    theirs = cloud.site.attachments.add(issue, "admin.txt", b"a")
    with client(cloud, CASEY) as jira:
        mine = jira.add_attachment(issue.key, io.BytesIO(b"c"), filename="casey.txt")
        with pytest.raises(JIRAError) as refused:
            jira.delete_attachment(theirs.id)
        assert refused.value.status_code == 403
        assert jira.delete_attachment(mine.id).status_code == 204
        with pytest.raises(JIRAError) as missing:
            jira.delete_attachment("424242")
        assert missing.value.status_code == 404
    assert [a.filename for a in issue.attachments] == ["admin.txt"]


def test_an_upload_is_kept_on_disk_not_in_memory(cloud: JiraSimulator) -> None:
    [issue] = cloud.site.seed(1)
    content = bytes(range(256)) * 8192  # 2 MiB: more than one chunk of the parser's reads
    answer = _post_files(cloud, issue, [("dump.bin", content)], **NO_CHECK)
    assert answer.status_code == 200
    [attachment] = issue.attachments
    assert attachment.path.parent == cloud.site.attachments.files.directory
    assert attachment.path.read_bytes() == content
    assert attachment.sha256 == hashlib.sha256(content).hexdigest()
    assert _stored(cloud) == [attachment.path.name]  # no leftover part file
    cloud.site.delete_issue(issue.id)
    assert _stored(cloud) == []


def test_seeding_puts_n_attachments_on_an_issue(datacenter: JiraSimulator) -> None:
    [issue] = datacenter.site.seed(1)
    made = datacenter.site.attachments.seed(issue, 5, size=300)
    with client(datacenter) as jira:
        listed = jira.issue(issue.key).fields.attachment
        assert [a.filename for a in listed] == [f"note-{n}.txt" for n in range(5)]
        assert {a.size for a in listed} == {300}
        assert listed[3].get() == made[3].path.read_bytes()


# -- 3. faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status"),
    [(SimFault.RATE_LIMITED, 429), (SimFault.UNAVAILABLE, 503), (SimFault.SERVER_ERROR, 500)],
)
def test_a_fault_on_an_upload_attaches_nothing(
    cloud: JiraSimulator, fault: SimFault, status: int
) -> None:
    [issue] = cloud.site.seed(1)
    cloud.fail_next(fault)
    answer = _post_files(cloud, issue, [("x.txt", b"x")], **NO_CHECK)
    assert answer.status_code == status
    assert issue.attachments == [] and _stored(cloud) == []
    again = _post_files(cloud, issue, [("x.txt", b"x")], **NO_CHECK)
    assert again.status_code == 200 and len(issue.attachments) == 1


@pytest.mark.parametrize("fault", [SimFault.RATE_LIMITED, SimFault.SERVER_ERROR])
def test_a_fault_on_a_download_or_metadata_read(cloud: JiraSimulator, fault: SimFault) -> None:
    [issue] = cloud.site.seed(1)
    attachment = cloud.site.attachments.add(issue, "x.txt", b"x")
    base = f"{cloud.base_url}/rest/api/3/attachment"
    with _session(cloud) as session:
        for path in (f"content/{attachment.id}?redirect=false", str(attachment.id)):
            cloud.fail_next(fault, retry_after="2")
            failed = session.get(f"{base}/{path}", timeout=10)
            assert failed.status_code in (429, 500)
            if fault is SimFault.RATE_LIMITED:
                assert failed.headers["Retry-After"] == "2"
            assert session.get(f"{base}/{path}", timeout=10).status_code == 200


def test_a_lost_upload_response_leaves_the_files_attached(cloud: JiraSimulator) -> None:
    # A crash between upload and commit, seen from the client: the request was carried out.
    [issue] = cloud.site.seed(1)
    cloud.fail_next(SimFault.LOSE_ATTACHMENT_RESPONSE)
    with client(cloud) as jira:
        jira._session.max_retries = 0  # type: ignore[attr-defined]
        with pytest.raises(requests.ConnectionError):
            jira.add_attachment(issue.key, io.BytesIO(b"signed"), filename="form.pdf")
    assert [(a.filename, a.size) for a in issue.attachments] == [("form.pdf", 6)]


def test_a_client_gone_mid_upload_attaches_nothing(cloud: JiraSimulator) -> None:
    import socket

    [issue] = cloud.site.seed(1)
    host, port = cloud.base_url.removeprefix("http://").split(":")
    head = (
        f"POST /rest/api/3/issue/{issue.key}/attachments HTTP/1.1\r\nHost: sim\r\n"
        f"Authorization: {cloud.site.sign_in(cloud.site.me)['Authorization']}\r\n"
        "X-Atlassian-Token: no-check\r\n"
        "Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 100000\r\n\r\n"
        '--B\r\nContent-Disposition: form-data; name="file"; filename="whole.txt"\r\n\r\n'
        "all of it\r\n"
        '--B\r\nContent-Disposition: form-data; name="file"; filename="half.txt"\r\n\r\n'
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + b"x" * 1000)
        sock.shutdown(socket.SHUT_WR)  # the client is gone: no more of the body comes
        assert sock.recv(1024) == b""  # the server closed without answering, once done
    assert _stored(cloud) == []  # the whole part went with the half one
    assert _post_files(cloud, issue, [("whole.txt", b"w")], **NO_CHECK).status_code == 200
    assert [a.filename for a in issue.attachments] == ["whole.txt"]
    assert [a.size for a in issue.attachments] == [1]  # the later upload's, not the half one's
    assert len(_stored(cloud)) == 1


# -- 4. the spec ----------------------------------------------------------------------------


def test_content_that_is_not_json_is_checked_against_the_spec() -> None:
    validator = spec_validator()
    text = NotJson("text/plain")
    validator.check("POST", "/rest/api/3/issue/IT-1/attachments", 403, text)
    validator.check("GET", "/rest/api/3/attachment/content/10001", 200, NotJson("image/png"))
    with pytest.raises(AssertionError, match="does not document"):
        validator.check("GET", "/rest/api/3/attachment/10001", 200, text)  # JSON documented
    with pytest.raises(AssertionError, match="does not document"):
        validator.check("GET", "/rest/api/3/attachment/content/10001", 418, text)


def test_metadata_ids_are_integers_and_upload_ids_strings(cloud: JiraSimulator) -> None:
    [issue] = cloud.site.seed(1)
    attachment = cloud.site.attachments.add(issue, "x.txt", b"x")
    validator = spec_validator()
    wrong: dict[str, Any] = cloud.site.attachments.as_json(attachment, "3", metadata=False)
    with pytest.raises(AssertionError, match="is not of type 'integer'"):
        validator.check("GET", f"/rest/api/3/attachment/{attachment.id}", 200, wrong)
    with pytest.raises(AssertionError, match="is not of type 'string'"):
        validator.check(
            "POST",
            f"/rest/api/3/issue/{issue.key}/attachments",
            200,
            [cloud.site.attachments.as_json(attachment, "3", metadata=True)],
        )


@pytest.mark.parametrize(
    ("wanted", "status", "content", "content_range"),
    [
        ("bytes=0-3", 206, b"0123", "bytes 0-3/10"),
        ("bytes=7-", 206, b"789", "bytes 7-9/10"),
        ("bytes=-2", 206, b"89", "bytes 8-9/10"),
        ("bytes=5-500", 206, b"56789", "bytes 5-9/10"),
        ("bytes=10-", 416, None, "bytes */10"),
        ("bytes=0-1,4-5", 200, b"0123456789", None),
        ("bytes=5-2", 400, None, None),
        ("pages=1-2", 400, None, None),
        ("bytes=x-", 400, None, None),
    ],
)
def test_a_range_of_the_content(
    cloud: JiraSimulator, wanted: str, status: int, content: bytes | None, content_range: str | None
) -> None:
    # Documented for redirect=false (getAttachmentContent: 206, 400 malformed, 416).
    [issue] = cloud.site.seed(1)
    attachment = cloud.site.attachments.add(issue, "digits.txt", b"0123456789")
    with _session(cloud) as session:
        answer = session.get(
            f"{cloud.base_url}/rest/api/3/attachment/content/{attachment.id}",
            params={"redirect": "false"},
            headers={"Range": wanted},
            timeout=10,
        )
        after = session.get(f"{cloud.base_url}/rest/api/3/attachment/meta", timeout=10)
    assert answer.status_code == status
    assert answer.headers.get("Content-Range") == content_range
    if content is not None:
        assert answer.content == content
        assert answer.headers["Content-Length"] == str(len(content))
    else:
        assert answer.json()["errorMessages"]
    assert after.status_code == 200  # the connection carried on: the lengths were right


def test_the_command_line_seeds_attachments_without_moving_the_history() -> None:
    from usm_bridge_jira.simulator.__main__ import build

    simulator = build(["--port", "0", "--seed-issues", "3", "--seed-attachments", "2",
                       "--upload-limit", "5000"])  # fmt: skip
    try:
        site = simulator.site
        issues = list(site.issues.values())
        assert [len(i.attachments) for i in issues] == [2, 2, 2]
        assert site.attachments.upload_limit == 5000
        # Still spread 3 s apart, as the seed made them: attaching did not move them to now.
        steps = {(b.updated - a.updated).total_seconds() for a, b in pairwise(issues)}
        assert steps == {3.0}
        assert all(a.created == i.updated for i in issues for a in i.attachments)
    finally:
        simulator.stop()
