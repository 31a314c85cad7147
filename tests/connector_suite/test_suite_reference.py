"""The standard connector suite, turned on for the reference connector in one line."""

from __future__ import annotations

from connector_suite.reference_connector import ReferenceHarness
from usm_bridge.testing import connector_test_class

TestReferenceConnector = connector_test_class(ReferenceHarness)
