"""pytest plugin of usm-bridge (entry point ``pytest11``), loaded in every pytest run.

It adds fixtures for connector authors; the standard suite itself is turned on explicitly, one
line per connector (see :mod:`usm_bridge.testing`), so that installing usm-bridge never adds
tests to a project that did not ask for them. Kept light: it imports nothing heavy.
"""

from __future__ import annotations

import pytest

from .clock import FakeClock


@pytest.fixture
def usm_fake_clock() -> FakeClock:
    """A :class:`~usm_bridge.testing.FakeClock`: pass its ``sleep``, ``monotonic`` and ``now``
    to an :class:`~usm_bridge.http.HttpClient` so retries never really wait."""
    return FakeClock()
