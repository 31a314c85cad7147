"""The ``usm_bridge`` entry point of this distribution: contributes the ServiceNow connector."""

from __future__ import annotations

from usm_bridge.connector import Connector
from usm_bridge.hookspecs import hookimpl

from .connector import ServiceNowConnector

__all__ = ["usm_bridge_connector_types"]


@hookimpl
def usm_bridge_connector_types() -> list[type[Connector]]:
    """The ServiceNow connector (``kind = "servicenow"``)."""
    return [ServiceNowConnector]
