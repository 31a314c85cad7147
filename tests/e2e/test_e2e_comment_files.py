"""Issue 20: files travel WITH their comment along HR (mail) -> Facilities (Jira) -> IT
(ServiceNow), and the bridge's opening mail to a mailbox supplier carries the call's files.

Each test feeds one comment with its file(s) in one tool and follows it into the others: in
Jira the bridge's comment names its files (``[^name]``) and the files are on the issue; in
ServiceNow the comment's own journal entry names them (the entry whose id the bridge records)
and the files are on the record; by mail the comment and its files are one mail. Read back,
every copy is known (no echo comment, no second file), and later cycles write nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from usm_bridge_jira.simulator import SimFault
from usm_bridge_jira.simulator.replies import errors

from e2e.e2e_env import (
    SNOW_TABLE,
    Tools,
    adf,
    assert_quiet,
    b64_part,
    calls_by_unit,
    onboard,
    only,
    open_engine,
    settle,
)
from usm_bridge.model import Call
from usm_bridge.sync.call_files import all_attachments
from usm_bridge.sync.engine import SyncEngine

PLAN = b"%PDF-1.4\n% desk plan, floor 4\n" + bytes(range(256)) * 30
FORM = b"%PDF-1.4\n% laptop handover form\n" + b"7" * 5000
NOTES = b"Badge photo taken, desk 4.12.\r\n"
PERSON, PERSON_PASSWORD = "beth.anglin", "person-secret-1"


@pytest.fixture
def engine(tools: Tools, store_url: str, tmp_path: Path) -> Iterator[SyncEngine]:
    """The engine with both routes relaying comments: what reaches Facilities from one end
    goes on to the other."""
    with open_engine(tools, tmp_path / "usm-bridge.toml", store_url, relay_comments=True) as built:
        yield built


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _comment_with(call: Call, name: str) -> Any:
    """The one comment of ``call`` that holds a file called ``name`` (none elsewhere)."""
    [found] = [c for c in call.comments if any(a.name == name for a in c.attachments)]
    return found


def _file_of(call: Call, name: str) -> Any:
    """The one file of ``call`` called ``name``, on the call or a comment."""
    [found] = [a for a in all_attachments(call) if a.name == name]
    return found


def _comment_saying(call: Call, words: str) -> Any:
    """The one comment of ``call`` whose body holds ``words``."""
    [found] = [c for c in call.comments if words in c.body]
    return found


def _mails_with(tools: Tools, name: str) -> list[Any]:
    """The bridge's mails (kept in Sent) that carry a file called ``name``."""
    return [
        m for m in tools.sent_mails() if any(p.get_filename() == name for p in m.iter_attachments())
    ]


def _snow_entries(tools: Tools, sys_id: str) -> list[dict[str, str]]:
    return [e for e in tools.snow.journal(sys_id) if e["element"] == "comments"]


def _snow_files(tools: Tools, sys_id: str) -> list[dict[str, str]]:
    with tools.snow.lock:
        rows = tools.snow.tables["sys_attachment"].records.values()
        return [dict(r) for r in rows if r["table_sys_id"] == sys_id]


def _no_file_mails(tools: Tools) -> None:
    """No short mail of a file of its own went out: files went with their comment's mail."""
    assert [m["X-USM-Kind"] for m in tools.sent_mails() if m["X-USM-Kind"] == "file"] == []


def _done_and_quiet(tools: Tools, engine: SyncEngine) -> None:
    """Every file went with its mail (none of its own), every write is done (no dead letter),
    and more cycles write and store nothing: no echo comment, no second copy."""
    _no_file_mails(tools)
    with engine.store.begin(readonly=True) as tx:
        assert list(tx.list_dead_letters()) == []
        assert tx.list_outbox(status="pending") == []
    assert_quiet(tools, engine)


@pytest.fixture
def chain(
    tools: Tools, engine: SyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, dict[str, str]]:
    """The new hire's call along the chain (its spool folder under ``tmp_path``): Facilities'
    Jira issue and IT's ServiceNow item."""
    monkeypatch.chdir(tmp_path)
    onboard(tools, engine)
    [issue] = tools.jira_issues()
    [item] = tools.snow_items()
    return issue, item


