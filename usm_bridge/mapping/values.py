"""Value helpers both directions of a mapping share: transform chains and values in messages.

Inbound runs a field's ``transform`` chain, outbound its ``transform_out`` chain, with the same
rules (a missing transform or a plugin's exception is a :class:`MappingError` for the one
record); both, and the loader's checks, show values in messages the same way.
"""

from __future__ import annotations

from typing import Any

from ..errors import MappingError
from .spec import TransformRef, raw_text
from .transforms import missing_transform
from .types import Transforms

__all__ = ["run_chain", "short_repr", "write_key"]


def short_repr(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_key(value: Any) -> str:
    """A canonical value as the text it has as a key of a file's ``write`` table."""
    return str(value.value) if hasattr(value, "value") else raw_text(value)


def run_chain(chain: list[TransformRef], value: Any, label: str, transforms: Transforms) -> Any:
    """Run a chain of transforms on a value; ``None`` from any of them ends the chain.

    :raises MappingError: naming the field, when a transform is not installed or fails.
    """
    for ref in chain:
        func = transforms.get(ref.name)
        if func is None:
            raise MappingError(f"field {label}: {missing_transform(ref.name)}")
        try:
            value = func(value, **ref.args)
        except MappingError:
            raise
        except Exception as exc:  # a plugin's bug must dead-letter one record, not stop a cycle
            raise MappingError(
                f"field {label}: transform {ref.name!r} failed on {short_repr(value)}: {exc}"
            ) from exc
        if value is None:
            return None
    return value
