"""Reading and writing a raw record at a mapping file's dotted paths.

Inbound reads (:func:`path_getter`, :func:`get_path`), outbound and the loader's checks write
(:func:`path_setter`, :func:`set_path`); the path syntax itself (``a.b.0``, ``$`` for the whole
record) is :func:`split_path` of :mod:`usm_bridge.mapping.spec`. Kept apart so that every part
of the engine walks records the same way. A path is split and its list indexes parsed once,
into a getter or setter that a compiled mapping keeps (:mod:`usm_bridge.mapping.compiled`);
:func:`get_path` and :func:`set_path` are the same walks for a path used once. Import these from
:mod:`usm_bridge.mapping`, which re-exports them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeAlias

from .spec import split_path

__all__ = [
    "MISSING",
    "Getter",
    "Setter",
    "get_path",
    "parent_and_key",
    "path_getter",
    "path_setter",
    "set_path",
]

#: What :func:`get_path` returns when any step of the path is missing (compare with ``is``).
MISSING: Any = object()

#: Reads the value at one path of a record (``MISSING`` when a step is missing).
Getter: TypeAlias = Callable[[Any], Any]
#: Writes a value at one path of a record: ``(record, value)``.
Setter: TypeAlias = Callable[[dict[str, Any], Any], None]

_INDEX = re.compile(r"-?\d+")


def _whole(data: Any) -> Any:
    return data


@functools.lru_cache(maxsize=4096)
def path_getter(path: str) -> Getter:
    """The reader of a dotted path: a key of an object, or an index of a list where the segment
    is a whole number (a digit key of an object is its text); ``$`` is the whole record."""
    steps = tuple(
        (segment, int(segment) if _INDEX.fullmatch(segment) else None)
        for segment in split_path(path)
    )
    if not steps:
        return _whole
    if len(steps) == 1 and steps[0][1] is None:
        key = steps[0][0]

        def get_key(data: Any) -> Any:
            return data.get(key, MISSING) if isinstance(data, dict) else MISSING

        return get_key
    if all(index is None for _, index in steps):  # objects all the way: the common path
        keys = tuple(key for key, _ in steps)
        if len(keys) == 2:  # unrolled: most of a file's paths (``fields.summary``)
            return _get_two(*keys)
        if len(keys) == 3:  # ``fields.status.name``, ``fields.reporter.displayName``
            return _get_three(*keys)

        def get_keys(data: Any) -> Any:
            current = data
            for key in keys:
                if not isinstance(current, dict):
                    return MISSING
                current = current.get(key, MISSING)
            return current

        return get_keys

    def get(data: Any) -> Any:
        current = data
        for key, index in steps:
            if isinstance(current, dict):
                current = current.get(key, MISSING)
                if current is MISSING:
                    return MISSING
            elif isinstance(current, list) and index is not None:
                if not -len(current) <= index < len(current):
                    return MISSING
                current = current[index]
            else:
                return MISSING
        return current

    return get


def _get_two(first: str, second: str) -> Getter:
    """The reader of a path of two object keys: ``get_keys`` without its loop (a record's
    fields are read through these on every record)."""

    def get_two(data: Any) -> Any:
        if isinstance(data, dict):
            inner = data.get(first, MISSING)
            if isinstance(inner, dict):
                return inner.get(second, MISSING)
        return MISSING

    return get_two


def _get_three(first: str, second: str, third: str) -> Getter:
    """The reader of a path of three object keys: the first key, then :func:`_get_two`."""
    rest = _get_two(second, third)

    def get_three(data: Any) -> Any:
        return rest(data.get(first, MISSING)) if isinstance(data, dict) else MISSING

    return get_three


def parent_and_key(path: str) -> tuple[str, str] | None:
    """A path as its parent path and last key, where reading the parent and then the key reads
    the path (the last segment names an object's key, not a list's index); ``None`` for ``$``,
    one segment, or a list index last."""
    segments = split_path(path)
    if len(segments) < 2 or _INDEX.fullmatch(segments[-1]):
        return None
    return ".".join(segments[:-1]), segments[-1]


def get_path(data: Any, path: str) -> Any:
    """The value at a dotted path, or a private sentinel when any step is missing."""
    return path_getter(path)(data)


@functools.lru_cache(maxsize=4096)
def path_setter(path: str) -> Setter:
    """The writer of a dotted path: it creates objects on the way, and lists where the next
    segment is digits (growing a list with ``None`` up to the index written).

    :raises ValueError: for ``$``: the whole record cannot be written.
    """
    segments = split_path(path)
    if not segments:
        raise ValueError("cannot write the whole record ($)")
    # (segment, whether it is the last, whether the container under it is a list)
    steps = tuple(
        (segment, following is None, following is not None and following.isdigit())
        for segment, following in zip(segments, (*segments[1:], None), strict=True)
    )

    def set_(target: dict[str, Any], value: Any) -> None:
        current: Any = target
        for segment, last, holds_list in steps:
            if isinstance(current, list):
                index = int(segment)
                while len(current) <= index:
                    current.append(None)
                if last:
                    current[index] = value
                    return
                if not isinstance(current[index], dict | list):
                    current[index] = [] if holds_list else {}
                current = current[index]
            else:
                if last:
                    current[segment] = value
                    return
                if not isinstance(current.get(segment), dict | list):
                    current[segment] = [] if holds_list else {}
                current = current[segment]

    return set_


def set_path(target: dict[str, Any], path: str, value: Any) -> None:
    """Set the value at a dotted path, creating objects (and lists for digit segments)."""
    path_setter(path)(target, value)
