"""The whole path over loopback: the Jira simulator fires signed webhooks to a real
``usm-bridge daemon`` process polling every 5 minutes; a change reaches the store through the
cycle the delivery woke, read back through Jira's API. With the deliveries dropped, the next
poll (driven here with ``sync --once``, not waited for) still catches the change.

Every wait has a generous limit and asserts on what was stored, never on how fast."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from events_daemon import DaemonProcess

from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.store import Store

pytest.importorskip("usm_bridge_jira")
from usm_bridge_jira.simulator import JiraSimulator

SECRET = "webhook-secret-for-the-test-0123456789"
CONFIG = """\
[store]
url = "sqlite:///{db}"

[units.facilities]
title = "Facilities"

[instances.fac]
unit = "facilities"
kind = "jira"
mapping = "{mapping}"
interval = "5m"
webhook_secret = "${{JIRA_WEBHOOK_SECRET}}"

[instances.fac.settings]
base_url = "{base_url}"
deployment = "cloud"
email = "{email}"
api_token = "{api_token}"
projects = ["IT"]

[daemon]
log_format = "json"
listen = "127.0.0.1:0"
event_debounce = "1s"
"""


@pytest.fixture
def sim() -> Iterator[JiraSimulator]:
    with JiraSimulator("cloud") as simulator:
        yield simulator


@pytest.fixture
def config(tmp_path: Path, sim: JiraSimulator) -> Path:
    path = tmp_path / "usm-bridge.toml"
    creds = sim.credentials()
    path.write_text(
        CONFIG.format(
            db=tmp_path / "bridge.db",
            mapping=SHIPPED_MAPPINGS_DIR / "jira-service-management.yaml",
            base_url=sim.base_url,
            email=creds["email"],
            api_token=creds["api_token"],
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def daemon(config: Path, sim: JiraSimulator) -> Iterator[DaemonProcess]:
    env = {**os.environ, "JIRA_WEBHOOK_SECRET": SECRET}
    running = DaemonProcess(config, env)
    try:
        running.wait_for(lambda entries: any(e.get("event") == "listening" for e in entries))
        sim.site.webhooks.register(
            f"{running.url}/events/jira/fac", secret=SECRET, name="usm-bridge"
        )
        yield running
    finally:
        running.stop()
    assert SECRET not in "".join(running.lines)  # the secret is never logged


def stored_title(config: Path, issue_id: int) -> str | None:
    url = f"sqlite:///{config.parent / 'bridge.db'}"
    with Store.open(url) as store, store.begin(readonly=True) as tx:
        found = tx.find_call("fac", str(issue_id))
    return None if found is None else found.call.title


def wait_stored(config: Path, issue_id: int, title: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := stored_title(config, issue_id)) != title:
        assert time.monotonic() < deadline, f"stored {got!r}, waited for {title!r}"
        time.sleep(0.2)


def test_a_change_in_jira_reaches_the_store_by_its_webhook(
    sim: JiraSimulator, daemon: DaemonProcess, config: Path
) -> None:
    issue = sim.site.add_issue("Broken chair in room 4", project="IT")
    wait_stored(config, issue.id, "Broken chair in room 4")
    cycles = daemon.cycles()
    # The next poll is 4.5 minutes or more away: only the webhook can bring this edit in.
    sim.site.touch(issue, "Broken chair in room 4, and the desk")
    wait_stored(config, issue.id, "Broken chair in room 4, and the desk")
    sim.site.add_comment(issue, "The desk too, please")
    daemon.wait_for(lambda entries: sum(e.get("event") == "cycle" for e in entries) > cycles + 1)
    assert sim.site.webhooks.wait_sent()
    sent = sim.site.webhooks.deliveries
    assert [d.event for d in sent] == [
        "jira:issue_created",
        "jira:issue_updated",
        "comment_created",
    ]
    assert {d.status for d in sent} == {202}
    with urllib.request.urlopen(daemon.url + "/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    assert 'usm_bridge_events_total{instance="fac",outcome="accepted"} 3.0' in metrics


def test_with_the_deliveries_dropped_the_next_poll_still_catches_the_change(
    sim: JiraSimulator, daemon: DaemonProcess, config: Path
) -> None:
    issue = sim.site.add_issue("Lamp flickers", project="IT")
    wait_stored(config, issue.id, "Lamp flickers")
    sim.site.webhooks.dropping = True
    sim.site.touch(issue, "Lamp flickers and buzzes")
    assert sim.site.webhooks.wait_sent()
    assert sim.site.webhooks.deliveries[-1].error == "dropped"
    time.sleep(3)  # longer than the debounce and a cycle: nothing woke the daemon
    assert stored_title(config, issue.id) == "Lamp flickers"
    # The poll, driven now instead of in 5 minutes: beside the idle daemon, as an admin would.
    result = subprocess.run(
        [sys.executable, "-m", "usm_bridge", "sync", "--once", "-c", str(config)],
        env={**os.environ, "JIRA_WEBHOOK_SECRET": SECRET}, cwd=config.parent,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert stored_title(config, issue.id) == "Lamp flickers and buzzes"
