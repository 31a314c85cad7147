"""The ``usm_bridge`` entry point of this distribution: the ServiceNow connector and its mapping
transforms (ServiceNow timestamps, display values, reference objects)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from usm_bridge.connector import Connector
from usm_bridge.hookspecs import hookimpl

from .connector import ServiceNowConnector
from .transforms import TRANSFORMS

__all__ = [
    "usm_bridge_connector_types",
    "usm_bridge_mapping_transforms",
]


@hookimpl
def usm_bridge_connector_types() -> list[type[Connector]]:
    """The ServiceNow connector (``kind = "servicenow"``)."""
    return [ServiceNowConnector]


@hookimpl
def usm_bridge_mapping_transforms() -> dict[str, Callable[..., Any]]:
    """This tool's own transforms (a copy, so no caller can change the registry): mappings
    for the tool name them, and they are installed with the connector."""
    return dict(TRANSFORMS)
