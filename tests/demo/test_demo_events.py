"""`usm-bridge demo --events` end to end (issue #19): with every instance polled only every 5
minutes, the onboarding travels HR (mail) -> Facilities (Jira) -> IT (ServiceNow) and back by
the tools' events alone: Jira's signed webhook, ServiceNow's business rule, HR's watched
mailbox, each to the daemon's own receivers over loopback.

"Alone" is checked, not assumed: the first cycles run before the daemon starts, so its polls
are 5 minutes (less the jitter) away; the whole story takes far less, and the instance no event
concerns (IT's incidents) runs no cycle at all in the daemon, while each instance of the chain
runs the cycles its events woke."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from demo.demo_checks import chain_calls
from usm_bridge.config import load_config
from usm_bridge.demo import run_demo
from usm_bridge.sync.daemon import JITTER


def test_the_onboarding_moves_along_the_chain_and_back_by_events_alone(tmp_path: Path) -> None:
    screen = io.StringIO()
    result = run_demo(
        tmp_path / "demo-run",
        console=Console(file=screen, width=160, highlight=False),
        step_timeout=45,
        quiet_cycles=1,
        report=False,
        events=True,
    )
    text = " ".join(screen.getvalue().split())

    config = load_config(result.config_path)
    assert {i.interval for i in config.instances.values()} == {300.0}
    # Under the earliest moment a poll could come (the run began before the daemon did).
    assert result.seconds < 300.0 * (1.0 - JITTER), result.seconds

    assert result.statuses == {"hr": "closed", "facilities": "closed", "it": "closed"}
    assert result.quiet_writes == {"jira": 0, "servicenow": 0, "mail": 0}  # no echo loop
    hr, facilities, laptop = chain_calls(result.config_path)
    assert hr.confirmed is not None and facilities.confirmed is not None
    assert laptop.confirmed is not None

    moved = result.events
    assert moved is not None
    # Each tool's events were taken and each woke its instance; none polled.
    assert moved.accepted["facilities-jira"] > 0 and moved.accepted["it-requests"] > 0
    assert moved.wakes["hr-mail"] > 0
    assert moved.cycles["it-incidents"] == 0
    assert all(moved.cycles[name] > 0 for name in ("hr-mail", "facilities-jira", "it-requests"))
    assert "moved by" in text and "polls 5 minutes apart" in text
    # The shared secret is in a private file, never on the screen.
    secret_file = result.config_path.parent / "secrets" / "webhook-secret"
    assert secret_file.stat().st_mode & 0o077 == 0
    assert secret_file.read_text(encoding="utf-8").strip() not in screen.getvalue()
