"""Fixtures of the sync tests: a bridge of three units on memory tools, on both back ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.memory_tool import Bridge, make_config, running_bridge
from usm_bridge.store import Store


@pytest.fixture
def bridge(store: Store, tmp_path: Path) -> Iterator[Bridge]:
    with running_bridge(store, make_config(tmp_path)) as built:
        yield built
