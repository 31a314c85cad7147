"""Value helpers both directions of a mapping share: transform chains and values in messages.

Inbound runs a field's ``transform`` chain, outbound its ``transform_out`` chain, with the same
rules (a missing transform or a plugin's exception is a :class:`MappingError` for the one
record); both, and the loader's checks, show values in messages the same way.
"""

from __future__ import annotations

import collections.abc as cabc
from collections.abc import Callable
from typing import Any, TypeAlias

from ..errors import MappingError
from .paths import MISSING
from .spec import TransformRef, raw_text
from .transforms import missing_transform
from .types import Transforms

__all__ = ["Chain", "compile_chain", "empty_test", "run_chain", "short_repr", "write_key"]


def short_repr(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def empty_test(empty: cabc.Set[str]) -> Callable[[Any], bool]:
    """Whether a raw value means "no value" to a file whose ``empty_values`` are ``empty``
    (as :func:`~usm_bridge.mapping.spec.raw_text`): a missing path, null, one of ``empty``,
    or an empty list or object."""
    empties = frozenset(empty)

    def is_empty(value: Any) -> bool:
        if value is MISSING or value is None:
            return True
        if isinstance(value, str):
            return value in empties
        if isinstance(value, int | float | bool):
            return raw_text(value) in empties
        return isinstance(value, dict | list) and not value

    return is_empty


def write_key(value: Any) -> str:
    """A canonical value as the text it has as a key of a file's ``write`` table."""
    return str(value.value) if hasattr(value, "value") else raw_text(value)


#: A transform chain resolved against the installed transforms: ``(value, label) -> value``.
Chain: TypeAlias = Callable[[Any, str], Any]


def _no_change(value: Any, label: str) -> Any:
    return value


def compile_chain(chain: list[TransformRef], transforms: Transforms) -> Chain:
    """A chain of transforms with each name looked up once; ``None`` from any of them ends it.

    A name that is not installed fails when the chain runs on a value (the loader leaves
    transforms to :func:`~usm_bridge.mapping.validate_transforms`), naming the field then.
    Running it raises :class:`MappingError` naming the field (``label``), when a transform is
    not installed or fails.
    """
    if not chain:
        return _no_change
    steps = [(ref.name, transforms.get(ref.name), ref.args) for ref in chain]
    if len(steps) == 1 and steps[0][1] is not None and not steps[0][2]:
        # One installed transform without arguments (most chains): called directly.
        name, func, _ = steps[0]
        assert func is not None

        def run_one(value: Any, label: str) -> Any:
            try:
                return func(value)
            except MappingError:
                raise
            except Exception as exc:
                raise _failed(label, name, value, exc) from exc

        return run_one

    def run(value: Any, label: str) -> Any:
        for name, func, args in steps:
            if func is None:
                raise MappingError(f"field {label}: {missing_transform(name)}")
            try:
                value = func(value, **args)
            except MappingError:
                raise
            except Exception as exc:  # a plugin's bug must dead-letter one record, not a cycle
                raise _failed(label, name, value, exc) from exc
            if value is None:
                return None
        return value

    return run


def _failed(label: str, name: str, value: Any, exc: Exception) -> MappingError:
    return MappingError(f"field {label}: transform {name!r} failed on {short_repr(value)}: {exc}")


def run_chain(chain: list[TransformRef], value: Any, label: str, transforms: Transforms) -> Any:
    """Run a chain of transforms on a value once (see :func:`compile_chain`).

    :raises MappingError: naming the field, when a transform is not installed or fails.
    """
    return compile_chain(chain, transforms)(value, label)
