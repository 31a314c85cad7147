"""A canonical status read from, and written to, more than one tool field.

Most tools say a call's status in one field, and the ``values`` table maps it. Some say it in
two: Jira's *Done* means ``fulfilled`` with resolution *Done* and ``cancelled`` with resolution
*Won't Do*. A file's ``fields.status.rules`` name those cases (tool status plus ``when``
conditions, matched by :func:`~usm_bridge.mapping.classify.match_rule` like classification),
``status_fields`` says what a move into a status writes besides the status, and
``field_paths`` where a read finds each of those fields again. Both directions and the
loader's read-back check go through this module, so they cannot disagree.
"""

from __future__ import annotations

import collections.abc as cabc
from collections.abc import Callable
from typing import Any

from pydantic import JsonValue

from .classify import compile_rule
from .paths import set_path
from .spec import NOT_FOUND, StatusField, raw_text

__all__ = ["read_status", "record_as_written", "status_reader", "write_status"]


def status_reader(item: StatusField, empty: cabc.Set[str]) -> Callable[[Any, Any], Any]:
    """:func:`read_status` with the file's rules compiled: ``(value, data) -> status``."""
    rules = [(raw_text(rule.tool), compile_rule(rule, empty), rule.status) for rule in item.rules]

    def read(value: Any, data: Any) -> Any:
        text = raw_text(value)
        for tool, holds, status in rules:
            if tool == text and holds(data):
                return status
        return NOT_FOUND

    return read


def read_status(item: StatusField, value: Any, data: Any, empty: cabc.Set[str]) -> Any:
    """The status a rule gives the (transformed) tool status ``value`` on ``data``.

    :returns: the rule's status, or ``NOT_FOUND`` when no rule holds (the table decides).
    """
    return status_reader(item, empty)(value, data)


def write_status(item: StatusField, key: str) -> tuple[Any, dict[str, JsonValue]]:
    """The tool status (before ``transform_out``) and the status fields to write for ``key``.

    ``key`` is a canonical status or ``waiting:<whom>``. An explicit ``write`` entry wins over
    a rule, a rule over the ``values`` table.

    :returns: ``(NOT_FOUND, {})`` when the file cannot express the status.
    """
    rule = item.rule_for(key)
    if key not in item.write and rule is not None:
        raw: Any = rule.tool
    else:
        raw = item.raw_for(key)
    fields = item.status_fields.get(key)
    if fields is None and ":" in key:
        fields = item.status_fields.get(key.partition(":")[0])
    return raw, dict(fields or {})


def record_as_written(item: StatusField, raw: Any, fields: cabc.Mapping[str, Any]) -> Any:
    """The raw record a write of ``raw`` with ``fields`` leaves, as far as the file can tell.

    The status at its path, each written status field at the path ``field_paths`` gives it (a
    field without one cannot be read back, and is left out).
    """
    record: dict[str, Any] = {}
    if item.path != "$":
        set_path(record, item.path, raw)
    for name, value in fields.items():
        path = item.field_paths.get(name)
        if path is not None and path != "$":
            set_path(record, path, value)
    return record
