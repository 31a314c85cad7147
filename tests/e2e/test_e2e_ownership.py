"""Who owns which field, over the real simulators: HR (mail) -> Facilities (Jira) -> IT
(ServiceNow).

HR, the customer of Facilities, owns the request text; IT, the supplier of Facilities, owns
the status of its own work. A Facilities agent who rewrites the request in Jira is reverted
to HR's text (one conflict in the audit log); an IT agent's status change in ServiceNow
travels up to Facilities. Neither loops: more cycles write nothing. ServiceNow fills in an
impact of its own where the request gave none (the owner's value is empty): no conflict.
"""

from __future__ import annotations

from typing import Any

from usm_bridge_jira.transforms import adf_to_text

from e2e.e2e_env import (
    NEW_HIRE_BODY,
    Tools,
    adf,
    assert_quiet,
    calls_by_unit,
    onboard,
    only,
    settle,
)
from usm_bridge.model import Status
from usm_bridge.store import Store
from usm_bridge.sync.engine import SyncEngine

AGENTS_TEXT = "Only a desk is needed; the badge and laptop are someone else's problem."


def audit(store: Store, kind: str) -> list[Any]:
    with store.begin(readonly=True) as tx:
        return list(tx.list_audit(kind=kind))


def _jira_description(tools: Tools) -> str:
    (issue,) = tools.jira_issues()
    return adf_to_text(issue.description).strip()


def test_the_request_text_follows_hr_and_the_status_follows_it_without_loops(
    tools: Tools, engine: SyncEngine
) -> None:
    store = engine.store
    by_unit = onboard(tools, engine)
    hr, fac = only(by_unit["hr"]), only(by_unit["facilities"])
    assert len(by_unit["it"]) == 1
    hr_text = hr.description
    assert "desk, a badge and a laptop" in hr_text and fac.description == hr_text
    # HR gave no impact; ServiceNow's own default is no conflict and is never "reverted".
    assert hr.impact is None and fac.impact is None
    assert audit(store, "conflict") == [] and audit(store, "unresolvable") == []
    assert_quiet(tools, engine)

    # -- a Facilities agent rewrites the request in Jira: reverted to HR's text ----------------
    (issue,) = tools.jira_issues()
    tools.jira_as_person("PUT", f"issue/{issue.id}", {"fields": {"description": adf(AGENTS_TEXT)}})
    assert _jira_description(tools) == AGENTS_TEXT
    settle(engine)
    assert _jira_description(tools).strip() == hr_text.strip()
    (event,) = audit(store, "conflict")
    assert event.detail["field"] == "description" and event.detail["owner"] == "customer"
    assert AGENTS_TEXT in str(event.before) and event.call_id == fac.id
    by_unit = calls_by_unit(store)
    assert only(by_unit["facilities"]).description == hr_text
    assert only(by_unit["hr"]).description == hr_text
    # IT never holds the agent's text: the request it works on is HR's.
    (item,) = tools.snow_items()
    assert AGENTS_TEXT not in item["description"]
    assert "desk, a badge and a laptop" in item["description"]
    assert_quiet(tools, engine)
    assert len(audit(store, "conflict")) == 1

    # -- an IT agent's status change in ServiceNow travels up to Facilities -------------------
    tools.snow.update("sc_req_item", item["sys_id"], {"state": "3"}, user="beth.anglin")
    settle(engine)
    by_unit = calls_by_unit(store)
    assert only(by_unit["it"]).status is Status.CLOSED
    assert only(by_unit["facilities"]).status is Status.IN_PROGRESS
    (issue,) = tools.jira_issues()
    assert tools.jira.site.statuses[issue.status_id].name == "In Progress"
    assert len(audit(store, "conflict")) == 1  # the supplier's own field: no conflict

    # -- more cycles write nothing, and nothing was left undone --------------------------------
    assert_quiet(tools, engine)
    assert len(audit(store, "conflict")) == 1 and audit(store, "unresolvable") == []
    assert NEW_HIRE_BODY.split("\n")[2] in _jira_description(tools)
    with store.begin(readonly=True) as tx:
        assert tx.list_dead_letters() == []
        assert tx.list_outbox(status="pending") == []
