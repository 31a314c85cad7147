"""The Jira connector's attachment methods against the simulator, both flavours: listing from the
pages already read, streamed download (Cloud's redirect followed without credentials),
streamed upload sent once, and each fault path (429 and 5xx on download and upload, 413, a lost
answer)."""

from __future__ import annotations

import hashlib

import pytest
import requests
from jira_harness import connected
from usm_bridge_jira import JiraConnector
from usm_bridge_jira.attachment_io import named_files, tied_to_comments
from usm_bridge_jira.simulator import JiraSimulator, SimFault
from usm_bridge_jira.transforms import adf_to_text

from usm_bridge.connector import (
    CommentDraft,
    CommentFile,
    OutgoingFile,
    RawRecord,
    RemoteAttachment,
)
from usm_bridge.errors import PermanentRemoteError, RetriableRemoteError

FORM = b"%PDF-1.4\n" + bytes(range(256)) * 300  # spans several chunks


def _put(simulator: JiraSimulator, content: bytes = FORM, name: str = "form.pdf") -> str:
    [issue] = simulator.site.seed(1)
    with connected(simulator) as jira:
        chunks = (content[i : i + 7000] for i in range(0, len(content), 7000))
        return jira.put_attachment(str(issue.id), name, "application/pdf", len(content), chunks)


def test_read_lists_the_files_of_each_issue_without_a_request_per_issue(
    simulator: JiraSimulator,
) -> None:
    issues = simulator.site.seed(2)
    made = simulator.site.attachments.add(issues[0], "shot.png", b"\x89PNG\r\n\x1a\nxx")
    with connected(simulator) as jira:
        records = [r for r in jira.read_changes(None) if isinstance(r, RawRecord)]
        searches = jira.requests_made
    by_id = {r.remote_id: r for r in records}
    [listed] = by_id[str(issues[0].id)].attachments
    assert (listed.remote_id, listed.name, listed.size) == (str(made.id), "shot.png", 10)
    assert by_id[str(issues[1].id)].attachments == []
    # A record without files dumps as before (dead letters keep the same payload).
    assert "attachments" not in by_id[str(issues[1].id)].model_dump()
    assert searches <= 3  # the field map and the search pages; nothing per issue


def test_upload_streams_one_file_and_download_gives_it_back(simulator: JiraSimulator) -> None:
    new_id = _put(simulator)
    stored = simulator.site.attachments.by_id[int(new_id)]
    assert (stored.filename, stored.size, stored.sha256) == (
        "form.pdf",
        len(FORM),
        hashlib.sha256(FORM).hexdigest(),
    )
    with connected(simulator) as jira:
        [listed] = jira.list_attachments(str(stored.issue_id))
        with jira.open_attachment(new_id) as chunks:
            got = b"".join(chunks)
    assert listed.remote_id == new_id and listed.size == len(FORM)
    assert got == FORM


def test_cloud_follows_the_media_redirect_without_jira_credentials(cloud: JiraSimulator) -> None:
    new_id = _put(cloud)
    session = requests.Session()
    sent: list[requests.PreparedRequest] = []
    session.hooks["response"].append(
        lambda response, *args, **kwargs: sent.append(response.request)
    )
    settings = {"base_url": cloud.base_url, "deployment": "cloud", "projects": ["IT"],
                **cloud.credentials()}  # fmt: skip
    jira = JiraConnector("jira-test", JiraConnector.settings_model.model_validate(settings),
                         session=session)  # fmt: skip
    try:
        with jira.open_attachment(new_id) as chunks:
            assert b"".join(chunks) == FORM
    finally:
        jira.close()
        session.close()
    content, media = sent
    assert content.path_url.endswith(f"/attachment/content/{new_id}")
    assert "Authorization" in content.headers
    assert media.path_url.startswith("/media/file/")
    assert "Authorization" not in media.headers  # the signed URL alone, as Atlassian says


def test_a_comment_with_the_file_names_it(simulator: JiraSimulator) -> None:
    [issue] = simulator.site.seed(1)
    with connected(simulator) as jira:
        jira.put_attachment(
            str(issue.id), "form.pdf", "application/pdf", 4, [b"%PDF"],
            comment=CommentDraft(body="Signed form attached", correlation="c1"),
        )  # fmt: skip
    assert [a.filename for a in issue.attachments] == ["form.pdf"]
    assert "form.pdf" in str(issue.comments[-1].body)


@pytest.mark.parametrize("fault", [SimFault.RATE_LIMITED, SimFault.SERVER_ERROR])
def test_download_retries_what_may_pass(simulator: JiraSimulator, fault: SimFault) -> None:
    new_id = _put(simulator)
    simulator.fail_next(fault)
    with connected(simulator) as jira, jira.open_attachment(new_id) as chunks:
        assert b"".join(chunks) == FORM


@pytest.mark.parametrize("fault", [SimFault.RATE_LIMITED, SimFault.SERVER_ERROR])
def test_upload_is_sent_once_and_a_fault_is_retriable(
    simulator: JiraSimulator, fault: SimFault
) -> None:
    [issue] = simulator.site.seed(1)
    with connected(simulator) as jira:
        jira.list_attachments(str(issue.id))  # the deployment probe, before the fault
        simulator.fail_next(fault, times=1)
        with pytest.raises(RetriableRemoteError):
            jira.put_attachment(str(issue.id), "a.txt", "text/plain", 3, [b"abc"])
    assert issue.attachments == []  # not sent twice, not sent with an empty body


