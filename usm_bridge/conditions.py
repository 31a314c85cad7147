"""A route's ``when`` conditions, checked against the canonical model before anything runs.

:func:`usm_bridge.sync.router.matches` compares a condition with the call's JSON form, so a
misspelt field (``cal_type``) or a value no call can have (``call_type = "incidnet"``) used to
make a route that silently never matches. :func:`condition_problems` names each such condition,
so that loading the config refuses it with its file, line and key.

A condition's key is a canonical field of :class:`~usm_bridge.model.Call`, or a dotted path into
one (``requester.email``, ``source.instance``), or a read-only field the call computes (``process``,
from its type); under ``attributes.<namespace>.`` any tool field is allowed, since those are
whatever a tool keeps. Its value is a JSON scalar, or a non-empty
list of them (any one may match); an enumerated field's values must be among its members.
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, JsonValue

from .model import Call

__all__ = ["condition_problems"]

#: Fields no condition can usefully test: lists of records, bookkeeping of the chain.
_NOT_CONDITIONS = frozenset({"comments", "chain"})


def condition_problems(when: dict[str, JsonValue]) -> list[tuple[str, str]]:
    """What is wrong with each condition of ``when``: ``(key, message)``, in key order."""
    problems: list[tuple[str, str]] = []
    for key, expected in when.items():
        # A table value first: it is how TOML reads an unquoted dotted key.
        problem = (
            _table_problem(key, expected) or _field_problem(key) or _value_problem(key, expected)
        )
        if problem is not None:
            problems.append((key, problem))
    return problems


def _field_problem(key: str) -> str | None:
    annotation = _annotation_of(key)
    if isinstance(annotation, str):
        return annotation
    return None


def _annotation_of(key: str) -> Any:
    """The type at the dotted ``key`` of a call, or a ``str`` saying why there is none."""
    model: type[BaseModel] = Call
    parts = key.split(".")
    for index, part in enumerate(parts):
        fields = _condition_fields(model)
        where = ".".join(parts[:index])
        if part not in fields or (model is Call and part in _NOT_CONDITIONS):
            known = sorted(
                name for name in fields if model is not Call or name not in _NOT_CONDITIONS
            )
            return f"{part!r} is not a field of {where or 'a call'}; use one of {', '.join(known)}"
        annotation = _strip_optional(fields[part])
        rest = parts[index + 1 :]
        if model is Call and part == "attributes":
            if len(rest) < 2:
                return "name a tool field under attributes: attributes.<tool>.<field>"
            return Any  # whatever a tool keeps there
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not rest:
                fields_of = ", ".join(f"{key}.{name}" for name in annotation.model_fields)
                return f"{key!r} is a table, not a value; test one of its fields: {fields_of}"
            model = annotation
            continue
        if rest:
            return f"{'.'.join(parts[: index + 1])!r} is a value, not a table"
        return annotation
    return Any  # pragma: no cover - the loop always returns


def _condition_fields(model: type[BaseModel]) -> dict[str, Any]:
    """The fields a condition may test, with their types: stored and computed ones (a route
    by ``process`` reads what the call's JSON form carries, as for any field)."""
    fields: dict[str, Any] = {name: info.annotation for name, info in model.model_fields.items()}
    fields.update({name: info.return_type for name, info in model.model_computed_fields.items()})
    return fields


def _strip_optional(annotation: Any) -> Any:
    """``X | None`` and ``Annotated[X, ...]`` -> ``X``."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return _strip_optional(members[0])
    return annotation


def _table_problem(key: str, expected: JsonValue) -> str | None:
    if not isinstance(expected, dict):
        return None
    # TOML reads ``when = { requester.email = "x" }`` as a nested table.
    inner = next(iter(expected), "FIELD")
    return (
        "a condition is a value or a list of values, not a table; to test a field inside "
        f'{key}, quote the dotted key: "{key}.{inner}" = ...'
    )


def _value_problem(key: str, expected: JsonValue) -> str | None:
    values = expected if isinstance(expected, list) else [expected]
    if isinstance(expected, list) and not expected:
        return "an empty list matches no call; give at least one value"
    annotation = _annotation_of(key)
    for value in values:
        if isinstance(value, dict | list):
            return "a list of conditions holds values, not tables or lists"
        problem = _one_value_problem(annotation, value)
        if problem is not None:
            return problem
    return None


def _one_value_problem(annotation: Any, value: JsonValue) -> str | None:
    if value is None or annotation is Any:
        return None  # None matches a call without the field
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        members = [member.value for member in annotation]
        if value not in members:
            return f"{value!r} is not a value of this field; use one of {', '.join(members)}"
        return None
    if annotation is bool:
        return None if isinstance(value, bool) else f"{value!r} is not true or false"
    if annotation is datetime:
        if not isinstance(value, str):
            return f"{value!r} is not a date and time (an ISO 8601 string)"
        return None
    if annotation is str and not isinstance(value, str):
        return f"{value!r} is not text; a call's value here is always text (quote it)"
    return None
