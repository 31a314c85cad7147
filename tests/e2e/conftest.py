"""Fixtures of the end-to-end tests: the three tools running, and the engine on them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.e2e_env import Tools, open_engine, start_tools
from usm_bridge.sync.engine import SyncEngine


@pytest.fixture
def tools(tmp_path: Path) -> Iterator[Tools]:
    """Jira, ServiceNow and HR's mailbox with its SMTP relay, on loopback; stopped after."""
    started = start_tools(tmp_path)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def engine(tools: Tools, store_url: str, tmp_path: Path) -> Iterator[SyncEngine]:
    """The real engine over ``tools`` on each back end, from a config in ``tmp_path``."""
    with open_engine(tools, tmp_path / "usm-bridge.toml", store_url) as built:
        yield built
