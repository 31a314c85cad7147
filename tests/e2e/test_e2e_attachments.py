"""Issue 20 on the running chain HR (mail) -> Facilities (Jira) -> IT (ServiceNow): a signed form
a person attaches to Facilities' Jira issue travels up to HR's mailbox and down to IT's
ServiceNow record, each copy written once and known by its id there; nothing is read or written
again after.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from e2e.e2e_env import Tools, assert_quiet, calls_by_unit, onboard, only, settle
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
    mailed = [
        part.get_content()
        for mail in tools.sent_mails()
        for part in mail.iter_attachments()
        if part.get_filename() == "signed-form.pdf"
    ]
    assert mailed == [FORM]
    with engine.store.begin(readonly=True) as tx:
        assert list(tx.list_dead_letters()) == []
    assert_quiet(tools, engine)