def test_a_jira_comment_with_a_file_reaches_servicenow_and_hrs_mail_as_one_comment(
    tools: Tools, engine: SyncEngine, chain: tuple[Any, dict[str, str]]
) -> None:
    issue, item = chain
    # As Jira's editor does it: the file on the issue, the comment showing it (an ADF media
    # node whose alt is the file's name).
    tools.jira.site.attachments.add(issue, "desk-plan.pdf", PLAN)
    body = adf("Here is the desk plan for Maria.")
    body["content"].append({"type": "mediaSingle", "content": [{"type": "media", "attrs": {
        "type": "file", "id": "6e7c7f2c-dd7a-499c-bceb-6f32bfbf30b5", "collection": "",
        "alt": "desk-plan.pdf"}}]})  # fmt: skip
    tools.jira_as_person("POST", f"issue/{issue.id}/comment", {"body": body})
    settle(engine)

    by_unit = calls_by_unit(engine.store)
    hr, fac, it = only(by_unit["hr"]), only(by_unit["facilities"]), only(by_unit["it"])
    # Facilities took the file in on the comment that shows it.
    [taken] = _comment_with(fac, "desk-plan.pdf").attachments
    assert (taken.sha256, taken.refused) == (_sha(PLAN), None)
    # ServiceNow: the file once on the record, and the comment's own entry names it; that
    # entry is the one the bridge knows as its copy (one entry, no separate "Attached" one).
    [snow_file] = _snow_files(tools, item["sys_id"])
    assert snow_file["file_name"] == "desk-plan.pdf"
    assert tools.snow.attachments.path_of(snow_file["sys_id"]).read_bytes() == PLAN
    [entry] = [e for e in _snow_entries(tools, item["sys_id"]) if "desk plan" in e["value"]]
    assert "Attached: desk-plan.pdf" in entry["value"]
    assert _comment_saying(it, "desk plan").remote_id == entry["sys_id"]
    assert _file_of(it, "desk-plan.pdf").source.remote_id == snow_file["sys_id"]
    # HR's requester: one mail, the comment with the file in it.
    [mail] = _mails_with(tools, "desk-plan.pdf")
    assert mail["X-USM-Kind"] == "comment"
    assert "Here is the desk plan for Maria." in str(mail.get_body(("plain",)))
    assert tools.mailed_files("desk-plan.pdf") == [PLAN]
    assert str(mail["Message-ID"]) in tools.smtp_message_ids()
    assert _comment_saying(hr, "desk plan").remote_id == str(mail["Message-ID"])
    assert _file_of(hr, "desk-plan.pdf").source.remote_id == f"{mail['Message-ID']}#2"
    _no_file_mails(tools)
    # Jira still holds the one file: nothing came back as a second copy or a new comment.
    assert [a.filename for a in issue.attachments] == ["desk-plan.pdf"]
    assert len(fac.comments) == len(issue.comments)
    _done_and_quiet(tools, engine)


def test_a_servicenow_comment_with_a_file_reaches_jiras_comment_and_hrs_mail(
    tools: Tools, engine: SyncEngine, chain: tuple[Any, dict[str, str]]
) -> None:
    issue, item = chain
    # A person in ServiceNow, through its REST API: the file, then a comment naming it.
    tools.snow.add_user(PERSON, "Beth Anglin", PERSON_PASSWORD)
    person = requests.Session()
    person.auth = (PERSON, PERSON_PASSWORD)
    person.headers["Accept"] = "application/json"
    base = tools.snow.base_url
    person.post(
        f"{base}/api/now/attachment/file",
        params={"table_name": SNOW_TABLE, "table_sys_id": item["sys_id"],
                "file_name": "handover.pdf"},
        data=FORM, headers={"Content-Type": "application/pdf"}, timeout=10,
    ).raise_for_status()  # fmt: skip
    person.patch(
        f"{base}/api/now/table/{SNOW_TABLE}/{item['sys_id']}",
        json={"comments": "The laptop is ready; handover.pdf needs Maria's signature."},
        timeout=10,
    ).raise_for_status()
    settle(engine)

    by_unit = calls_by_unit(engine.store)
    hr, fac, it = only(by_unit["hr"]), only(by_unit["facilities"]), only(by_unit["it"])
    [taken] = _comment_with(it, "handover.pdf").attachments
    assert (taken.sha256, taken.source.instance) == (_sha(FORM), "it-snow")
    # Jira: the file once on the issue, and the bridge's comment (the copy it recorded) names it.
    [jira_file] = issue.attachments
    assert (jira_file.filename, jira_file.path.read_bytes()) == ("handover.pdf", FORM)
    fac_copy = _comment_saying(fac, "needs Maria's signature")
    [comment] = [c for c in issue.comments if str(c.id) == fac_copy.remote_id]
    assert _file_of(fac, "handover.pdf").source.remote_id == str(jira_file.id)
    assert "[^handover.pdf]" in str(comment.body)
    assert "needs Maria's signature" in str(comment.body)
    # HR (relayed over Facilities): one mail with the comment and the file.
    [mail] = _mails_with(tools, "handover.pdf")
    assert mail["X-USM-Kind"] == "comment"
    assert "needs Maria's signature" in str(mail.get_body(("plain",)))
    assert tools.mailed_files("handover.pdf") == [FORM]
    assert _comment_saying(hr, "needs Maria's signature").remote_id == str(mail["Message-ID"])
    _no_file_mails(tools)
    # ServiceNow: still the person's one file and one entry of theirs, plus nothing of ours.
    assert len(_snow_files(tools, item["sys_id"])) == 1
    assert [e["value"] for e in _snow_entries(tools, item["sys_id"]) if "handover" in e["value"]
            ] == ["The laptop is ready; handover.pdf needs Maria's signature."]  # fmt: skip
    _done_and_quiet(tools, engine)


