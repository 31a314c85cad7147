"""Outbound: what to write into a tool for a canonical call, in the tool's own record shape.

The half of the mapping engine that runs when a call is written back: every field the file does
not mark ``read_only`` goes through its ``write``/``values`` table and ``transform_out`` chain
into a :class:`~usm_bridge.connector.RemoteDraft`; the status goes apart, as tools change status
through workflows. Import :func:`apply_outbound` from :mod:`usm_bridge.mapping`, which
re-exports it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import JsonValue

from ..connector import RemoteDraft
from ..errors import MappingError
from ..model import Call
from .paths import set_path
from .spec import NOT_FOUND, FieldSpec, StatusField, raw_text
from .status import write_status
from .types import PERSON_PARTS, ROLES, SCALARS, Mapping, MappingContext
from .values import run_chain, short_repr, write_key

__all__ = ["apply_outbound"]


def _to_raw(item: FieldSpec[Any], canonical: Any, label: str, context: MappingContext) -> Any:
    if item.values is not None:
        raw = item.raw_for(canonical)
        if raw is NOT_FOUND:
            raise MappingError(
                f"field {label}: canonical value {short_repr(write_key(canonical))} has no raw "
                "value in the mapping's table (add it to values, or to write)"
            )
    else:
        raw = canonical
    if hasattr(raw, "value") and isinstance(raw.value, str):
        raw = raw.value
    if item.transform_out:
        raw = run_chain(item.transform_out, raw, label, context.transforms)
    if isinstance(raw, datetime):
        raw = raw.isoformat()
    return raw


def apply_outbound(mapping: Mapping, call: Call, context: MappingContext) -> RemoteDraft:
    """What to write into the tool for a call: every writable field, in the tool's shape.

    Empty canonical values are left out (never written as blanks). The status is set apart in
    ``draft.status`` with the fields the move requires in ``draft.status_fields``.

    :raises MappingError: a canonical value the file cannot express in the tool.
    """
    spec = mapping.spec
    out: dict[str, Any] = {}
    draft_status: str | None = None
    status_fields: dict[str, JsonValue] = {}
    for name in SCALARS:
        item = getattr(spec.fields, name)
        if item is None or item.read_only:
            continue
        if name == "status":
            key = call.status.value
            if (
                call.waiting_on is not None
                and item.raw_for(f"waiting:{call.waiting_on.value}") is not NOT_FOUND
            ):
                key = f"waiting:{call.waiting_on.value}"
            assert isinstance(item, StatusField)
            raw, status_fields = write_status(item, key)
            if raw is NOT_FOUND:
                raw = _to_raw(item, key, "status", context)  # raises, naming the status
            elif item.transform_out:
                raw = run_chain(item.transform_out, raw, "status", context.transforms)
            draft_status = raw if isinstance(raw, str) else raw_text(raw)
            continue
        if name == "waiting_on" and _status_says_whom(mapping, call):
            continue
        value = getattr(call, name)
        if value is not None:
            raw = _to_raw(item, value, name, context)
            if name == "waiting_on":
                raw = _waited_process_raw(mapping, call, item, raw)
            set_path(out, item.path, raw)
    for role in ROLES:
        person_spec = getattr(spec.people, role)
        person = getattr(call, role)
        if person_spec is None or person is None:
            continue
        for part in PERSON_PARTS:
            sub = getattr(person_spec, part)
            value = getattr(person, part)
            if sub is not None and not sub.read_only and value is not None:
                set_path(out, sub.path, _to_raw(sub, value, f"{role}.{part}", context))
    if spec.attributes is not None:
        kept = call.attributes.get(mapping.namespace, {})
        for name, item in spec.attributes.fields.items():
            if not item.read_only and kept.get(name) is not None:
                set_path(out, item.path, _to_raw(item, kept[name], f"attributes.{name}", context))
    for path, value in spec.classify.write.get(call.call_type, {}).items():
        set_path(out, path, value)
    return RemoteDraft(fields=out, status=draft_status, status_fields=status_fields)


def _status_says_whom(mapping: Mapping, call: Call) -> bool:
    status = mapping.spec.fields.status
    return (
        status is not None
        and not status.read_only
        and call.waiting_on is not None
        and status.raw_for(f"waiting:{call.waiting_on.value}") is not NOT_FOUND
    )


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
