"""Issue 20 on the running chain HR (mail) -> Facilities (Jira) -> IT (ServiceNow): a signed form
a person attaches to Facilities' Jira issue travels up to HR's mailbox and down to IT's
ServiceNow record, each copy written once and known by its id there; nothing is read or written
again after.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from e2e.e2e_env import Tools, assert_quiet, b64_part, calls_by_unit, onboard, only, settle
from usm_bridge.sync.engine import SyncEngine

FORM = b"%PDF-1.4\n% onboarding form, signed by Maria Lopez\n" + b"0" * 4000


def test_a_signed_form_on_facilities_issue_has_an_outcome_at_every_unit(
    tools: Tools, engine: SyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default spool folder is relative to the state folder
    onboard(tools, engine)
    [issue] = tools.jira_issues()
    tools.jira.site.attachments.add(issue, "signed-form.pdf", FORM)
    settle(engine)
    by_unit = calls_by_unit(engine.store)
    hr, fac, it = only(by_unit["hr"]), only(by_unit["facilities"]), only(by_unit["it"])
    [taken] = fac.attachments
    assert (taken.name, taken.sha256, taken.refused) == (
        "signed-form.pdf", hashlib.sha256(FORM).hexdigest(), None,
    )  # fmt: skip
    assert taken.source is not None and taken.source.instance == "facilities-jira"
    for call, instance in ((hr, "hr-mail"), (it, "it-snow")):
        [copy] = call.attachments
        assert (copy.identity, copy.refused, copy.origin) == (taken.identity, None, taken.origin)
        assert copy.source is not None and copy.source.instance == instance
    # ServiceNow holds the bytes under the id the IT call names.
    [snow_copy] = it.attachments
    assert snow_copy.source is not None
    content = tools.snow.attachments.path_of(snow_copy.source.remote_id).read_bytes()
    assert hashlib.sha256(content).hexdigest() == taken.sha256
    # HR's requester got it by mail, once.
    assert tools.mailed_files("signed-form.pdf") == [FORM]
    with engine.store.begin(readonly=True) as tx:
        assert list(tx.list_dead_letters()) == []
    assert_quiet(tools, engine)


PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + bytes(range(64))
NOTES = b"Desk 4.12, badge photo on file.\r\n"
FORWARDED = (
    b"From: Facilities <desk@facilities.example>\r\nSubject: Desk plan\r\n"
    b"Message-ID: <plan@facilities.example>\r\n\r\nDesk 4.12 is free from Monday.\r\n"
)


def test_files_mailed_to_hr_each_end_taken_or_refused_and_travel_once(
    tools: Tools, engine: SyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    call_mail = tools.mail_to_hr(parts=[
        b64_part('Content-Type: application/pdf; name="signed-form.pdf"\r\n'
                 'Content-Disposition: attachment; filename="signed-form.pdf"', FORM),
        b64_part('Content-Type: image/png\r\nContent-ID: <photo@example.com>\r\n'
                 'Content-Disposition: inline; filename="photo.png"', PNG),
        b'Content-Type: application/pdf; name="broken.pdf"\r\n'
        b'Content-Disposition: attachment; filename="broken.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0x*LjQK\r\n",
        b'Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n' + FORWARDED,
    ])  # fmt: skip
    settle(engine)
    tools.mail_to_hr("Re: onboarding", "The desk notes.", in_reply_to=call_mail, parts=[
        b64_part('Content-Type: text/plain; name="notes.txt"\r\n'
                 'Content-Disposition: attachment; filename="notes.txt"', NOTES),
    ])  # fmt: skip
    settle(engine)
    by_unit = calls_by_unit(engine.store)
    hr, fac, it = only(by_unit["hr"]), only(by_unit["facilities"]), only(by_unit["it"])
    # A forwarded mail is the file as the stdlib renders the inner message: LF line ends.
    eml = FORWARDED.replace(b"\r\n", b"\n")
    good = {"signed-form.pdf": FORM, "photo.png": PNG, "message-5.eml": eml, "notes.txt": NOTES}
    sha = {name: hashlib.sha256(content).hexdigest() for name, content in good.items()}
    # HR took in each of the five files once: four from the call's mail, the note's file on the
    # reply's comment, and the broken part refused with the reason (not a lost mail).
    on_call = {a.name: (a.sha256, a.refused, a.source.remote_id) for a in hr.attachments}
    assert set(on_call) == {"signed-form.pdf", "photo.png", "broken.pdf", "message-5.eml"}
    for number, name in enumerate(["signed-form.pdf", "photo.png", "broken.pdf", "message-5.eml"]):
        assert on_call[name][2] == f"{call_mail}#{number + 2}"  # the part's place in the mail
    assert [on_call[n][:2] for n in ("signed-form.pdf", "photo.png", "message-5.eml")] == [
        (sha[n], None) for n in ("signed-form.pdf", "photo.png", "message-5.eml")
    ]
    broken_sha, broken_reason, _ = on_call["broken.pdf"]
    assert broken_sha is None and "bad base64" in str(broken_reason)
    [on_reply] = [a for c in hr.comments for a in c.attachments]
    assert (on_reply.name, on_reply.sha256, on_reply.refused) == (
        "notes.txt", sha["notes.txt"], None,
    )  # fmt: skip
    # Facilities' Jira and IT's ServiceNow hold each good file once, bytes equal; the broken
    # one went nowhere.
    [issue] = tools.jira_issues()
    assert sorted((a.filename, a.path.read_bytes()) for a in issue.attachments) == sorted(
        good.items()
    )
    for call, instance in ((fac, "facilities-jira"), (it, "it-snow")):
        assert sorted((a.name, a.sha256) for a in call.attachments) == sorted(sha.items())
        assert {a.source.instance for a in call.attachments} == {instance}
    snow = {a.name: tools.snow.attachments.path_of(a.source.remote_id).read_bytes()
            for a in it.attachments}  # fmt: skip
    assert snow == good
    # The refusal: one dead letter naming the part and why, and no file mailed back to HR.
    with engine.store.begin(readonly=True) as tx:
        [letter] = tx.list_dead_letters()
    assert letter.call_id is not None
    assert letter.subject == f"attachment:{letter.call_id}:hr-mail/{call_mail}#4:broken.pdf"
    assert "bad base64" in letter.reason
    assert [p.get_filename() for m in tools.sent_mails() for p in m.iter_attachments()] == []
    # ... and one note on HR's call: an internal note, kept in the Sent folder, mailed to nobody.
    notes = [m for m in tools.sent_mails() if "An attachment was not read from hr-mail" in str(
        m.get_body(("plain",)).get_content())]  # type: ignore[union-attr]  # fmt: skip
    assert len(notes) == 1 and "broken.pdf" in str(notes[0].get_body(("plain",)))
    assert str(notes[0]["Message-ID"]) not in tools.smtp_message_ids()
    assert_quiet(tools, engine)
