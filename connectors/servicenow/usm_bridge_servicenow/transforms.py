"""ServiceNow's mapping transforms: its timestamps, choice display values and reference
objects, as a plugin.

They travel with the ServiceNow connector (registered by :mod:`usm_bridge_servicenow.plugin`),
so the core keeps only tool-neutral transforms.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from usm_bridge.mapping.transforms import as_text, format_datetime, parse_datetime

__all__ = [
    "TRANSFORMS",
    "format_servicenow_datetime",
    "servicenow_datetime",
    "servicenow_display_code",
    "servicenow_display_label",
    "servicenow_display_value",
    "servicenow_value",
]


def servicenow_datetime(value: Any) -> datetime:
    """ServiceNow's ``2016-01-22 14:28:24``, always UTC when ``display_value=false``."""
    return parse_datetime(value, "%Y-%m-%d %H:%M:%S", "UTC")


def format_servicenow_datetime(value: Any) -> str:
    return format_datetime(value, "%Y-%m-%d %H:%M:%S", "UTC")


# -- ServiceNow ---------------------------------------------------------------------------------

_DISPLAY = re.compile(r"^\s*(-?\d+)\s*-\s*(.*?)\s*$")


def servicenow_display_code(value: Any) -> str:
    """The code of a ServiceNow choice display value: ``"2 - Medium"`` -> ``"2"``.

    Exports and ``display_value=true`` show choices as "code - label"; tables keyed by the
    code then serve both the API and the exports.
    """
    text = as_text(value).strip()
    match = _DISPLAY.match(text)
    if match is None:
        raise ValueError(f"{text[:60]!r} is not a 'code - label' display value")
    return match.group(1)


def servicenow_display_label(value: Any) -> str:
    """The label of a ServiceNow choice display value: ``"2 - Medium"`` -> ``"Medium"``."""
    text = as_text(value).strip()
    match = _DISPLAY.match(text)
    if match is None:
        raise ValueError(f"{text[:60]!r} is not a 'code - label' display value")
    return match.group(2)


def servicenow_value(value: Any) -> Any:
    """The stored value of a ServiceNow field however the instance was asked for it.

    A reference is ``{"link", "value"}`` (or a bare sys_id with
    ``sysparm_exclude_reference_link``); with ``display_value=all`` every field is
    ``{"display_value", "value"}``. This gives ``value`` in every case.
    """
    if isinstance(value, dict):
        if "value" not in value:
            raise ValueError("ServiceNow field object has no 'value'")
        return value["value"]
    return value


def servicenow_display_value(value: Any) -> Any:
    """The display value of a ``display_value=all`` field (``{"display_value", "value"}``)."""
    if isinstance(value, dict):
        if "display_value" not in value:
            raise ValueError("ServiceNow field object has no 'display_value'")
        return value["display_value"]
    return value


#: This distribution's transforms by the name mapping files use.
TRANSFORMS: dict[str, Callable[..., Any]] = {
    "servicenow_datetime": servicenow_datetime,
    "format_servicenow_datetime": format_servicenow_datetime,
    "servicenow_display_code": servicenow_display_code,
    "servicenow_display_label": servicenow_display_label,
    "servicenow_value": servicenow_value,
    "servicenow_display_value": servicenow_display_value,
}
