"""Attachments that could not travel, counted per unit in the conformance report (issue #20):
from their dead letters (open or dismissed: one per file and instance), all and by why, in the
JSON and HTML reports in full; a unit's refused file is no record missing (no fail for it)."""

from __future__ import annotations

import json

from conformance_enterprise import Enterprise

from usm_bridge.conformance.api import CheckOutcome
from usm_bridge.conformance.checks import BUILTIN_CHECKS
from usm_bridge.conformance.engine import build_report, run_checks
from usm_bridge.conformance.renderers import HtmlRenderer, JsonRenderer
from usm_bridge.dead_letters import dismiss_dead_letters
from usm_bridge.model import Attachment, AttachmentSource
from usm_bridge.sync.call_files import NotTravelled, record_refusal, refusal_of


def _file(n: int) -> Attachment:
    return Attachment(
        name=f"form-{n}.pdf", media_type="application/pdf", size=10 + n, sha256=f"{n:064x}",
        source=AttachmentSource(instance="fac-jira", remote_id=str(n)), origin="fac-jira",
    )  # fmt: skip


def _refuse(
    enterprise: Enterprise, n: int, instance: str, why: NotTravelled, on_call: int = 0
) -> None:
    direction = "read" if instance == "fac-jira" else "write"
    with enterprise.store.begin() as tx:
        call_id = tx.list_calls()[on_call].id
        refusal = refusal_of(_file(n), instance, call_id, f"form-{n}.pdf: {why}", direction)
        record_refusal(tx, refusal, home=None, why=why)


def _outcomes(enterprise: Enterprise) -> dict[str | None, CheckOutcome]:
    outcomes = run_checks(enterprise.context(), BUILTIN_CHECKS())
    return {o.unit: o for o in outcomes if o.check_id == "data.dead-letters"}


def test_files_that_could_not_travel_are_counted_per_unit_and_why(enterprise: Enterprise) -> None:
    before = _outcomes(enterprise)
    assert not any("attachments" in key for o in before.values() for key in o.metrics)
    _refuse(enterprise, 1, "fac-jira", "refused")  # refused where it was read
    _refuse(enterprise, 2, "it-snow", "not_carried")
    _refuse(enterprise, 3, "it-snow", "failed")
    _refuse(enterprise, 4, "it-snow", "refused")
    _refuse(enterprise, 4, "it-snow", "refused")  # the same file again: one letter, one file
    dismiss_dead_letters(enterprise.store, reason="known", by="auditor", instance="it-snow")
    _refuse(enterprise, 5, "hr-mail", "not_carried")
    after = _outcomes(enterprise)
    facilities = after["facilities"].metrics
    assert (facilities["attachments_could_not_travel"], facilities["attachments_refused"]) == (1, 1)
    # A refused file is no missing record: facilities' verdict is what it was.
    assert after["facilities"].verdict == before["facilities"].verdict
    it = after["it"].metrics
    assert {k: v for k, v in it.items() if k.startswith("attachments_")} == {
        "attachments_could_not_travel": 3, "attachments_failed": 1,
        "attachments_not_carried": 1, "attachments_refused": 1,
    }  # fmt: skip
    assert after["hr"].metrics["attachments_not_carried"] == 1
    report = build_report(enterprise.context())
    units = {
        o["unit"]: o["metrics"]
        for o in json.loads(JsonRenderer().render(report))["outcomes"]
        if o["check_id"] == "data.dead-letters"
    }
    assert units["it"]["attachments_could_not_travel"] == 3
    html = HtmlRenderer().render(report)
    assert "attachments_could_not_travel: <strong>3</strong>" in html.replace("<bdi>", "").replace(
        "</bdi>", ""
    )


def test_a_file_refused_on_two_calls_is_a_letter_on_each_and_one_file(
    enterprise: Enterprise,
) -> None:
    """Issue #20: the letter's subject names its call, so that the second call does not take
    the first one's letter over; the report still counts the file once per instance."""
    _refuse(enterprise, 7, "it-snow", "refused", on_call=0)
    _refuse(enterprise, 7, "it-snow", "refused", on_call=1)
    _refuse(enterprise, 7, "it-snow", "refused", on_call=1)  # again on the second: an attempt
    with enterprise.store.begin(readonly=True) as tx:
        calls = [c.id for c in tx.list_calls()[:2]]
        letters = tx.list_dead_letters(instance="it-snow")
    assert sorted((letter.call_id, letter.attempts) for letter in letters) == sorted(
        [(calls[0], 1), (calls[1], 2)]
    )
    assert all(str(letter.call_id) in str(letter.subject) for letter in letters)
    it = _outcomes(enterprise)["it"].metrics
    assert (it["attachments_could_not_travel"], it["attachments_refused"]) == (1, 1)
