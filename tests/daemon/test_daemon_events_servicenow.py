"""The whole ServiceNow path over loopback: the simulator runs the usm-bridge business rule
and posts signed events to a real ``usm-bridge daemon`` process that polls every 5 minutes;
a record's update and a journal comment reach the store through the cycles those events
woke, read back through the Table API. Refused deliveries are counted by reason beside the
accepted ones. With events switched off, polling (at a short interval here) still converges.

Every wait has a generous limit and asserts on what was stored, never on how fast."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from events_daemon import DaemonProcess

from usm_bridge.events.signature import SERVICENOW
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.store import Store

pytest.importorskip("usm_bridge_servicenow")
from usm_bridge_servicenow.simulator import ServiceNowSimulator

SECRET = "snow-event-secret-for-the-test-0123456789"
MAX_BODY = 2048
CONFIG = """\
[store]
url = "sqlite:///{db}"

[units.it]
title = "IT"

[instances.it-snow]
unit = "it"
kind = "servicenow"
mapping = "{mapping}"
interval = "{interval}"
{secret_line}

[instances.it-snow.settings]
instance_url = "{base_url}"
tables = ["incident"]
username = "{username}"
password = "{password}"

[daemon]
log_format = "json"
listen = "127.0.0.1:0"
event_debounce = "1s"
event_max_body = {max_body}
"""


@pytest.fixture
def sim() -> Iterator[ServiceNowSimulator]:
    with ServiceNowSimulator() as simulator:
        yield simulator


def start_daemon(
    tmp_path: Path, sim: ServiceNowSimulator, *, events: bool, interval: str
) -> DaemonProcess:
    config = tmp_path / "usm-bridge.toml"
    config.write_text(
        CONFIG.format(
            db=tmp_path / "bridge.db",
            mapping=SHIPPED_MAPPINGS_DIR / "servicenow-incident.yaml",
            interval=interval,
            secret_line='webhook_secret = "${SNOW_EVENT_SECRET}"' if events else "",
            base_url=sim.base_url,
            username=sim.username,
            password=sim.password,
            max_body=MAX_BODY,
        ),
        encoding="utf-8",
    )
    running = DaemonProcess(config, {**os.environ, "SNOW_EVENT_SECRET": SECRET})
    try:
        running.wait_for(lambda entries: any(e.get("event") == "listening" for e in entries))
    except AssertionError:
        running.stop()
        raise
    # The admin's step: the rule's endpoint property, and the secret beside it.
    sim.events.register(
        f"{running.url}/events/servicenow/it-snow", secret=SECRET, tables=["incident"]
    )
    return running


@pytest.fixture
def daemon(tmp_path: Path, sim: ServiceNowSimulator) -> Iterator[DaemonProcess]:
    running = start_daemon(tmp_path, sim, events=True, interval="5m")
    try:
        yield running
    finally:
        running.stop()
    assert SECRET not in "".join(running.lines)  # the secret is never logged


def stored(tmp_path: Path, sys_id: str) -> tuple[str, list[str]] | None:
    """The stored call's title and its comments' bodies."""
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    with Store.open(url) as store, store.begin(readonly=True) as tx:
        found = tx.find_call("it-snow", sys_id)
    if found is None:
        return None
    return found.call.title, [comment.body for comment in found.call.comments]


def wait_stored(tmp_path: Path, sys_id: str, title: str, comment: str | None = None) -> None:
    deadline = time.monotonic() + 30.0
    while True:
        got = stored(tmp_path, sys_id)
        if got is not None and got[0] == title and (comment is None or comment in got[1]):
            return
        assert time.monotonic() < deadline, f"stored {got!r}, waited for {title!r} {comment!r}"
        time.sleep(0.1)


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def counted(daemon: DaemonProcess) -> dict[str, float]:
    with urllib.request.urlopen(daemon.url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("usm_bridge_events_total{"):
            labels, value = line.rsplit(" ", 1)
            if 'instance="it-snow"' in labels or 'instance=""' in labels:
                outcome = labels.split('outcome="')[1].split('"')[0]
                found[outcome] = found.get(outcome, 0.0) + float(value)
    return found


def test_an_update_and_a_comment_reach_the_store_by_events_alone(
    sim: ServiceNowSimulator, daemon: DaemonProcess, tmp_path: Path
) -> None:
    sys_id = sim.insert("incident", {"short_description": "VPN drops every hour"})
    wait_stored(tmp_path, sys_id, "VPN drops every hour")
    # The next poll is 4.5 minutes or more away: only the rule's events can bring these in.
    sim.update("incident", sys_id, {"short_description": "VPN drops every hour, since Monday"})
    wait_stored(tmp_path, sys_id, "VPN drops every hour, since Monday")
    sim.update("incident", sys_id, {"comments": "Happens on the guest Wi-Fi too"})
    wait_stored(
        tmp_path, sys_id, "VPN drops every hour, since Monday", "Happens on the guest Wi-Fi too"
    )
    assert sim.events.wait_sent()
    sent = sim.events.deliveries
    assert [(d.delivery, d.status) for d in sent] == [
        (f"{sys_id}:{count}", 202) for count in range(3)
    ]

    # Refusals, each counted by reason; the accepted ones stay as they were.
    url = f"{daemon.url}/events/servicenow/it-snow"
    record = sim.get("incident", sys_id)
    assert record is not None
    fields = {"table": "incident"} | {k: record[k] for k in ("sys_id", "sys_mod_count")}
    body = json.dumps(fields | {"sys_updated_on": record["sys_updated_on"]}).encode()
    again = {SERVICENOW.header: SERVICENOW.sign(SECRET, body),
             "X-USM-Bridge-Delivery": f"{sys_id}:2"}  # fmt: skip
    big = b"{" + b" " * MAX_BODY + b"}"
    statuses = [
        post(url, body, again),  # the last change's id once more: a replay
        post(url, body, {**again, SERVICENOW.header: SERVICENOW.sign("guessed", body)}),
        post(url, body, {"X-USM-Bridge-Delivery": f"{sys_id}:9"}),  # unsigned
        post(url, big, {**again, SERVICENOW.header: SERVICENOW.sign(SECRET, big)}),
        post(f"{daemon.url}/events/servicenow/nobody", body, again),
    ]
    assert statuses == [200, 403, 401, 413, 404]
    assert counted(daemon) == {
        "accepted": 3.0,
        "replayed": 1.0,
        "bad_signature": 1.0,
        "unsigned": 1.0,
        "too_large": 1.0,
        "unknown_instance": 1.0,
    }


def test_with_events_off_polling_still_converges(sim: ServiceNowSimulator, tmp_path: Path) -> None:
    # No webhook_secret: the instance takes no events, and the rule's posts are refused.
    running = start_daemon(tmp_path, sim, events=False, interval="1s")
    try:
        sys_id = sim.insert("incident", {"short_description": "Badge reader dead"})
        wait_stored(tmp_path, sys_id, "Badge reader dead")
        sim.update("incident", sys_id, {"short_description": "Badge reader dead, door 3"})
        sim.update("incident", sys_id, {"comments": "Security is informed"})
        wait_stored(tmp_path, sys_id, "Badge reader dead, door 3", "Security is informed")
        assert sim.events.wait_sent()
        assert {d.status for d in sim.events.deliveries} == {404}
        assert len(sim.events.deliveries) == 3
        assert counted(running) == {"unknown_instance": 3.0}
    finally:
        running.stop()
