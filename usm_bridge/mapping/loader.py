"""Safe YAML loading that remembers the line of every key, for mapping files.

Mapping files are written by admins and may be copied from anywhere, so they are untrusted
input: only PyYAML's safe composer is used, the file size, the number of nodes (an alias bomb
expands a few lines into billions) and the nesting depth are bounded, and every failure becomes
one :class:`~usm_bridge.errors.MappingFileError` naming the file and the line, never a
traceback.

The YAML is *composed* into nodes (which carry their position) and turned into plain Python
data here, so the line of every key is known; :func:`located_error` then turns pydantic's error
locations back into ``file:line: key a.b.c`` for the admin.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import MappingFileError

__all__ = [
    "MAX_MAPPING_BYTES",
    "MAX_NODES",
    "Loc",
    "LocatedData",
    "located_error",
    "parse_located",
    "read_mapping_text",
]

#: Largest mapping file accepted. Real ones are a few kilobytes.
MAX_MAPPING_BYTES = 1_000_000
#: Most YAML nodes (after expanding aliases) one file may produce.
MAX_NODES = 100_000
#: Deepest nesting accepted.
MAX_DEPTH = 64

Loc = tuple[str | int, ...]
_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


def _key(loc: Iterable[str | int]) -> tuple[str, ...]:
    return tuple(str(part) for part in loc)


@dataclass(frozen=True)
class LocatedData:
    """Plain data from a YAML file plus the line where each key or item was written."""

    source: str
    data: Any
    lines: dict[tuple[str, ...], int]

    def line_of(self, loc: Sequence[str | int]) -> tuple[int | None, int]:
        """The line of the longest prefix of ``loc`` written in the file, and its length.

        A ``0`` the file does not spell out is skipped: the format accepts a single item where
        a list is expected (``transform: strip``, ``when: {..}``), and validation then speaks
        of item 0.
        """
        found: tuple[str, ...] = ()
        line = self.lines.get(found)
        length = 0
        for index, part in enumerate(_key(loc)):
            candidate = (*found, part)
            if candidate in self.lines:
                found = candidate
                line = self.lines[candidate]
                length = index + 1
            elif part != "0":
                break
        return line, length

    def where(self, loc: Sequence[str | int], *, exact: bool = False) -> str:
        """``file:line: key a.b`` for a location (the line of its nearest written ancestor)."""
        line, length = self.line_of(loc)
        shown = loc if exact else loc[: max(length, 1) if loc else 0]
        key = ".".join(str(part) for part in shown) or "(top level)"
        return f"{self.source}:{line}: key {key}" if line else f"{self.source}: key {key}"


def read_mapping_text(path: Path) -> str:
    """The file's text, refusing what is too big or not UTF-8 with a clear message."""
    try:
        size = path.stat().st_size
        if size > MAX_MAPPING_BYTES:
            raise MappingFileError(
                f"file is larger than {MAX_MAPPING_BYTES} bytes", where=str(path)
            )
        with path.open("rb") as handle:
            raw = handle.read(MAX_MAPPING_BYTES + 1)
    except FileNotFoundError:
        raise MappingFileError("mapping file not found", where=str(path)) from None
    except IsADirectoryError:
        raise MappingFileError("is a directory, not a mapping file", where=str(path)) from None
    except OSError as exc:
        raise MappingFileError(f"cannot read: {exc.strerror}", where=str(path)) from None
    if len(raw) > MAX_MAPPING_BYTES:  # grew while we read it (or a device file)
        raise MappingFileError(f"file is larger than {MAX_MAPPING_BYTES} bytes", where=str(path))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MappingFileError(f"not UTF-8 text ({exc.reason})", where=str(path)) from None


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.nodes = 0
        self.lines: dict[tuple[str, ...], int] = {(): 1}
        self.constructor = SafeConstructor()

    def fail(self, node: Node, message: str, expected: str | None = None) -> MappingFileError:
        return MappingFileError(
            message, where=f"{self.source}:{node.start_mark.line + 1}", expected=expected
        )

    def scalar(self, node: ScalarNode) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise self.fail(node, f"bad value: {problem}") from None

    def build(self, node: Node, loc: tuple[str, ...], depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(
                node,
                f"more than {MAX_NODES} values (an alias expanding into a huge document?)",
                expected="a mapping file without alias explosions",
            )
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nested deeper than {MAX_DEPTH} levels")
        if not isinstance(node, ScalarNode) and node.tag not in _COLLECTION_TAGS:
            # Safe loading builds no objects, but a tag the format does not use is a mistake.
            raise self.fail(node, f"bad value: the tag {node.tag!r} is not allowed")
        if isinstance(node, MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    raise self.fail(key_node, "a key must be a plain value, not a list or mapping")
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise self.fail(key_node, "merge keys (<<) are not supported in mapping files")
                key = self.scalar(key_node)
                if key is None or not isinstance(key, str | int | float | bool):
                    raise self.fail(key_node, f"key {key_node.value!r} must be a text or a number")
                if key in out:
                    raise self.fail(key_node, f"key {key_node.value!r} appears twice")
                key_loc = (*loc, str(key_node.value))
                self.lines.setdefault(key_loc, key_node.start_mark.line + 1)
                if str(key) != key_node.value:
                    self.lines.setdefault((*loc, str(key)), key_node.start_mark.line + 1)
                out[key] = self.build(value_node, (*loc, str(key)), depth + 1)
            return out
        if isinstance(node, SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines.setdefault((*loc, str(index)), item.start_mark.line + 1)
                items.append(self.build(item, (*loc, str(index)), depth + 1))
            return items
        assert isinstance(node, ScalarNode)
        return self.scalar(node)


def parse_located(text: str, source: str) -> LocatedData:
    """Parse YAML text into plain data with the line of every key; safe against bombs.

    :param source: the file name to put in error messages.
    :raises MappingFileError: bad YAML, several documents, too many nodes, unsupported keys.
    """
    if len(text) > MAX_MAPPING_BYTES:
        raise MappingFileError(f"text is larger than {MAX_MAPPING_BYTES} characters", where=source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        context = exc.context
        if context and exc.context_mark is not None and exc.context_mark is not mark:
            context += f" (started at line {exc.context_mark.line + 1})"
        problem = " ".join(part for part in (context, exc.problem) if part)
        raise MappingFileError(f"not valid YAML: {problem or exc}", where=where) from None
    except yaml.YAMLError as exc:
        raise MappingFileError(f"not valid YAML: {exc}", where=source) from None
    except RecursionError:
        raise MappingFileError("not valid YAML: nested too deeply", where=source) from None
    if root is None:
        raise MappingFileError("the file is empty", where=f"{source}:1", expected="a mapping")
    builder = _Builder(source)
    try:
        data = builder.build(root, (), 0)
    except RecursionError:  # pragma: no cover - MAX_DEPTH stops well before Python's limit
        raise MappingFileError("nested too deeply", where=source) from None
    if not isinstance(data, dict):
        raise MappingFileError(
            f"the top level is a {type(data).__name__}, not a mapping",
            where=f"{source}:{root.start_mark.line + 1}",
            expected="keys such as version, tool, fields",
        )
    return LocatedData(source=source, data=data, lines=builder.lines)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def located_error(
    exc: ValidationError, located: LocatedData, vocabulary: Iterable[str] = ()
) -> MappingFileError:
    """One error naming file, line and key for every problem pydantic found (first first).

    Unknown keys get a did-you-mean from ``vocabulary`` (every key the format knows).
    """
    known = sorted(set(vocabulary))
    lines: list[str] = []
    seen: set[str] = set()
    # An unknown key usually explains a missing one next to it (a typo): name it first.
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    for error in errors:
        loc = tuple(part for part in error["loc"] if isinstance(part, str | int))
        kind = error["type"]
        if kind == "extra_forbidden":
            name = str(loc[-1]) if loc else "?"
            message = f"unknown key {name!r}"
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
            if close:
                message += f"; did you mean {close[0]!r}?"
            where = located.where(loc, exact=True)
        elif kind == "missing":
            message = "required key is missing"
            where = located.where(loc, exact=True)
        else:
            message = error["msg"]
            if message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            if "input" in error and not isinstance(error["input"], dict | list):
                message += f" (got {_short(error['input'])})"
            where = located.where(loc)
        line = f"{where}: {message}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    first, *rest = lines or [f"{located.source}: invalid mapping"]
    more = "".join(f"\n  also {line}" for line in rest[:9])
    if len(rest) > 9:
        more += f"\n  and {len(rest) - 9} more problems"
    return MappingFileError(first + more)
