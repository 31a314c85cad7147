"""Outbound: what to write into a tool for a canonical call, in the tool's own record shape.

The half of the mapping engine that runs when a call is written back: every field the file does
not mark ``read_only`` goes through its ``write``/``values`` table and ``transform_out`` chain
into a :class:`~usm_bridge.connector.RemoteDraft`; the status goes apart, as tools change status
through workflows. Import :func:`apply_outbound` from :mod:`usm_bridge.mapping`, which
re-exports it.
"""

from __future__ import annotations

from typing import Any

from pydantic import JsonValue

from ..connector import RemoteDraft
from ..model import Call
from .compiled import compiled
from .paths import set_path
from .spec import NOT_FOUND, FieldSpec
from .types import Mapping, MappingContext

__all__ = ["apply_outbound"]


def apply_outbound(mapping: Mapping, call: Call, context: MappingContext) -> RemoteDraft:
    """What to write into the tool for a call: every writable field, in the tool's shape.

    Empty canonical values are left out (never written as blanks). The status is set apart in
    ``draft.status`` with the fields the move requires in ``draft.status_fields``.

    :raises MappingError: a canonical value the file cannot express in the tool.
    """
    form = compiled(mapping, context.transforms)
    out: dict[str, Any] = {}
    draft_status: str | None = None
    status_fields: dict[str, JsonValue] = {}
    status = form.status_writer
    for name, writer in form.writers:
        if writer is None:  # the status, in its place among the fields (errors come in order)
            assert status is not None
            draft_status, status_fields = status.write(call)
            continue
        if name == "waiting_on" and status is not None and status.says_whom(call):
            continue
        value = getattr(call, name)
        if value is not None:
            raw = writer.to_raw(value, name)
            if name == "waiting_on":
                raw = _waited_process_raw(mapping, call, writer.item, raw)
            writer.set(out, raw)
    for role, part, writer in form.person_writers:
        person = getattr(call, role)
        value = getattr(person, part) if person is not None else None
        if value is not None:
            writer.write(out, value, f"{role}.{part}")
    if form.attribute_writers:
        kept = call.attributes.get(mapping.namespace, {})
        for name, writer in form.attribute_writers:
            if kept.get(name) is not None:
                writer.write(out, kept[name], f"attributes.{name}")
    for path, value in mapping.spec.classify.write.get(call.call_type, {}).items():
        set_path(out, path, value)
    return RemoteDraft(fields=out, status=draft_status, status_fields=status_fields)


def _waited_process_raw(mapping: Mapping, call: Call, waiting_on: FieldSpec[Any], raw: Any) -> Any:
    """The tool's reason for a wait on a process, where one field says both whom and which
    process (ServiceNow's hold_reason: Awaiting Change, Awaiting Problem): the reason of the
    process the call waits on, so that a wait read as "Awaiting Problem" is never written back
    as "Awaiting Change"; else ``raw``, the ``waiting_on`` table's choice."""
    spec = mapping.spec.fields.waiting_process
    if spec is None or spec.path != waiting_on.path or call.waiting_process is None:
        return raw
    chosen = spec.raw_for(call.waiting_process)
    return raw if chosen is NOT_FOUND else chosen