def test_a_file_over_the_sites_limit_is_a_clear_permanent_error(simulator: JiraSimulator) -> None:
    simulator.site.attachments.upload_limit = 100
    with pytest.raises(PermanentRemoteError, match=r"form\.pdf.*attachment size limit") as err:
        _put(simulator)
    assert err.value.status == 413


def test_a_lost_answer_is_retriable_and_the_file_is_there_to_be_found(
    simulator: JiraSimulator,
) -> None:
    [issue] = simulator.site.seed(1)
    with connected(simulator) as jira:
        jira.list_attachments(str(issue.id))
        simulator.fail_next(SimFault.LOSE_ATTACHMENT_RESPONSE)
        with pytest.raises(RetriableRemoteError):
            jira.put_attachment(str(issue.id), "a.txt", "text/plain", 3, [b"abc"])
        [found] = jira.list_attachments(str(issue.id))
    assert (found.name, found.size) == ("a.txt", 3)


def _file(name: str, data: bytes) -> OutgoingFile:
    return OutgoingFile(name, "application/pdf", len(data), hashlib.sha256(data).hexdigest(),
                        lambda: iter([data]))  # fmt: skip


def test_a_comment_with_files_names_them_and_reads_back_holding_them(
    simulator: JiraSimulator,
) -> None:
    [issue] = simulator.site.seed(1)
    files = [_file("form.pdf", FORM), _file("notes.txt", b"desk 4.12")]
    draft = CommentDraft(body="Both forms.", correlation="c-files",
                         files=[CommentFile(name=f.name, size=f.size) for f in files])  # fmt: skip
    with connected(simulator) as jira:
        comment_id, writes = jira.add_comment_with_files(str(issue.id), draft, files)
        [record] = [r for r in jira.read_changes(None) if isinstance(r, RawRecord)]
    # The files on the issue (Jira keeps them there), then one comment naming both.
    assert [str(a.id) for a in issue.attachments] == [w.remote_id for w in writes]
    [comment] = issue.comments
    assert str(comment.id) == comment_id
    text = adf_to_text(comment.body)
    assert text.startswith("Both forms.") and "[^form.pdf]\n[^notes.txt]" in text
    # Read back, each file is the comment's (its comment_id), as a person's would be.
    assert {(a.name, a.comment_id) for a in record.attachments} == {
        ("form.pdf", comment_id), ("notes.txt", comment_id),
    }  # fmt: skip


def test_a_file_jira_refuses_leaves_the_comment_going_without_naming_it(
    simulator: JiraSimulator,
) -> None:
    [issue] = simulator.site.seed(1)
    simulator.site.attachments.upload_limit = 100
    files = [_file("form.pdf", FORM), _file("small.txt", b"ok")]
    draft = CommentDraft(body="Two files.", correlation="c-big",
                         files=[CommentFile(name=f.name, size=f.size) for f in files])  # fmt: skip
    with connected(simulator) as jira:
        comment_id, writes = jira.add_comment_with_files(str(issue.id), draft, files)
    [refused, taken] = writes
    assert refused.remote_id is None and "attachment size limit" in str(refused.refused)
    assert taken.remote_id == str(issue.attachments[0].id)
    [comment] = issue.comments
    text = adf_to_text(comment.body)
    assert str(comment.id) == comment_id and "[^small.txt]" in text and "form.pdf" not in text


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("See [^form.pdf] and !shot.png|thumbnail! or !logo.gif!",
         {"form.pdf", "shot.png", "logo.gif"}),
        ("No file here! Really!", set()),
        ({"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "plan: [^plan.pdf]"}]},
            {"type": "mediaSingle", "content": [{"type": "media", "attrs": {
                "type": "file", "id": "abc", "collection": "", "alt": "door.jpg"}}]},
            {"type": "paragraph", "content": [{"type": "mediaInline", "attrs": {
                "id": "def", "collection": "", "alt": "list.xlsx"}}]},
        ]}, {"plan.pdf", "door.jpg", "list.xlsx"}),
    ],
)  # fmt: skip
def test_the_files_a_comment_body_shows_are_found_in_wiki_and_adf(
    body: object, names: set[str]
) -> None:
    assert named_files(body) == names


def test_a_file_named_by_two_comments_goes_to_the_one_by_its_author() -> None:
    files = [RemoteAttachment(remote_id="1", name="form.pdf", author="ann"),
             RemoteAttachment(remote_id="2", name="other.pdf", author="bob")]  # fmt: skip
    block = {"comments": [
        {"id": "10", "author": {"accountId": "bob"}, "body": "Ann's [^form.pdf] is wrong"},
        {"id": "11", "author": {"accountId": "ann"}, "body": "My form: [^form.pdf]"},
    ]}  # fmt: skip
    tied = tied_to_comments(files, block)
    assert [(f.remote_id, f.comment_id) for f in tied] == [("1", "11"), ("2", None)]
