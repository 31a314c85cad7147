"""The e-mail connector's plugin: the connector type, its mapping transforms (mail dates and
addresses), and the dead-letter signal for its records.

The connector contract has no "reject this record" result, and a mailbox has messages that must
never become calls (loops, stray bounces, bulk mail, unreadable mail). The connector yields those
as records carrying ``data["dead_letter"] = {"reason": ...}``; this plugin answers the mapping hook
for exactly those records by raising :class:`~usm_bridge.errors.MappingError` with the reason,
which the engine stores as a dead letter with the raw record. Every other record is left to the
mapping file (the hook returns ``None``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from usm_bridge.connector import Connector, RawRecord
from usm_bridge.errors import MappingError
from usm_bridge.hookspecs import hookimpl
from usm_bridge.mapping import Mapping, MappingContext
from usm_bridge.model import Call

from .connector import DEAD_LETTER_KEY, EmailConnector
from .transforms import TRANSFORMS

__all__ = [
    "dead_letter_reason",
    "usm_bridge_connector_types",
    "usm_bridge_map_inbound",
    "usm_bridge_mapping_transforms",
]


def dead_letter_reason(record: RawRecord) -> str | None:
    """Why the connector asks for ``record`` to be dead-lettered, or ``None``."""
    flag = record.data.get(DEAD_LETTER_KEY)
    if isinstance(flag, dict):
        reason = flag.get("reason")
        return str(reason) if reason else "rejected by the e-mail connector"
    return None


@hookimpl
def usm_bridge_connector_types() -> list[type[Connector]]:
    """The ``email`` connector."""
    return [EmailConnector]


@hookimpl(tryfirst=True)
def usm_bridge_map_inbound(
    mapping: Mapping, record: RawRecord, context: MappingContext
) -> Call | None:
    """Dead-letter what the e-mail connector refused; leave everything else to the mapping."""
    reason = dead_letter_reason(record)
    if reason is not None:
        raise MappingError(f"e-mail connector refused the message: {reason}")
    return None


@hookimpl
def usm_bridge_mapping_transforms() -> dict[str, Callable[..., Any]]:
    """This tool's own transforms (a copy, so no caller can change the registry): mappings
    for the tool name them, and they are installed with the connector."""
    return dict(TRANSFORMS)
