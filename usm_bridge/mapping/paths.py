"""Reading and writing a raw record at a mapping file's dotted paths.

Inbound reads (:func:`get_path`), outbound and the loader's checks write (:func:`set_path`);
the path syntax itself (``a.b.0``, ``$`` for the whole record) is :func:`split_path` of
:mod:`usm_bridge.mapping.spec`. Kept apart so that every part of the engine walks records the
same way. Import these from :mod:`usm_bridge.mapping`, which re-exports them.
"""

from __future__ import annotations

import re
from typing import Any

from .spec import split_path

__all__ = ["MISSING", "get_path", "set_path"]

#: What :func:`get_path` returns when any step of the path is missing (compare with ``is``).
MISSING: Any = object()


def get_path(data: Any, path: str) -> Any:
    """The value at a dotted path, or a private sentinel when any step is missing."""
    current = data
    for segment in split_path(path):
        if isinstance(current, dict):
            current = current.get(segment, MISSING)
        elif isinstance(current, list) and re.fullmatch(r"-?\d+", segment):
            index = int(segment)
            current = current[index] if -len(current) <= index < len(current) else MISSING
        else:
            return MISSING
        if current is MISSING:
            return MISSING
    return current


def set_path(target: dict[str, Any], path: str, value: Any) -> None:
    """Set the value at a dotted path, creating objects (and lists for digit segments)."""
    segments = split_path(path)
    if not segments:
        raise ValueError("cannot write the whole record ($)")
    current: Any = target
    for segment, following in zip(segments, (*segments[1:], None), strict=True):
        last = following is None
        container: Any = [] if following is not None and following.isdigit() else {}
        if isinstance(current, list):
            index = int(segment)
            while len(current) <= index:
                current.append(None)
            if last:
                current[index] = value
            elif not isinstance(current[index], dict | list):
                current[index] = container
            current = current[index]
        else:
            if last:
                current[segment] = value
            elif not isinstance(current.get(segment), dict | list):
                current[segment] = container
            current = current[segment] if not last else current
