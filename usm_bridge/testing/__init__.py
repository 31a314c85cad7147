"""The standard connector test suite and helpers for connector authors.

A connector author writes a :class:`ConnectorHarness` (build the connector against a test
backend, seed and change records there, inject faults, read records back) and turns the whole
suite on in one line of a test module::

    from usm_bridge.testing import connector_test_class

    TestMyConnector = connector_test_class(MyHarness)

Each test checks one promise of :mod:`usm_bridge.connector` and, when the connector breaks it,
fails with ``BROKEN PROMISE: <the promise>``. The package is also a pytest plugin
(:mod:`usm_bridge.testing.plugin`, registered through the ``pytest11`` entry point) that provides
the ``usm_fake_clock`` fixture.
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
