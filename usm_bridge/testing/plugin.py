"""pytest plugin of usm-bridge: fixtures for connector authors' tests.

Not registered by installing usm-bridge (no ``pytest11`` entry point: a production machine's
pytest runs stay untouched). A connector's tests turn it on in one line of their
``pyproject.toml``, ``addopts = "-p usm_bridge.testing.plugin"`` under
``[tool.pytest.ini_options]`` (see :mod:`usm_bridge.testing`); the standard suite itself is a
test class the connector declares. Kept light: it imports nothing heavy.
"""

from __future__ import annotations

import pytest

from .clock import FakeClock


@pytest.fixture
def usm_fake_clock() -> FakeClock:
    """A :class:`~usm_bridge.testing.FakeClock`: pass its ``sleep``, ``monotonic`` and ``now``
    to an :class:`~usm_bridge.http.HttpClient` so retries never really wait."""
    return FakeClock()
