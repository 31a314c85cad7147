"""Log lines name a call's tool reference next to its canonical id."""

from __future__ import annotations

import logging

import pytest

from sync.memory_tool import Bridge
from usm_bridge.errors import PermanentRemoteError


def test_outbox_log_lines_name_the_calls_tool_reference(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="usm_bridge")
    # HR's tool refuses the bridge's update of its ticket (the call now waits on Facilities).
    bridge.connectors["hr-tool"].faults["update"] = [
        PermanentRemoteError("refused", status=400, remote_message="Read-only ticket.")
    ]
    ticket = bridge.tools["hr-tool"].add(title="Desk for Ann", kind="request")
    bridge.settle()
    with bridge.store.begin(readonly=True) as tx:
        (stored,) = tx.list_calls(unit="hr")
    lines = [r.getMessage() for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert f"push update of {stored.id} ({ticket} at hr-tool) to hr-tool dead-lettered" in (
        " ".join(lines)
    ), lines
