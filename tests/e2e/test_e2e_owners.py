"""An ``owners`` entry honoured over the real simulators: Facilities (Jira) owns the status of
the calls it passes to IT (ServiceNow), ``owners = { status = "customer" }``.

Facilities does not wait on IT: its agent's transition in Jira sets the ServiceNow item's state,
and an IT agent who closes the item is reverted to Facilities' status, audited once as a
conflict. ``usm-bridge check`` accepts the config, and more cycles write nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from e2e.e2e_env import Tools, assert_quiet, calls_by_unit, only, open_engine, settle
from usm_bridge.checks import check_config
from usm_bridge.model import Status
from usm_bridge.store import Store

OWNERS = {"facilities-to-it": {"status": "customer"}}


def _transition(tools: Tools, issue_id: str, to: str) -> None:
    found = tools.jira_as_person("GET", f"issue/{issue_id}/transitions").json()
    step = next(t for t in found["transitions"] if t["to"]["name"] == to)
    tools.jira_as_person(
        "POST", f"issue/{issue_id}/transitions", {"transition": {"id": step["id"]}}
    )


def _conflicts(store: Store) -> list[Any]:
    with store.begin(readonly=True) as tx:
        return list(tx.list_audit(kind="conflict"))


def test_facilities_owning_the_status_sets_it_in_servicenow(
    tools: Tools, store_url: str, tmp_path: Path
) -> None:
    with open_engine(tools, tmp_path / "usm-bridge.toml", store_url, owners=OWNERS) as engine:
        assert "route facilities-to-it: facilities -> it" in check_config(engine.config)
        store = engine.store
        tools.mail_to_hr()
        settle(engine)
        by_unit = calls_by_unit(store)
        fac, it = only(by_unit["facilities"]), only(by_unit["it"])
        # Facilities keeps its own status: it does not wait on IT, and IT's item follows it.
        assert fac.status is Status.REGISTERED and it.status is Status.REGISTERED
        (item,) = tools.snow_items()
        assert item["state"] == "-5"

        (issue,) = tools.jira_issues()
        _transition(tools, issue.id, "In Progress")
        settle(engine)
        (item,) = tools.snow_items()
        assert item["state"] == "2"
        assert only(calls_by_unit(store)["it"]).status is Status.IN_PROGRESS
        assert _conflicts(store) == []

        # IT may not close what Facilities still works on: reverted, audited once.
        tools.snow.update("sc_req_item", item["sys_id"], {"state": "3"}, user="beth.anglin")
        settle(engine)
        (item,) = tools.snow_items()
        assert item["state"] == "2"
        (event,) = _conflicts(store)
        assert event.detail["field"] == "status" and event.detail["owner"] == "customer"
        assert event.detail["reverted"] == "closed" and event.detail["kept"] == "in_progress"
        by_unit = calls_by_unit(store)
        assert only(by_unit["facilities"]).status is Status.IN_PROGRESS
        assert only(by_unit["it"]).status is Status.IN_PROGRESS

        assert_quiet(tools, engine)
        assert len(_conflicts(store)) == 1
        with store.begin(readonly=True) as tx:
            assert tx.list_dead_letters() == []
            assert tx.list_outbox(status="pending") == []
