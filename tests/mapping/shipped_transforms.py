"""Every transform the shipped mappings name: the core's tool-neutral ones and each connector
distribution's own, and the plugins that contribute the latter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import usm_bridge_email.plugin
import usm_bridge_jira.plugin
import usm_bridge_servicenow.plugin
from usm_bridge_email.transforms import TRANSFORMS as EMAIL
from usm_bridge_jira.transforms import TRANSFORMS as JIRA
from usm_bridge_servicenow.transforms import TRANSFORMS as SERVICENOW

from usm_bridge.mapping.transforms import TRANSFORMS as CORE

__all__ = ["CORE", "TOOL_PLUGINS", "TRANSFORMS"]

TRANSFORMS: dict[str, Callable[..., Any]] = {**CORE, **JIRA, **SERVICENOW, **EMAIL}
#: The connector plugins, each contributing its tool's transforms (and its connector).
TOOL_PLUGINS: tuple[object, ...] = (
    usm_bridge_jira.plugin,
    usm_bridge_servicenow.plugin,
    usm_bridge_email.plugin,
)
