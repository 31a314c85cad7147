"""The standard connector test suite and helpers for connector authors.

A connector author writes a :class:`ConnectorHarness` (build the connector against a test
backend, seed and change records there, inject faults, read records back) and turns the whole
suite on in one line of a test module::

    from usm_bridge.testing import connector_test_class

    TestMyConnector = connector_test_class(MyHarness)

Each test checks one promise of :mod:`usm_bridge.connector` and, when the connector breaks it,
fails with ``BROKEN PROMISE: <the promise>``.

The fixtures for connector tests (``usm_fake_clock``) come from the pytest plugin
:mod:`usm_bridge.testing.plugin`. Installing usm-bridge does not register it (a production
machine gets no pytest plugin); a connector's tests turn it on in one line of their
``pyproject.toml``::

    [tool.pytest.ini_options]
    addopts = "-p usm_bridge.testing.plugin"

(``-p`` rather than ``pytest_plugins`` in a ``conftest.py``: pytest accepts ``pytest_plugins``
only in the root conftest, and a connector's conftest is not the root one when a repository
runs several connectors' tests at once.)
"""

from __future__ import annotations

from .clock import FakeClock
from .harness import ConnectorHarness, Fault
from .suite import PROMISES, ConnectorSuite, broken_promise, connector_test_class

__all__ = [
    "PROMISES",
    "ConnectorHarness",
    "ConnectorSuite",
    "FakeClock",
    "Fault",
    "broken_promise",
    "connector_test_class",
]
