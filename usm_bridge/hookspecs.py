"""Every hook a usm-bridge plugin can implement: this module is their reference documentation.

A plugin is a module or object with functions marked ``@hookimpl`` and named like the specs
below. Plugins are found through the entry point group ``usm_bridge`` (the built-in ones too).
Callers never use ``pm.hook`` directly: they go through :class:`usm_bridge.plugins.PluginHost`,
whose methods are typed.

Hooks marked *first result* stop at the first plugin that returns something other than
``None``; later-registered plugins are asked first, so a third-party plugin can override a
built-in one by answering where the built-in would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pydantic import JsonValue

    from .conformance.api import ConformanceCheck, ReportRenderer
    from .connector import Connector, RawRecord, RemoteDraft
    from .mapping import Mapping, MappingContext
    from .model import Call, CallType

PROJECT = "usm_bridge"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "hookimpl", "hookspec"]


# ---------------------------------------------------------------------------------------------
# Connectors
# ---------------------------------------------------------------------------------------------


@hookspec
def usm_bridge_connector_types() -> list[type[Connector]]:
    """Contribute connector classes.

    :returns: connector classes; each class's ``kind`` is the name config files use. Two
        plugins contributing the same ``kind`` is an error reported at start-up.
    """
    raise NotImplementedError  # pragma: no cover - specification only


# ---------------------------------------------------------------------------------------------
# Mapping
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def usm_bridge_map_inbound(
    mapping: Mapping, record: RawRecord, context: MappingContext
) -> Call | None:
    """Turn a tool's raw record into a canonical call. Stops at first non-None result.

    The built-in implementation applies the declarative mapping file. A unit whose data is too
    exotic for a file implements this hook and answers for its own mapping (check
    ``mapping.name`` or ``context.instance``), returning ``None`` for everything else.

    :param mapping: the mapping configured for the connector instance.
    :param record: the raw record as the connector yielded it.
    :param context: unit, instance, transforms, priority matrix and classifier to use.
    :returns: the canonical call, or ``None`` to let another plugin answer.
    :raises usm_bridge.errors.MappingError: the record cannot be mapped (it is dead-lettered).
    """
    raise NotImplementedError  # pragma: no cover


@hookspec(firstresult=True)
def usm_bridge_map_outbound(
    mapping: Mapping, call: Call, context: MappingContext
) -> RemoteDraft | None:
    """Turn a canonical call into what to write into the tool. Stops at first non-None result.

    :param mapping: the mapping of the target connector instance.
    :param call: the canonical call to write.
    :param context: as for :func:`usm_bridge_map_inbound`.
    :returns: the remote draft (tool field names and values), or ``None`` to let another answer.
    :raises usm_bridge.errors.MappingError: the call cannot be expressed in the tool.
    """
    raise NotImplementedError  # pragma: no cover


@hookspec
def usm_bridge_mapping_transforms() -> dict[str, Callable[..., Any]]:
    """Contribute named transforms that mapping files can use (``transform: name``).

    A transform takes the value at the mapped path (and optional keyword arguments given in
    the file) and returns the converted value; it raises ``ValueError`` for a value it cannot
    convert, which dead-letters the record with the transform's message.

    :returns: transforms by name. Two plugins contributing one name is an error.
    """
    raise NotImplementedError  # pragma: no cover


@hookspec(firstresult=True)
def usm_bridge_classify_call(call: Call, record: RawRecord) -> CallType | None:
    """Decide the USM call type of a call the mapping left unclassified. Stops at first non-None.

    Asked only when the mapping's own classification rules did not decide.

    :param call: the mapped call (its ``call_type`` is ``unclassified``).
    :param record: the raw record it came from.
    :returns: the call type, or ``None`` to leave it to another classifier (or unclassified).
    """
    raise NotImplementedError  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Conformance reports
# ---------------------------------------------------------------------------------------------


@hookspec
def usm_bridge_conformance_checks() -> list[ConformanceCheck]:
    """Contribute conformance checks (an organisation's own audit rules).

    :returns: checks; each has a unique ``id``.
    """
    raise NotImplementedError  # pragma: no cover


@hookspec
def usm_bridge_report_renderers() -> list[ReportRenderer]:
    """Contribute report renderers, one per output ``format``.

    :returns: renderers; each has a unique ``format``.
    """
    raise NotImplementedError  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Sync lifecycle events
# ---------------------------------------------------------------------------------------------


@hookspec
def usm_bridge_before_cycle(instance: str) -> None:
    """Called before a sync cycle of one connector instance starts.

    :param instance: the connector instance's name.
    """


@hookspec
def usm_bridge_after_cycle(instance: str, summary: dict[str, int]) -> None:
    """Called after a sync cycle of one connector instance ended (successfully or not).

    :param instance: the connector instance's name.
    :param summary: counters of the cycle (``read``, ``stored``, ``echoes``, ``pushed``,
        ``dead_letters``, ``failed``).
    """


@hookspec
def usm_bridge_dead_letter(instance: str, stage: str, reason: str, payload: JsonValue) -> None:
    """Called when a record or a write is dead-lettered.

    :param instance: the connector instance the record came from or was meant for.
    :param stage: where it failed: ``map``, ``store``, ``push``.
    :param reason: the error message.
    :param payload: the raw record or the write, as stored.
    """
