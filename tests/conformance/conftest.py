"""Fixtures of the conformance tests: the enterprise with known defects, on both back ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conformance_enterprise import Enterprise, make_enterprise

from usm_bridge.conformance.context import ReportContext


@pytest.fixture
def enterprise(store_url: str, tmp_path: Path) -> Iterator[Enterprise]:
    built = make_enterprise(store_url, tmp_path)
    try:
        yield built
    finally:
        built.store.close()


@pytest.fixture
def context(enterprise: Enterprise) -> ReportContext:
    return enterprise.context()


@pytest.fixture
def sqlite_enterprise(tmp_path: Path) -> Enterprise:
    """The enterprise on SQLite with its store closed, for commands that open it themselves."""
    built = make_enterprise(f"sqlite:///{tmp_path / 'store.db'}", tmp_path)
    built.store.close()
    return built