def _attached(name: str, media_type: str, content: bytes) -> bytes:
    """A file attached to a person's mail, as a mail client writes it."""
    return b64_part(
        f'Content-Type: {media_type}; name="{name}"\r\n'
        f'Content-Disposition: attachment; filename="{name}"',
        content,
    )


def test_a_mail_reply_with_files_reaches_jira_and_servicenow_on_the_comment(
    tools: Tools, engine: SyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = tools.mail_to_hr()
    settle(engine)
    [issue] = tools.jira_issues()
    [item] = tools.snow_items()
    parts = [
        _attached("notes.txt", "text/plain", NOTES),
        _attached("plan.pdf", "application/pdf", PLAN),
    ]
    tools.mail_to_hr("Re: onboarding", "The badge photo notes and the plan.", in_reply_to=first,
                     parts=parts)  # fmt: skip
    settle(engine)

    by_unit = calls_by_unit(engine.store)
    hr, fac, it = only(by_unit["hr"]), only(by_unit["facilities"]), only(by_unit["it"])
    reply = _comment_with(hr, "notes.txt")
    assert {(a.name, a.sha256) for a in reply.attachments} == {
        ("notes.txt", _sha(NOTES)), ("plan.pdf", _sha(PLAN)),
    }  # fmt: skip
    # Jira: both files once on the issue; one comment of the bridge names both.
    assert sorted((a.filename, a.path.read_bytes()) for a in issue.attachments) == [
        ("notes.txt", NOTES), ("plan.pdf", PLAN),
    ]  # fmt: skip
    fac_copy = _comment_saying(fac, "The badge photo notes")
    [comment] = [c for c in issue.comments if str(c.id) == fac_copy.remote_id]
    assert "[^notes.txt]" in str(comment.body) and "[^plan.pdf]" in str(comment.body)
    # ServiceNow (relayed over Facilities): both files on the record, and the comment's one
    # entry names both.
    files = _snow_files(tools, item["sys_id"])
    assert sorted(f["file_name"] for f in files) == ["notes.txt", "plan.pdf"]
    it_copy = _comment_saying(it, "The badge photo notes")
    [entry] = [e for e in _snow_entries(tools, item["sys_id"]) if e["sys_id"] == it_copy.remote_id]
    assert "The badge photo notes" in entry["value"]
    assert "Attached: notes.txt" in entry["value"] and "plan.pdf" in entry["value"]
    assert [e for e in _snow_entries(tools, item["sys_id"]) if "Attached" in e["value"]] == [entry]
    # Nothing was mailed back to HR's requester: the files are theirs.
    assert tools.mailed_files("notes.txt") == [] and tools.mailed_files("plan.pdf") == []
    _done_and_quiet(tools, engine)


VENDOR = "repairs@vendor.example"


class Clock:
    """The engine's "now", moved forward instead of waiting for an outbox wait."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@contextmanager
def vendor_incident(
    tools: Tools, store_url: str, tmp_path: Path, clock: Clock
) -> Iterator[tuple[SyncEngine, Any]]:
    """Facilities hands incidents to an outside vendor through HR's shared mailbox (a route to
    the mailbox unit, its ``supplier_address`` the vendor): the engine, and a new incident in
    Facilities' Jira carrying ``door.pdf`` and ``notes.txt``, not read yet."""
    route = {"from": "facilities", "to": "hr", "when": {"call_type": ["incident"]}}
    with open_engine(
        tools, tmp_path / "usm-bridge.toml", store_url, clock=clock,
        extra={"hr-mail": {"supplier_address": VENDOR}}, more_routes=[route],
    ) as engine:  # fmt: skip
        created = tools.jira_as_person("POST", "issue", {"fields": {
            "project": {"key": "IT"}, "issuetype": {"name": "[System] Incident"},
            "summary": "Broken lift door on floor 4", "description": adf("It jams half open."),
        }}).json()  # fmt: skip
        [issue] = [i for i in tools.jira_issues() if str(i.id) == str(created["id"])]
        tools.jira.site.attachments.add(issue, "door.pdf", PLAN)
        tools.jira.site.attachments.add(issue, "notes.txt", NOTES)
        yield engine, issue


