"""Issue 14, "a trace of every call", on the end-to-end chain: HR (mail) -> Facilities (Jira)
-> IT (ServiceNow), with a third route that never fires for the onboarding.

``usm-bridge trace`` runs through the real CLI against the engine's store, by each unit's tool
reference and by canonical id: every reference shows the same chain, every configured route
with its verdict (the one that did not fire names its failing condition), the outbox writes,
a dead letter and the audit events. The sync's own log lines name the tool references.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from e2e.e2e_env import SNOW_TABLE, Tools, calls_by_unit, only, open_engine, settle
from usm_bridge.cli import cli
from usm_bridge.store import Store

#: A route from HR that the onboarding (a service request) must not take.
INCIDENTS = {"name": "hr-incidents-to-it", "from": "hr", "to": "it",
             "when": {"call_type": "incident"}}  # fmt: skip
ROUTES = ["hr-to-facilities", "facilities-to-it", "hr-incidents-to-it"]
#: The keys README.md documents for the JSON form.
TOP_KEYS = {"reference", "call_id", "chain", "audit"}
CALL_KEYS = {
    "call_id", "depth", "unit", "instance", "reference", "url", "via_route", "upstream_call_id",
    "call_type", "process", "status", "waiting_on", "waiting_process", "title", "forks",
    "records", "routes", "outbox", "dead_letters",
}  # fmt: skip
ROUTE_KEYS = {"route", "from", "to", "outcome", "blocker", "reason", "supplier_call_id",
              "conditions"}  # fmt: skip
OUTBOX_KEYS = {"id", "target_instance", "operation", "state", "attempts", "last_error",
               "created_at", "updated_at"}  # fmt: skip
LETTER_KEYS = {"id", "instance", "stage", "status", "attempts", "reason", "resolution",
               "created_at", "last_seen"}  # fmt: skip
EVENT_KEYS = {"id", "at", "call_id", "unit", "instance", "reference", "kind", "actor", "before",
              "after", "detail"}  # fmt: skip


def _trace(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["trace", *args, "-c", str(config)], catch_exceptions=False)


def _trace_json(config: Path, reference: str) -> dict[str, Any]:
    result = _trace(config, reference, "--format", "json")
    assert result.exit_code == 0, result.output
    found: dict[str, Any] = json.loads(result.output)
    return found


def _routes(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {route["route"]: route for route in entry["routes"]}


def test_trace_shows_the_whole_chain_every_route_and_why_by_any_reference(
    tools: Tools, store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "usm-bridge.toml"
    caplog.set_level(logging.INFO, logger="usm_bridge")
    with open_engine(tools, config, store_url, more_routes=[INCIDENTS]) as engine:
        message_id = tools.mail_to_hr()
        settle(engine)
        by_unit = calls_by_unit(engine.store)
        hr, fac, it = only(by_unit["hr"]), only(by_unit["facilities"]), only(by_unit["it"])
        # A record IT's mapping cannot read: a dead letter of the IT call's record.
        (item,) = tools.snow_items()
        tools.snow.update(SNOW_TABLE, item["sys_id"], {"state": "99"}, user="beth.anglin")
        settle(engine, rounds=1)

    # -- the sync's log lines name the tool references next to the ids -------------------------
    messages = [record.getMessage() for record in caplog.records]
    opened = [m for m in messages if "opened supplier call" in m]
    assert any(f"for {hr.id} (HR-1 at hr-mail)" in m for m in opened), opened
    # Opened in the same unit of work as its own supplier: it has no tool record yet, and says so.
    assert any(f"call {it.id} (no tool record yet) for {fac.id} (no tool record yet)" in m
               for m in opened), opened  # fmt: skip
    lettered = [m for m in messages if "dead-lettered" in m]
    assert any(f"{item['sys_id']} ({item['number']} at it-snow)" in m for m in lettered), lettered

    jira_key, snow_number = tools.jira_issues()[0].key, item["number"]
    references = {message_id: hr.id, "HR-1": hr.id, jira_key: fac.id, snow_number: it.id,
                  fac.id: fac.id, message_id.strip("<>"): hr.id}  # fmt: skip
    traces = {ref: _trace_json(config, ref) for ref in references}

    for ref, traced in traces.items():
        assert set(traced) == TOP_KEYS and traced["reference"] == ref
        assert traced["call_id"] == references[ref]
        # -- the same chain, whichever reference: each call with its unit, tool and link -------
        chain = traced["chain"]
        assert [c["call_id"] for c in chain] == [hr.id, fac.id, it.id]
        assert [(c["unit"], c["instance"], c["reference"], c["depth"]) for c in chain] == [
            ("hr", "hr-mail", "HR-1", 0),
            ("facilities", "facilities-jira", jira_key, 1),
            ("it", "it-snow", snow_number, 2),
        ]
        assert [c["via_route"] for c in chain] == [None, "hr-to-facilities", "facilities-to-it"]
        assert jira_key in chain[1]["url"] and item["sys_id"] in chain[2]["url"]
        assert all(set(c) == CALL_KEYS for c in chain)
        # -- every configured route, evaluated for every call, with its reason ----------------
        for entry in chain:
            assert [r["route"] for r in entry["routes"]] == ROUTES
            assert all(set(r) == ROUTE_KEYS for r in entry["routes"])
        at_hr, at_fac, at_it = (_routes(entry) for entry in chain)
        fired = at_hr["hr-to-facilities"]
        assert (fired["outcome"], fired["supplier_call_id"]) == ("fired", fac.id)
        incidents = at_hr["hr-incidents-to-it"]
        assert (incidents["outcome"], incidents["blocker"]) == ("not fired", "condition")
        assert incidents["conditions"] == [{"key": "call_type", "expected": "incident",
                                            "actual": "service_request", "found": True,
                                            "holds": False}]  # fmt: skip
        assert incidents["reason"] == "call_type is 'service_request', the route wants 'incident'"
        assert at_hr["facilities-to-it"]["blocker"] == "other_unit"
        assert (at_fac["facilities-to-it"]["outcome"],
                at_fac["facilities-to-it"]["supplier_call_id"]) == ("fired", it.id)  # fmt: skip
        assert at_fac["hr-to-facilities"]["reason"] == (
            "the route starts at unit 'hr'; this call is at 'facilities'"
        )
        assert {r["outcome"] for r in at_it.values()} == {"not fired"}
        # -- the outbox: each supplier's create was sent into its tool -------------------------
        creates = [(c["unit"], o["operation"], o["target_instance"], o["state"])
                   for c in chain for o in c["outbox"] if o["operation"] == "create"]  # fmt: skip
        assert creates == [("facilities", "create", "facilities-jira", "sent"),
                           ("it", "create", "it-snow", "sent")]  # fmt: skip
        assert all(set(o) == OUTBOX_KEYS for c in chain for o in c["outbox"])
        # -- the dead letter of IT's record, on IT's call ---------------------------------------
        (letter,) = chain[2]["dead_letters"]
        assert set(letter) == LETTER_KEYS
        assert (letter["instance"], letter["stage"], letter["status"]) == ("it-snow", "map", "open")
        assert "99" in letter["reason"]
        assert chain[0]["dead_letters"] == chain[1]["dead_letters"] == []
        # -- audit events of all three calls, in time order, each naming its unit and call -----
        events = traced["audit"]
        assert all(set(e) == EVENT_KEYS for e in events)
        assert [(e["at"], e["id"]) for e in events] == sorted((e["at"], e["id"]) for e in events)
        assert {e["unit"] for e in events} == {"hr", "facilities", "it"}
        naming = {e["call_id"]: (e["unit"], e["reference"]) for e in events}
        assert naming == {hr.id: ("hr", "HR-1"), fac.id: ("facilities", jira_key),
                          it.id: ("it", snow_number)}  # fmt: skip
        created = [(e["unit"], e["actor"]) for e in events if e["kind"] == "call_created"]
        assert created == [("hr", "bridge"), ("facilities", "router"), ("it", "router")]
        linked = [e["detail"]["route"] for e in events if e["kind"] == "chain_linked"]
        assert linked == ["hr-to-facilities", "facilities-to-it"]

    # Apart from which call was asked for, every reference shows the very same trace.
    bodies = {json.dumps({**t, "reference": None, "call_id": None}) for t in traces.values()}
    assert len(bodies) == 1

    # -- a dismissed letter stays in the trace, with who dismissed it and why ------------------
    with Store.open(store_url) as store, store.begin() as tx:
        tx.dismiss_dead_letter(letter["id"], reason="state 99 is a test value", actor="ann")
    (dismissed,) = _trace_json(config, snow_number)["chain"][2]["dead_letters"]
    assert dismissed["status"] == "dismissed" and "state 99 is a test value" in str(
        dismissed["resolution"]
    )

    # -- the text form shows the same, for people --------------------------------------------
    text = _trace(config, jira_key)
    assert text.exit_code == 0, text.output
    for expected in (*ROUTES, "HR-1", jira_key, snow_number, "not fired", "fired",
                     "call_type is 'service_request', the route wants 'incident'",
                     "dead letters (1)", "outbox", "audit events"):  # fmt: skip
        assert expected in text.output, expected
