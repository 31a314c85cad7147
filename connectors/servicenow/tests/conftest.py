"""Fixtures of the ServiceNow tests: a fresh simulator and the connector signed in to it."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from usm_bridge_servicenow.connector import ServiceNowConnector
from usm_bridge_servicenow.testing import IncidentHarness, local_https


@pytest.fixture
def harness_class() -> type[IncidentHarness]:
    """The harness ``harness`` makes; a module overrides this for other settings."""
    return IncidentHarness


@pytest.fixture
def harness(harness_class: type[IncidentHarness]) -> Iterator[IncidentHarness]:
    """A simulator on loopback with the harness's settings, stopped afterwards."""
    harness = harness_class()
    yield harness
    harness.close()


@pytest.fixture
def connector(harness: IncidentHarness) -> Iterator[ServiceNowConnector]:
    """The connector on ``harness``'s simulator, closed afterwards."""
    connector = harness.make_connector()
    yield connector
    connector.close()


@pytest.fixture
def tls_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server context for 127.0.0.1 from a local CA that ``requests`` (so pysnc) trusts:
    pysnc refuses plain ``http://`` instance URLs."""
    context, bundle = local_https(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    return context
