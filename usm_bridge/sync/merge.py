"""The three-way merge per remote record: the tool's state, the bridge's, and their base.

The base (:mod:`usm_bridge.store.remote_state`) is what the tool is known to hold, as an
outbound draft: what it held when the bridge last read the record, updated with what the
bridge wrote since. Drafts are compared on flattened paths (``("fields", "a", "b")``,
``("status",)``, ``("status_fields", "x")``); a status and its status fields are one field,
and a rich-text document (an ADF ``{"type": "doc", ...}``) is one leaf: a tool takes it whole.

- On read (:func:`merge_read`): a canonical field whose written paths the tool holds as in the
  base was not changed in the tool, so the stored value is kept (a decision of the bridge not
  pushed yet survives a stale read); one the tool changed is taken from the read.
- On push (:func:`changed_fields`): only the paths where the bridge's draft differs from the
  base are written, never a field the bridge did not change (a person's change in the tool
  since the last read survives); afterwards the base is :func:`merged_base`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import JsonValue

from ..connector import RemoteDraft
from ..errors import MappingError
from ..mapping.types import ROLES, SCALARS
from ..model import Call
from .calls import with_values_of

__all__ = ["Path", "changed_fields", "flatten", "merge_read", "merged_base"]

#: A flattened draft path: the draft's part (``fields``, ``status``, ``status_fields``) first.
Path = tuple[str, ...]
_MISSING: Any = object()
_BOOKKEEPING = frozenset({"created", "updated", "waiting_on"})


def _document(value: JsonValue) -> bool:
    """A rich-text document (Atlassian Document Format): one value, never written in part."""
    return isinstance(value, dict) and value.get("type") == "doc" and "content" in value


def _flatten_into(out: dict[Path, JsonValue], prefix: Path, value: JsonValue) -> None:
    if isinstance(value, dict) and value and not _document(value):
        for key, item in value.items():
            _flatten_into(out, (*prefix, key), item)
    else:
        out[prefix] = value


def flatten(draft: RemoteDraft) -> dict[Path, JsonValue]:
    """The draft's leaves by path; ``("status",)`` is always there (``None`` when unset)."""
    out: dict[Path, JsonValue] = {}
    for key, value in draft.fields.items():
        _flatten_into(out, ("fields", key), value)
    out[("status",)] = draft.status
    for key, value in draft.status_fields.items():
        _flatten_into(out, ("status_fields", key), value)
    return out


def _nest(leaves: dict[Path, JsonValue]) -> dict[str, JsonValue]:
    """Nested dicts from paths (without their ``fields`` part)."""
    out: dict[str, JsonValue] = {}
    for path, value in leaves.items():
        node: dict[str, JsonValue] = out
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[path[-1]] = value
    return out


def _status_of(draft: RemoteDraft) -> tuple[str | None, dict[str, JsonValue]]:
    return draft.status, draft.status_fields


def changed_fields(desired: RemoteDraft, base: RemoteDraft) -> RemoteDraft | None:
    """The part of ``desired`` that differs from ``base`` (``None``: nothing to write).

    Plain fields are compared leaf by leaf; the status with its status fields as one value.
    """
    have = flatten(base)
    changed = {
        path[1:]: value
        for path, value in flatten(desired).items()
        if path[0] == "fields" and have.get(path, _MISSING) != value
    }
    status_changed = _status_of(desired) != _status_of(base)
    if not changed and not status_changed:
        return None
    if not status_changed:
        return RemoteDraft(fields=_nest(changed))
    return RemoteDraft(
        fields=_nest(changed), status=desired.status, status_fields=dict(desired.status_fields)
    )


def merged_base(base: RemoteDraft, written: RemoteDraft) -> RemoteDraft:
    """What the tool holds after ``written`` (a result of :func:`changed_fields`) was written."""
    leaves = {path[1:]: value for path, value in flatten(base).items() if path[0] == "fields"}
    for path, value in flatten(written).items():
        if path[0] != "fields":
            continue
        key = path[1:]
        # A leaf replaces whatever subtree the base held there, and the other way round.
        for old in [p for p in leaves if p[: len(key)] == key or key[: len(p)] == p]:
            del leaves[old]
        leaves[key] = value
    status, status_fields = _status_of(base)
    if written.status is not None or written.status_fields:
        status, status_fields = _status_of(written)
    return RemoteDraft(fields=_nest(leaves), status=status, status_fields=dict(status_fields))


def merge_read(
    read: Call,
    stored: Call,
    read_draft: RemoteDraft,
    base: RemoteDraft,
    outbound: Callable[[Call], RemoteDraft],
) -> Call:
    """The call as read, with the stored value of each field the tool did not change.

    For each canonical field (status, ``waiting_on`` and ``waiting_process`` together) where
    the read differs from the stored call, the draft paths it is written to are found by
    mapping the stored call with only that field changed; when the read holds every one of
    them as in ``base``, the tool did not change the field and the stored value is kept. A
    field the tool does not hold (no path) or that cannot be mapped is taken from the read, as
    without a base.
    """
    try:
        mine = flatten(outbound(stored))
    except MappingError:
        return read
    theirs, known = flatten(read_draft), flatten(base)
    kept: dict[str, Any] = {}
    for name in (*SCALARS, *ROLES):
        if name in _BOOKKEEPING:
            continue
        # A status is one field with whom and which process it waits on.
        names = ("status", "waiting_on", "waiting_process") if name == "status" else (name,)
        values = {n: getattr(read, n) for n in names}
        if all(values[n] == getattr(stored, n) for n in names):
            continue
        try:
            probe = flatten(outbound(with_values_of(stored, values)))
        except (MappingError, ValueError):
            continue
        paths = {
            p for p in probe.keys() | mine.keys() if probe.get(p, _MISSING) != mine.get(p, _MISSING)
        }
        if paths and all(theirs.get(p, _MISSING) == known.get(p, _MISSING) for p in paths):
            kept.update({n: getattr(stored, n) for n in names})
    return with_values_of(read, kept) if kept else read
