"""The store's records of the report's pass (a stored call's bookkeeping, identities, chain
links) built without pydantic's validation where a row's values already are what it would
give back.

A page of the pass builds some 4,000 frozen records (a ``StoredCall`` per call, an
``Identity`` per identity, a ``ChainLink`` per link), and pydantic's validation of each
(``BaseModel.__init__``, ``model_validate``) was about a tenth of a report's CPU. Their fields
are plain: ``int``, ``str``, ``datetime``, a model, or one of those or ``None``. A value whose
type *is* that type (not a subclass, not ``bool`` for ``int``) is one pydantic keeps as it is,
so a row holding exactly the record's fields, each of its exact type, is built as validation
would build it (the same ``__dict__``, every field given). Any other row (a column the store's
typeless SQLite gave back as text, a missing or extra member) is validated by the record's own
model, which accepts it or raises as before.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel

__all__ = ["record_builder"]

_R = TypeVar("_R", bound=BaseModel)

#: The field types taken as they are: pydantic's validation gives back such a value itself.
_PLAIN: Final = frozenset({int, str, datetime})


def _exact_types(annotation: Any) -> frozenset[type] | None:
    """The types a value of a field annotated ``annotation`` may have to be taken as it is;
    ``None`` for a field this module leaves to pydantic."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [_exact_types(arg) for arg in get_args(annotation)]
        if any(found is None for found in members):
            return None
        return frozenset().union(*(found for found in members if found is not None))
    if annotation is type(None):
        return frozenset({type(None)})
    if annotation in _PLAIN:
        return frozenset({annotation})
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return frozenset({annotation})  # an instance of the model itself is not revalidated
    return None


def record_builder(model: type[_R]) -> Callable[[Mapping[str, Any]], _R]:
    """How a row (a mapping of ``model``'s fields) becomes a ``model`` record: taken as it is
    where every value has its field's exact type (see the module docstring), else
    ``model.model_validate``."""
    plan = {name: _exact_types(field.annotation) for name, field in model.model_fields.items()}
    decorators = model.__pydantic_decorators__
    if (
        model.model_config.get("extra") != "forbid"
        or any(allowed is None for allowed in plan.values())
        or decorators.validators
        or decorators.field_validators
        or decorators.model_validators
    ):
        return model.model_validate  # more than plain values: the model's own validation
    checks: tuple[tuple[str, frozenset[type]], ...] = tuple(
        (name, allowed) for name, allowed in plan.items() if allowed is not None
    )
    names = frozenset(plan)

    def build(row: Mapping[str, Any]) -> _R:
        if row.keys() != names:
            return model.model_validate(row)
        values = {}
        for name, allowed in checks:
            value = row[name]
            if type(value) not in allowed:
                return model.model_validate(row)
            values[name] = value
        record = model.__new__(model)
        object.__setattr__(record, "__dict__", values)
        object.__setattr__(record, "__pydantic_fields_set__", set(values))
        object.__setattr__(record, "__pydantic_extra__", None)
        object.__setattr__(record, "__pydantic_private__", None)
        return record

    return build
