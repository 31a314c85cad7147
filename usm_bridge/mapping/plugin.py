"""The mapping engine's plugin: applies declarative mapping files in both directions, and
contributes the tool-neutral transforms.

It answers for every mapping, but is registered ``trylast``: a plugin that maps an exotic unit
in code implements the same hooks, answers for its own mapping and returns ``None`` for the
rest, and is asked first. Tool-specific transforms (Jira's ADF, ServiceNow's timestamps, mail
addresses) come from each connector distribution's own plugin, the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..connector import RawRecord, RemoteDraft
from ..hookspecs import hookimpl
from ..model import Call
from .inbound import apply_inbound
from .outbound import apply_outbound
from .transforms import TRANSFORMS
from .types import Mapping, MappingContext

__all__ = ["usm_bridge_map_inbound", "usm_bridge_map_outbound", "usm_bridge_mapping_transforms"]


@hookimpl(trylast=True)
def usm_bridge_map_inbound(mapping: Mapping, record: RawRecord, context: MappingContext) -> Call:
    """Apply the mapping file; ask the context's classifier when its rules decided nothing.

    The file's rules come first because they are the unit's own, explicit decision; the
    classifier plugins (keyword rules, a model, a person's queue) only see what is left,
    before the call is validated: a record the tool works on must be classified to be a call.
    """
    return apply_inbound(mapping, record, context, classifier=context.classifier)


@hookimpl(trylast=True)
def usm_bridge_map_outbound(mapping: Mapping, call: Call, context: MappingContext) -> RemoteDraft:
    """Write the call's writable fields back in the tool's shape, per the mapping file."""
    return apply_outbound(mapping, call, context)


@hookimpl
def usm_bridge_mapping_transforms() -> dict[str, Callable[..., Any]]:
    """Contribute the tool-neutral transforms (a copy, so no caller can change the registry)."""
    return dict(TRANSFORMS)
