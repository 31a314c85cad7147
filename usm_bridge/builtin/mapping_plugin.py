"""The built-in mapping plugin: applies declarative mapping files in both directions.

It answers for every mapping, but is registered ``trylast``: a plugin that maps an exotic unit
in code implements the same hooks, answers for its own mapping and returns ``None`` for the
rest, and is asked first.
"""

from __future__ import annotations

from ..connector import RawRecord, RemoteDraft
from ..hookspecs import hookimpl
from ..mapping import Mapping, MappingContext, apply_inbound, apply_outbound
from ..model import Call, CallType

__all__ = ["usm_bridge_map_inbound", "usm_bridge_map_outbound"]


@hookimpl(trylast=True)
def usm_bridge_map_inbound(mapping: Mapping, record: RawRecord, context: MappingContext) -> Call:
    """Apply the mapping file; ask the context's classifier when its rules decided nothing.

    The file's rules come first because they are the unit's own, explicit decision; the
    classifier plugins (keyword rules, a model, a person's queue) only see what is left.
    """
    call = apply_inbound(mapping, record, context)
    if call.call_type is CallType.UNCLASSIFIED and context.classifier is not None:
        verdict = context.classifier(call, record)
        if verdict is not None and verdict is not CallType.UNCLASSIFIED:
            call.call_type = CallType(verdict)
    return call


@hookimpl(trylast=True)
def usm_bridge_map_outbound(mapping: Mapping, call: Call, context: MappingContext) -> RemoteDraft:
    """Write the call's writable fields back in the tool's shape, per the mapping file."""
    return apply_outbound(mapping, call, context)
