"""The standard connector suite against the simulator, one line per shipped table."""

from __future__ import annotations

from usm_bridge.testing import connector_test_class

from usm_bridge_servicenow.testing import (
    ChangeRequestHarness,
    IncidentHarness,
    IncidentOAuthHarness,
    ProblemHarness,
    RequestedItemHarness,
    RequestHarness,
)

TestIncidentConnector = connector_test_class(IncidentHarness)
TestIncidentOAuthConnector = connector_test_class(IncidentOAuthHarness)
TestRequestConnector = connector_test_class(RequestHarness)
TestRequestedItemConnector = connector_test_class(RequestedItemHarness)
TestChangeRequestConnector = connector_test_class(ChangeRequestHarness)
TestProblemConnector = connector_test_class(ProblemHarness)
