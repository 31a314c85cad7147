"""The plugin module the ``usm_bridge`` entry point names: it contributes the Jira connector."""

from __future__ import annotations

from usm_bridge.connector import Connector
from usm_bridge.hookspecs import hookimpl

from .connector import JiraConnector


@hookimpl
def usm_bridge_connector_types() -> list[type[Connector]]:
    """The Jira connector (kind ``jira``), for Cloud and Data Center alike."""
    return [JiraConnector]
