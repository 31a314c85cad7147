"""Issue 20 on the running chain HR (mail) -> Facilities (Jira) -> IT (ServiceNow): a signed form
a person attaches to Facilities' Jira issue.

The mail and ServiceNow connectors do not carry attachments yet (their sides are being built),
so this is the chain as it stands: the form is taken in at Facilities, and for each of the two
units it cannot reach the outcome is said, not dropped: listed as refused on that unit's call
(the conformance report counts it as could-not-travel), a ``push`` dead letter with the reason
each. Nothing is read or written again after.
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
        assert copy.identity == taken.identity
        assert copy.refused is not None and "does not carry attachments" in copy.refused
        assert instance in copy.refused
    with engine.store.begin(readonly=True) as tx:
        letters = sorted((d.instance, str(d.stage)) for d in tx.list_dead_letters())
    assert letters == [("hr-mail", "push"), ("it-snow", "push")]
    assert_quiet(tools, engine)
