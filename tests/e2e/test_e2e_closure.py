"""Issue 16, "every link closes", over real HTTP and real mail: HR (mail) -> Facilities (Jira)
-> IT (ServiceNow requested item), and every call of the chain ends closed, in order.

IT's item is confirmed by Facilities when Facilities resolves its issue (ServiceNow's Closed
Complete already ended the item: the confirmation is the bridge's record, and a work note says
so); Facilities' issue is confirmed by HR when an HR agent fulfils HR's call by mail (Jira is
moved to Closed); HR's call is confirmed by its requester's YES and then closed by the bridge.
"""

from __future__ import annotations

from pathlib import Path

from e2e.e2e_env import (
    NEW_HIRE_SUBJECT,
    Tools,
    assert_quiet,
    calls_by_unit,
    only,
    open_engine,
    settle,
)
from usm_bridge.model import ConfirmationKind, Status

HR_AGENT = "Hilda from HR <hilda@example.com>"


def _mail_kinds(tools: Tools) -> list[str]:
    return [str(m["X-USM-Kind"]) for m in tools.sent_mails()]


def test_every_call_of_the_chain_is_confirmed_and_closed_in_order(
    tools: Tools, store_url: str, tmp_path: Path
) -> None:
    hr_settings = {"agents": ["hilda@example.com"], "trust_relay": True}
    with open_engine(
        tools, tmp_path / "usm-bridge.toml", store_url, extra={"hr-mail": hr_settings}
    ) as engine:
        store = engine.store
        asked = tools.mail_to_hr()
        settle(engine)
        (issue,) = tools.jira_issues()
        (item,) = tools.snow_items()

        # -- IT closes its item; Facilities resumes, then resolves: IT's item is accepted -----
        tools.snow.update("sc_req_item", item["sys_id"], {"state": "3"}, user="beth.anglin")
        settle(engine)
        it = only(calls_by_unit(store)["it"])
        assert it.status is Status.CLOSED and it.confirmation is None  # not accepted yet
        tools.resolve_in_jira(str(issue.id))
        settle(engine)
        by_unit = calls_by_unit(store)
        it, fac = only(by_unit["it"]), only(by_unit["facilities"])
        assert it.status is Status.CLOSED
        assert it.confirmation is not None
        assert it.confirmation.kind is ConfirmationKind.EXPLICIT
        assert it.confirmation.how is not None
        assert it.confirmation.how.startswith("the customer call IT-")
        assert it.confirmation.how.endswith("(facilities) moved on to fulfilled using this work")
        notes = [e["value"] for e in tools.snow.journal(item["sys_id"])]
        assert sum("Confirmed (explicit)" in note for note in notes) == 1
        assert fac.status is Status.FULFILLED  # HR has not moved on yet
        assert tools.snow_items()[0]["state"] == "3"

        # -- an HR agent fulfils HR's call by mail: Facilities' issue is accepted and closed --
        tools.mail_to_hr(
            f"Re: {NEW_HIRE_SUBJECT}", "Status: fulfilled", sender=HR_AGENT, in_reply_to=asked
        )
        settle(engine)
        by_unit = calls_by_unit(store)
        hr, fac = only(by_unit["hr"]), only(by_unit["facilities"])
        assert hr.status is Status.FULFILLED
        assert fac.status is Status.CLOSED
        assert fac.confirmation is not None
        assert fac.confirmation.kind is ConfirmationKind.EXPLICIT
        (issue,) = tools.jira_issues()
        assert tools.jira.site.statuses[issue.status_id].name == "Closed"
        assert "confirmation-request" in _mail_kinds(tools)

        # -- the requester confirms: HR's call is confirmed, then closed by the bridge --------
        (request,) = [m for m in tools.sent_mails() if m["X-USM-Kind"] == "confirmation-request"]
        tools.mail_to_hr(
            f"Re: {request['Subject']}",
            "Yes, everything is there. Thank you!",
            in_reply_to=str(request["Message-ID"]),
        )
        settle(engine)
        by_unit = calls_by_unit(store)
        statuses = {unit: only(calls).status for unit, calls in by_unit.items()}
        assert statuses == {"hr": Status.CLOSED, "facilities": Status.CLOSED, "it": Status.CLOSED}
        hr = only(by_unit["hr"])
        assert hr.confirmed is not None and hr.closed is not None
        with store.begin(readonly=True) as tx:
            moves = [
                e.after["status"]
                for e in tx.list_audit(call_id=hr.id, kind="call_updated")
                if isinstance(e.after, dict) and "status" in e.after
            ]
            accepted = [e.call_id for e in tx.list_audit(kind="link_accepted")]
        assert moves[-2:] == ["confirmed", "closed"]
        # One acceptance per link, supplier first: IT's item, then Facilities' issue.
        assert accepted == [only(by_unit["it"]).id, only(by_unit["facilities"]).id]

        # -- closed means done: more cycles change nothing and write nothing ------------------
        assert_quiet(tools, engine)
        with store.begin(readonly=True) as tx:
            assert tx.list_dead_letters() == []
            assert tx.list_outbox(status="pending") == []
