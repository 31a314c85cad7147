"""usm-bridge connector for Jira Cloud and Jira Data Center, with a local Jira simulator.

The connector is registered through the ``usm_bridge`` entry point group (see
:mod:`usm_bridge_jira.plugin`); :mod:`usm_bridge_jira.simulator` is a Jira stand-in on loopback
for tests, demos and trying a mapping.
"""

from __future__ import annotations

from .connector import JiraConnector, JiraSettings, field_alias, parse_jira_time

__version__ = "0.1.0"

__all__ = ["JiraConnector", "JiraSettings", "__version__", "field_alias", "parse_jira_time"]
