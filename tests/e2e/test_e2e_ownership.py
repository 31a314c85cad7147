"""Who owns which field, over the real simulators: HR (mail) -> Facilities (Jira) -> IT
(ServiceNow).

HR, the customer of Facilities, owns the request text; IT, the supplier of Facilities, owns
the status of its own work. A Facilities agent who rewrites the request in Jira is reverted
to HR's text (one conflict in the audit log); an IT agent's status change in ServiceNow
travels up to Facilities. Neither loops: more cycles write nothing. ServiceNow fills in an
impact of its own where the request gave none (the owner's value is empty): no conflict.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.e2e_env import (
    INSTANCES,
    NEW_HIRE_BODY,
    Tools,
    calls_by_unit,
    start_tools,
    write_config,
)
from usm_bridge.builtin.transforms import adf_to_text
from usm_bridge.model import Status
from usm_bridge.plugins import PluginHost
from usm_bridge.store import Store
from usm_bridge.sync.engine import SyncEngine

AGENTS_TEXT = "Only a desk is needed; the badge and laptop are someone else's problem."


@pytest.fixture
def tools(tmp_path: Path) -> Iterator[Tools]:
    started = start_tools(tmp_path)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def engine(tools: Tools, store_url: str, tmp_path: Path) -> Iterator[SyncEngine]:
    config = write_config(tools, tmp_path / "usm-bridge.toml", store_url)
    store = Store.open(config.store.url)
    built = SyncEngine(config, store, PluginHost())
    try:
        yield built
    finally:
        built.close()
        store.close()


def settle(engine: SyncEngine, rounds: int = 3) -> list[Any]:
    """Each instance in turn, as the daemon would, a few times; every cycle must succeed."""
    summaries = []
    for _ in range(rounds):
        for name in INSTANCES:
            summary = engine.run_cycle(name)
            assert summary.ok, summary.error
            summaries.append(summary)
    return summaries


def only(calls: list[Any]) -> Any:
    assert len(calls) == 1, [c.title for c in calls]
    return calls[0]


def audit(store: Store, kind: str) -> list[Any]:
    with store.begin(readonly=True) as tx:
        return list(tx.list_audit(kind=kind))


def versions(store: Store) -> dict[str, int]:
    with store.begin(readonly=True) as tx:
        return {stored.id: stored.version for stored in tx.list_calls()}


def assert_quiet(tools: Tools, engine: SyncEngine, rounds: int = 3) -> None:
    """More cycles store nothing and write nothing into any tool."""
    before, calls_before = tools.write_counts(), versions(engine.store)
    for summary in settle(engine, rounds):
        assert summary.pushed == 0 and summary.stored == 0, summary
    assert tools.write_counts() == before
    assert versions(engine.store) == calls_before


def _adf(text: str) -> dict[str, Any]:
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}],
    }


def _jira_description(tools: Tools) -> str:
    (issue,) = tools.jira_issues()
    return adf_to_text(issue.description).strip()


def test_the_request_text_follows_hr_and_the_status_follows_it_without_loops(
    tools: Tools, engine: SyncEngine
) -> None:
    store = engine.store
    tools.mail_to_hr()
    settle(engine)
    by_unit = calls_by_unit(store)
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
    tools.jira_as_person("PUT", f"issue/{issue.id}", {"fields": {"description": _adf(AGENTS_TEXT)}})
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
