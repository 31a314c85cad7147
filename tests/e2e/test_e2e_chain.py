"""Issue 6, points 2 and 3 over real HTTP and real mail: HR (mail) -> Facilities (Jira) -> IT
(ServiceNow) and back, with each tool checked in its own terms.

The tools run in this process on loopback ports (see :mod:`e2e.e2e_env`); the bridge is the
real :class:`~usm_bridge.sync.engine.SyncEngine` built from a TOML config with the shipped
mapping files, its connectors built through the plugin host from their entry points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from usm_bridge_jira.transforms import adf_to_text

from e2e.e2e_env import (
    INSTANCES,
    JIRA_PROJECT,
    NEW_HIRE_SUBJECT,
    Tools,
    adf,
    assert_quiet,
    calls_by_unit,
    onboard,
    only,
    open_engine,
    settle,
)
from usm_bridge.model import Status, WaitingOn
from usm_bridge.sync.engine import SyncEngine

LAPTOP_NOTE = "The laptop is ordered and arrives on Friday."


DESK_NOTE = "Desk 4.12 is reserved; badge at reception."
#: The first line of each copy: the author as the tool names them, and the unit's title.
LAPTOP_BY = "beth.anglin (IT) wrote:"
DESK_BY = "Sim Admin (Facilities) wrote:"


def comments_in_jira(issue: Any) -> list[str]:
    return [adf_to_text(c.body).strip() for c in issue.comments]


def mails_with(tools: Tools, text: str) -> list[Any]:
    return [m for m in tools.sent_mails() if text in m.get_content()]


def test_an_onboarding_mail_travels_hr_facilities_it_and_back(
    tools: Tools, engine: SyncEngine
) -> None:
    store = engine.store

    # -- one call per unit, linked, each in its tool exactly once -------------------------------
    by_unit = onboard(tools, engine)
    hr, fac, it = only(by_unit["hr"]), only(by_unit["facilities"]), only(by_unit["it"])
    assert hr.chain.suppliers == [fac.id] and fac.chain.upstream == hr.id
    assert fac.chain.suppliers == [it.id] and it.chain.upstream == fac.id
    assert (hr.status, hr.waiting_on) == (Status.WAITING, WaitingOn.SUPPLIER)
    assert (fac.status, fac.waiting_on) == (Status.WAITING, WaitingOn.SUPPLIER)
    assert it.status is Status.REGISTERED
    assert fac.title == it.title == NEW_HIRE_SUBJECT

    (issue,) = tools.jira_issues()
    assert issue.project == JIRA_PROJECT and issue.summary == NEW_HIRE_SUBJECT
    assert issue.properties["usmBridge"] == {"correlation": f"usm-bridge:{fac.id}"}
    assert tools.jira.site.statuses[issue.status_id].name == "Pending"
    assert fac.source is not None and fac.source.remote_id == str(issue.id)
    (item,) = tools.snow_items()
    assert item["correlation_id"] == f"usm-bridge:{it.id}"
    assert item["short_description"] == NEW_HIRE_SUBJECT
    assert "desk, a badge and a laptop" in item["description"]
    assert it.source is not None and it.source.remote_id == item["sys_id"]
    # HR's requester was acknowledged once and told that the call waits on its supplier.
    kinds = sorted(str(m["X-USM-Kind"]) for m in tools.sent_mails())
    assert kinds == ["ack", "status"]
    assert len(tools.smtp_messages()) == 2
    assert all(rcpts == ["hannah@example.com"] for _, rcpts, _ in tools.smtp_messages())
    # The bridge's own mails stay internal notes of the HR call: nothing travelled as a comment.
    assert issue.comments == [] and tools.snow_comments(item["sys_id"]) == []

    # -- a public comment made in ServiceNow by a person reaches Jira and HR's mail -----------
    tools.snow.update("sc_req_item", item["sys_id"], {"comments": LAPTOP_NOTE}, user="beth.anglin")
    settle(engine)
    (issue,) = tools.jira_issues()
    # Posted by the bridge's Jira account, the copy names who wrote it and in which unit.
    assert comments_in_jira(issue) == [f"{LAPTOP_BY}\n{LAPTOP_NOTE}"]
    assert tools.snow_comments(item["sys_id"]) == [LAPTOP_NOTE]  # no echo back
    # The router carries a public comment one link (router.py: "public comments travel one
    # link both ways"): IT's comment reaches Facilities, whose copy is the bridge's own and
    # goes no further, so HR's requester is not mailed what IT wrote to Facilities.
    assert mails_with(tools, LAPTOP_NOTE) == []

    # -- a public comment made in Jira by a person reaches ServiceNow and HR's mail ------------
    tools.jira_as_person(
        "POST",
        f"issue/{issue.id}/comment",
        {"body": adf(DESK_NOTE)},
    )
    settle(engine)
    (item,) = tools.snow_items()
    assert tools.snow_comments(item["sys_id"]) == [LAPTOP_NOTE, f"{DESK_BY}\n{DESK_NOTE}"]
    (mailed,) = mails_with(tools, "Desk 4.12 is reserved")
    assert mailed.get_content().splitlines()[:2] == [DESK_BY, DESK_NOTE]
    assert len(comments_in_jira(tools.jira_issues()[0])) == 2  # no echo of its own copy

    # -- resolving in ServiceNow resumes Facilities; resolving in Jira resumes HR --------------
    tools.snow.update("sc_req_item", item["sys_id"], {"state": "3"}, user="beth.anglin")
    settle(engine)
    by_unit = calls_by_unit(store)
    assert only(by_unit["it"]).status is Status.CLOSED
    assert only(by_unit["facilities"]).status is Status.IN_PROGRESS
    assert only(by_unit["hr"]).status is Status.WAITING  # Facilities still works on it
    (issue,) = tools.jira_issues()
    assert tools.jira.site.statuses[issue.status_id].name == "In Progress"

    tools.resolve_in_jira(str(issue.id))
    settle(engine)
    by_unit = calls_by_unit(store)
    assert only(by_unit["facilities"]).status is Status.FULFILLED
    hr = only(by_unit["hr"])
    assert hr.status is Status.IN_PROGRESS and hr.waiting_on is None
    assert len(mails_with(tools, "is now: in progress")) == 1

    # -- more cycles change nothing and write nothing -----------------------------------------
    assert_quiet(tools, engine)

    # -- exactly one record per unit in each tool, one copy of each comment --------------------
    assert len(tools.jira_issues()) == 1 and len(tools.snow_items()) == 1
    assert tools.inbox_files() == 1  # the one mail HR received
    (issue,) = tools.jira_issues()
    assert sorted(comments_in_jira(issue)) == sorted([f"{LAPTOP_BY}\n{LAPTOP_NOTE}", DESK_NOTE])
    with store.begin(readonly=True) as tx:
        assert tx.list_dead_letters() == []
        assert tx.list_outbox(status="pending") == []


def test_a_create_refused_after_the_record_was_made_makes_no_duplicate(
    tools: Tools, store_url: str, tmp_path: Path
) -> None:
    # Without transition_via, Jira refuses the create's second step (Open -> Pending): the
    # issue exists, the create is dead-lettered, and reading the issue back must not make it
    # a new Facilities call with a second supplier in ServiceNow.
    with open_engine(
        tools, tmp_path / "usm-bridge.toml", store_url,
        extra={"facilities-jira": {"transition_via": {}}},
    ) as engine:  # fmt: skip
        store = engine.store
        tools.mail_to_hr()
        for _ in range(3):
            for name in INSTANCES:
                engine.run_cycle(name)
        by_unit = calls_by_unit(store)
        assert len(by_unit["facilities"]) == len(by_unit["it"]) == 1
        assert len(tools.jira_issues()) == len(tools.snow_items()) == 1
        with store.begin(readonly=True) as tx:
            letters = tx.list_dead_letters()
        assert letters and all("no transition" in letter.reason for letter in letters)
