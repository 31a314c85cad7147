"""Whether a mapping can carry the lifecycle: every status it writes reads back the same.

Checked before runtime (by the loader, by ``usm-bridge mapping check`` and ``usm-bridge
check``), so that a workflow the mapping cannot reach is explained with the file's line, not
found as a dead letter or an illegal transition at the first cancel. A status written that
reads back as another one off its path (``cancelled`` read back as ``fulfilled``) is an error:
the store would record a move the lifecycle forbids. One read back as a neighbour on the same
path (``classified`` as ``registered``, where the tool has no such status) only loses detail:
a warning. So is a status the bridge itself moves calls into (``USM_WRITES``) that the file
cannot write at all.
"""

from __future__ import annotations

import collections.abc as cabc
from collections.abc import Iterator
from typing import Any, TypeAlias

from ..lifecycle import allowed
from ..model import Status
from .loader import Loc
from .spec import NOT_FOUND, StatusField, raw_text, split_path
from .status import read_status, record_as_written, write_status
from .values import write_key

__all__ = ["USM_WRITES", "WorkflowProblem", "status_problems", "writable_statuses"]

#: Statuses the router itself moves calls into (a supplier opened, resumed, cancelled): a
#: mapping for a tool the bridge writes to must be able to write each.
USM_WRITES = ("waiting:supplier", "in_progress", "cancelled")

#: (where, message, expected, is_error)
WorkflowProblem: TypeAlias = tuple[Loc, str, str | None, bool]

_AT: Loc = ("fields", "status")


def writable_statuses(item: StatusField) -> list[str]:
    """Every status key (``cancelled``, ``waiting:customer``) the file can write, in order."""
    keys: list[str] = []
    candidates = [
        *(write_key(c) for c in (item.values or {}).values()),
        *item.write,
        *(rule.status for rule in item.rules),
    ]
    for key in candidates:
        if key not in keys and write_status(item, key)[0] is not NOT_FOUND:
            keys.append(key)
    return keys


def _read_back(item: StatusField, key: str, empty: cabc.Set[str]) -> Any:
    raw, fields = write_status(item, key)
    record = record_as_written(item, raw, fields)
    hit = read_status(item, raw, record, empty)
    return item.lookup(raw) if hit is NOT_FOUND else hit


def _status_of(key: str) -> Status:
    return Status(key.partition(":")[0])


def _loc(item: StatusField, key: str) -> Loc:
    if key in item.write:
        return (*_AT, "write", key)
    if item.rule_for(key) is not None:
        return (*_AT, "rules", next(i for i, r in enumerate(item.rules) if r.status == key))
    return (*_AT, "values")


def _structure(item: StatusField) -> Iterator[WorkflowProblem]:
    if item.rules and item.values is None:
        yield (*_AT, "rules"), "status rules need a values table", "values: {raw: status}", True
    raw_keys = {raw_text(raw) for raw in item.values or {}}
    read_paths = set(item.field_paths.values())
    for index, rule in enumerate(item.rules):
        if item.values is not None and raw_text(rule.tool) not in raw_keys:
            yield (
                (*_AT, "rules", index, "tool"),
                f"tool status {rule.tool!r} is not a raw value of the status table",
                f"one of {sorted(raw_keys)}",
                True,
            )
        for number, condition in enumerate(rule.when):
            if condition.path not in read_paths:
                yield (
                    (*_AT, "rules", index, "when", number, "path"),
                    f"the rule tests {condition.path!r}, which field_paths does not name, so "
                    "a status written through it could not be read back",
                    f"field_paths: {{<tool field>: {condition.path}}}",
                    True,
                )
    for name, path in item.field_paths.items():
        if not split_path(path):
            yield (
                (*_AT, "field_paths", name),
                "a status field cannot be the whole record",
                None,
                True,
            )
    for key, fields in item.status_fields.items():
        unknown = [name for name in fields if item.rules and name not in item.field_paths]
        for name in unknown:
            yield (
                (*_AT, "status_fields", key, name),
                f"{name!r} is written with {key!r} but field_paths does not say where it is read",
                f"field_paths: {{{name}: <dotted path>}}",
                False,
            )


def status_problems(item: StatusField | None, empty: cabc.Set[str]) -> Iterator[WorkflowProblem]:
    """Errors and warnings about a file's status: its rules, and what it writes reads back."""
    if item is None:
        return
    structural = list(_structure(item))
    yield from structural
    if any(error for *_, error in structural) or item.values is None or item.read_only:
        return
    if item.transform or item.transform_out:
        return  # what the transforms do is known only with the plugins loaded: not checked
    for key in writable_statuses(item):
        back = _read_back(item, key, empty)
        if back is NOT_FOUND or back is None:
            continue  # a write naming a raw value outside the table: the loader names it
        back_key = str(back)
        written, read = _status_of(key), _status_of(back_key)
        if back_key == key or (read is written and ":" not in back_key):
            continue  # waiting, whom from waiting_on: the same status
        raw, fields = write_status(item, key)
        shown = f"{raw!r}" + (f" with {fields}" if fields else "")
        message = f"writing {key!r} ({shown}) reads back as {back_key!r}"
        on_path = read is written or allowed(written, read) or allowed(read, written)
        if on_path:
            yield _loc(item, key), message + " (detail lost)", None, False
        else:
            yield (
                _loc(item, key),
                message + f": the store would see the illegal move {written.value} -> {read.value}",
                "a status rule (rules: [{status, tool, when}]) with status_fields and "
                "field_paths that tell the two apart",
                True,
            )
    can_write = {_status_of(key) for key in writable_statuses(item)}
    for needed in USM_WRITES:
        if _status_of(needed) not in can_write:
            yield (
                (*_AT, "write"),
                f"the bridge moves calls to {needed!r}, which the file cannot write: such a "
                "move would fail as a dead letter",
                f"write: {{{needed}: <tool status>}}",
                False,
            )