def test_the_opening_mail_to_a_mailbox_supplier_carries_the_calls_files(
    tools: Tools, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Facilities hands incidents to an outside vendor through HR's shared mailbox: the mail
    that opens the thread carries the issue's files, and no file mail follows."""
    monkeypatch.chdir(tmp_path)
    with vendor_incident(tools, store_url, tmp_path, Clock()) as (engine, _):
        settle(engine)

        by_unit = calls_by_unit(engine.store)
        hr = only(by_unit["hr"])
        [opening] = [m for m in tools.sent_mails() if m["X-USM-Kind"] == "create"]
        assert str(opening["To"]) == VENDOR
        carried = [
            (p.get_filename(), p.get_payload(decode=True)) for p in opening.iter_attachments()
        ]
        assert sorted(carried) == [("door.pdf", PLAN), ("notes.txt", NOTES)]
        [(_, recipients, raw)] = [
            m for m in tools.smtp_messages() if str(opening["Message-ID"]).encode() in m[2]
        ]
        assert recipients == [VENDOR] and b"door.pdf" in raw
        # HR's call names the copies in that mail: parts 2 and 3 of the opening mail.
        assert {a.source.remote_id for a in hr.attachments} == {
            f"{opening['Message-ID']}#2", f"{opening['Message-ID']}#3",
        }  # fmt: skip
        assert tools.mailed_files("door.pdf") == [PLAN]
        _done_and_quiet(tools, engine)


def test_a_comments_file_waits_for_its_comment_not_for_the_opening_mail(
    tools: Tools, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A comment with a file, read before the mailbox's thread exists: the opening mail carries
    the issue's own file only; the comment's file goes in the comment's mail once the thread
    is there (its copy waited for the create), not in the opening mail nor a mail of its own."""
    monkeypatch.chdir(tmp_path)
    clock = Clock()
    with vendor_incident(tools, store_url, tmp_path, clock) as (engine, issue):
        tools.jira_as_person("POST", f"issue/{issue.id}/comment",
                             {"body": adf("My notes on it: [^notes.txt]")})  # fmt: skip
        settle(engine)
        clock.offset += timedelta(minutes=1)  # past the comment's wait for the create
        settle(engine)

        [opening] = [m for m in tools.sent_mails() if m["X-USM-Kind"] == "create"]
        assert [p.get_filename() for p in opening.iter_attachments()] == ["door.pdf"]
        [comment] = [m for m in tools.sent_mails() if m["X-USM-Kind"] == "comment"]
        assert "My notes on it" in str(comment.get_body(("plain",)))
        assert [p.get_payload(decode=True) for p in comment.iter_attachments()] == [NOTES]
        assert len(tools.mailed_files("notes.txt")) == 1  # (a text part decodes to str)
        assert tools.mailed_files("door.pdf") == [PLAN]
        _done_and_quiet(tools, engine)


def test_an_acknowledgement_names_the_requesters_files_and_sends_none_back(
    tools: Tools, engine: SyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    tools.mail_to_hr(parts=[_attached("signed-form.pdf", "application/pdf", FORM)])
    settle(engine)
    [ack] = [m for m in tools.sent_mails() if m["X-USM-Kind"] == "ack"]
    assert "We received your files: signed-form.pdf." in str(ack.get_body(("plain",)))
    assert list(ack.iter_attachments()) == []
    assert tools.mailed_files("signed-form.pdf") == []
    _done_and_quiet(tools, engine)


def _reply_with_notes(tools: Tools, engine: SyncEngine) -> None:
    """The new hire's call along the chain, then the requester's reply with ``notes.txt``."""
    first = tools.mail_to_hr()
    settle(engine)
    tools.mail_to_hr("Re: onboarding", "The badge photo notes.", in_reply_to=first,
                     parts=[_attached("notes.txt", "text/plain", NOTES)])  # fmt: skip


def test_lost_answers_to_the_upload_and_the_comment_leave_one_of_each_in_jira(
    tools: Tools, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jira takes the file, its answer is lost; the retry (before any read of Jira could know
    the file) lists the issue, finds it, and adds the comment, whose answer is lost too; the
    next retry finds that comment by its property. One file, one comment naming it, both known
    as the bridge's."""
    monkeypatch.chdir(tmp_path)
    clock = Clock()
    with open_engine(tools, tmp_path / "usm-bridge.toml", store_url, clock=clock) as engine:
        _reply_with_notes(tools, engine)
        [issue] = tools.jira_issues()
        tools.jira.fail_next(SimFault.LOSE_ATTACHMENT_RESPONSE)
        tools.jira.fail_next(SimFault.LOSE_COMMENT_RESPONSE)
        assert engine.run_cycle("hr-mail").ok  # the reply read; its copy for Jira asked for
        pushes = []
        for _ in range(3):  # pushes only: no read of Jira between the attempts
            pushes.append(engine.push("facilities-jira"))
            clock.offset += timedelta(hours=2)  # past the retry's backoff
        assert [p.error for p in pushes] == [None] * 3
        assert len(issue.attachments) == 1 and any(
            "[^notes.txt]" in str(c.body) for c in issue.comments
        )
        settle(engine)

        assert [(a.filename, a.path.read_bytes()) for a in issue.attachments] == [
            ("notes.txt", NOTES)
        ]
        mine = [c for c in issue.comments if "The badge photo notes." in str(c.body)]
        assert len(mine) == 1 and "[^notes.txt]" in str(mine[0].body)
        fac = only(calls_by_unit(engine.store)["facilities"])
        assert _comment_saying(fac, "The badge photo notes.").remote_id == str(mine[0].id)
        assert _file_of(fac, "notes.txt").source.remote_id == str(issue.attachments[0].id)
        uploads = [p for m, p in tools.jira_traffic.writes() if p.endswith("/attachments")]
        assert len(uploads) == 1  # the lost one: found by listing, never sent again
        _done_and_quiet(tools, engine)


def test_a_comment_jira_refuses_for_good_still_leaves_its_file_on_the_issue(
    tools: Tools, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file went up, the comment naming it was refused (a dead letter with Jira's reason):
    the file is not lost with it; read back, it is known as the bridge's copy (not uploaded
    again, not taken for a person's new file)."""
    monkeypatch.chdir(tmp_path)
    answer = tools.jira.answer
    refused: list[str] = []

    def refusing(method: str, path: str, *args: Any) -> Any:
        if method == "POST" and path.endswith("/comment") and not refused:
            refused.append(path)
            return errors(400, "Comment body is not valid")
        return answer(method, path, *args)

    with open_engine(tools, tmp_path / "usm-bridge.toml", store_url) as engine:
        _reply_with_notes(tools, engine)
        [issue] = tools.jira_issues()
        tools.jira.answer = refusing  # type: ignore[method-assign]
        settle(engine)
        tools.jira.answer = answer  # type: ignore[method-assign]

        assert len(refused) == 1
        assert [(a.filename, a.path.read_bytes()) for a in issue.attachments] == [
            ("notes.txt", NOTES)
        ]
        assert [c for c in issue.comments if "The badge photo notes." in str(c.body)] == []
        fac = only(calls_by_unit(engine.store)["facilities"])
        assert _file_of(fac, "notes.txt").source.remote_id == str(issue.attachments[0].id)
        with engine.store.begin(readonly=True) as tx:
            [letter] = tx.list_dead_letters()
            assert tx.list_outbox(status="pending") == []
        assert "Comment body is not valid" in letter.reason
        uploads = [p for m, p in tools.jira_traffic.writes() if p.endswith("/attachments")]
        assert len(uploads) == 1
        assert_quiet(tools, engine)
