"""The standard connector suite against the Jira simulator, Cloud and Data Center."""

from __future__ import annotations

from jira_harness import JiraDataCenterHarness, JiraHarness

from usm_bridge.testing import connector_test_class

TestJiraCloudConnector = connector_test_class(JiraHarness, name="TestJiraCloudConnector")
TestJiraDataCenterConnector = connector_test_class(JiraDataCenterHarness)
