"""The plugin module the ``usm_bridge`` entry point names: the Jira connector and its mapping
transforms (Jira timestamps, ADF)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from usm_bridge.connector import Connector
from usm_bridge.hookspecs import hookimpl

from .connector import JiraConnector
from .transforms import TRANSFORMS


@hookimpl
def usm_bridge_connector_types() -> list[type[Connector]]:
    """The Jira connector (kind ``jira``), for Cloud and Data Center alike."""
    return [JiraConnector]


@hookimpl
def usm_bridge_mapping_transforms() -> dict[str, Callable[..., Any]]:
    """This tool's own transforms (a copy, so no caller can change the registry): mappings
    for the tool name them, and they are installed with the connector."""
    return dict(TRANSFORMS)
