"""The simulator's usm-bridge business rule: signed events to registered targets after each
insert and update of a watched table (a comment included), from a thread of their own, a
failure logged and never retried. A small receiver on loopback records what arrives."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from usm_bridge.events import servicenow as receiver_side

from usm_bridge_servicenow.simulator import ServiceNowSimulator
from usm_bridge_servicenow.simulator import events as rule

SECRET = "rule-secret-0123456789"


@dataclass
class Arrived:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records every POST (header names in lower case); answers ``status``; holds each
    answer while ``hold`` is clear."""

    status: int = 202
    arrived: list[Arrived] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    got: threading.Condition = field(default_factory=threading.Condition)
    url: str = ""

    def wait_for(self, count: int) -> None:
        with self.got:
            assert self.got.wait_for(lambda: len(self.arrived) >= count, 10), self.arrived


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.hold.set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with found.got:
                found.arrived.append(Arrived({k.lower(): v for k, v in self.headers.items()}, body))
                found.got.notify_all()
            found.hold.wait(10)
            self.send_response(found.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.url = f"http://127.0.0.1:{server.server_address[1]}/events/servicenow/it-snow"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield found
    finally:
        found.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def sim() -> Iterator[ServiceNowSimulator]:
    with ServiceNowSimulator() as simulator:
        yield simulator


def test_the_rule_is_what_the_bridge_receives() -> None:
    """The simulator's rule is written apart from the receiver: the names must agree."""
    assert rule.BODY_FIELDS == receiver_side.BODY_FIELDS
    assert rule.SIGNATURE_HEADER == receiver_side.SIGNATURE_HEADER
    assert rule.DELIVERY_HEADER == receiver_side.DELIVERY_HEADER


def test_insert_update_and_comment_each_post_one_signed_hint(
    sim: ServiceNowSimulator, receiver: Receiver
) -> None:
    sim.events.register(receiver.url, secret=SECRET, tables=["incident"])
    sys_id = sim.insert("incident", {"short_description": "Printer on fire"})
    sim.update("incident", sys_id, {"short_description": "Printer on fire, 2nd floor"})
    sim.update("incident", sys_id, {"comments": "The fire brigade is on its way"})
    assert sim.events.wait_sent()
    receiver.wait_for(3)
    assert [d.status for d in sim.events.deliveries] == [202, 202, 202]
    record = sim.get("incident", sys_id)
    assert record is not None
    for count, arrived in enumerate(receiver.arrived):
        body = json.loads(arrived.body)
        assert list(body) == list(rule.BODY_FIELDS)  # which record and when; never its data
        assert body["table"] == "incident" and body["sys_id"] == sys_id
        assert body["sys_mod_count"] == str(count)
        assert arrived.headers[rule.DELIVERY_HEADER.lower()] == f"{sys_id}:{count}"
        mac = base64.b64encode(hmac.new(SECRET.encode(), arrived.body, hashlib.sha256).digest())
        assert arrived.headers[rule.SIGNATURE_HEADER.lower()] == "sha256=" + mac.decode()
        assert b"fire" not in arrived.body
    assert json.loads(receiver.arrived[-1].body)["sys_updated_on"] == record["sys_updated_on"]


def test_a_change_through_the_table_api_fires_too(
    sim: ServiceNowSimulator, receiver: Receiver
) -> None:
    sim.events.register(receiver.url, secret=SECRET)
    auth = (sim.username, sim.password)
    url = f"{sim.base_url}/api/now/table/sc_req_item"
    made = requests.post(url, json={"short_description": "A desk"}, auth=auth, timeout=10)
    sys_id = made.json()["result"]["sys_id"]
    requests.patch(f"{url}/{sys_id}", json={"work_notes": "Ordered"}, auth=auth, timeout=10)
    assert sim.events.wait_sent()
    assert [d.delivery for d in sim.events.deliveries] == [f"{sys_id}:0", f"{sys_id}:1"]


def test_what_the_rule_does_not_watch_fires_nothing(
    sim: ServiceNowSimulator, receiver: Receiver
) -> None:
    sim.events.register(receiver.url, secret=SECRET, tables=["incident"])
    sim.insert("problem", {"short_description": "Not a synced table here"})
    sys_id = sim.insert("incident", {"short_description": "Watched"}, rules=False)  # no rules
    sim.update("incident", sys_id, {"short_description": "Watched"})  # changes nothing
    sim.insert("sys_user", {"user_name": "someone"})
    assert sim.events.wait_sent()
    assert sim.events.deliveries == [] and receiver.arrived == []


def test_a_slow_receiver_never_holds_up_the_api(
    sim: ServiceNowSimulator, receiver: Receiver
) -> None:
    receiver.hold.clear()  # the receiver takes the first delivery and does not answer
    sim.events.register(receiver.url, secret=SECRET)
    sys_id = sim.insert("incident", {"short_description": "One"})
    receiver.wait_for(1)
    auth = (sim.username, sim.password)
    url = f"{sim.base_url}/api/now/table/incident/{sys_id}"
    # Served while the delivery thread is still waiting on the receiver.
    answer = requests.patch(url, json={"comments": "Two"}, auth=auth, timeout=10)
    assert answer.status_code == 200 and not sim.events.wait_sent(0.05)
    receiver.hold.set()
    assert sim.events.wait_sent()
    assert [d.status for d in sim.events.deliveries] == [202, 202]


def test_a_failed_delivery_is_logged_and_not_retried(
    sim: ServiceNowSimulator, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 500
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}/events/servicenow/x"
    sim.events.register(receiver.url, secret=SECRET)
    sim.events.register(nowhere, secret=SECRET)
    caplog.set_level(logging.WARNING, logger=rule.__name__)
    sys_id = sim.insert("incident", {"short_description": "Nobody takes this"})
    assert sim.events.wait_sent()
    got = [(d.target, d.status, d.error) for d in sim.events.deliveries]
    assert got[0] == (1, 500, None)
    assert got[1][:2] == (2, None) and "Connection refused" in str(got[1][2])
    assert len(got) == 2 and len(receiver.arrived) == 1  # one attempt each
    assert caplog.text.count(f"event {sys_id}:0 to ") == 2
    assert SECRET not in caplog.text


def test_dropping_loses_deliveries_and_registration_is_checked(
    sim: ServiceNowSimulator, receiver: Receiver
) -> None:
    with pytest.raises(ValueError, match="http"):
        sim.events.register("ftp://example/x", secret=SECRET)
    with pytest.raises(ValueError, match="secret"):
        sim.events.register(receiver.url, secret="")
    target = sim.events.register(receiver.url, secret=SECRET)
    sim.events.dropping = True
    sim.insert("incident", {"short_description": "Lost"})
    assert sim.events.wait_sent()
    assert [d.error for d in sim.events.deliveries] == ["dropped"] and receiver.arrived == []
    sim.events.dropping = False
    sim.events.unregister(target)
    sim.insert("incident", {"short_description": "Nobody listens"})
    assert sim.events.wait_sent() and len(sim.events.deliveries) == 1
