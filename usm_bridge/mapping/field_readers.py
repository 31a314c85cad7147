"""Field specs compiled into readers: the inbound half of one field, built once per mapping.

A :class:`FieldReader` holds what reading one canonical value needs, resolved when the mapping
is compiled (:mod:`usm_bridge.mapping.compiled`): the path and its fallbacks as getters, the
transform chain with its functions looked up, the ``values`` table as a dict keyed by raw
text, the status rules as compiled tests. Reading a record then only runs those. What it
reads, and the errors it raises, are the mapping format's (:mod:`usm_bridge.mapping`).
"""

from __future__ import annotations

import collections.abc as cabc
from collections.abc import Callable
from typing import Any, TypeAlias

from ..errors import MappingError
from .paths import MISSING, Getter, parent_and_key, path_getter
from .spec import NOT_FOUND, FieldSpec, PersonSpec, StatusField, raw_text
from .status import status_reader
from .types import PERSON_PARTS, Transforms
from .values import compile_chain, empty_test, short_repr

__all__ = ["FieldReader", "PersonReader", "Read", "as_text"]


def as_text(value: Any, label: str) -> str:
    """A value read for a text (a person's part, a comment's body or id) as text."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | bool):
        return raw_text(value)
    raise MappingError(f"field {label}: expected a text, got {short_repr(value)}")


def _only_reads_its_path(item: FieldSpec[Any]) -> bool:
    """Whether a field spec reads its path and nothing else: no fallback, transform or table."""
    return not (item.fallback or item.transform or item.values is not None)


#: A compiled field's reader: ``(record, label) -> canonical value`` (see :class:`FieldReader`).
Read: TypeAlias = Callable[[Any, str], Any]


class FieldReader:
    """One field spec of a mapping, compiled: :attr:`read` gives its canonical value.

    :attr:`read` is a closure built here, once, for what the spec uses: a field that only
    reads a path (most of a file: people, ids, attributes) reads it and tests it for
    emptiness, with no test per record of fallbacks, transforms or tables it does not have.
    """

    #: ``(data, label)``: the canonical value on ``data`` (the default when it holds none).
    #: Raises :class:`MappingError` naming ``label`` and the path: a required value missing,
    #: a transform failing, a value not in the table (unless ``on_unknown: default``).
    read: Read

    def __init__(
        self,
        item: FieldSpec[Any],
        *,
        mapping: str,
        empty: cabc.Set[str],
        transforms: Transforms,
        get: Getter | None = None,
    ) -> None:
        """
        :param mapping: the mapping's name, for messages.
        :param empty: the file's empty values (as :func:`~usm_bridge.mapping.spec.raw_text`).
        :param transforms: the installed transforms the chain's names are looked up in.
        :param get: reads the raw value from what :attr:`read` is given, when that is not the
            record (a person's parts are given their shared parent: :class:`PersonReader`).
        """
        self.item = item
        self.path = item.path
        self._get = path_getter(item.path) if get is None else get
        self._fallback = [(path, path_getter(path)) for path in item.fallback]
        self.is_empty = empty_test(empty)
        self.transform = compile_chain(item.transform, transforms)
        self._table = item.inbound_table() if item.values is not None else None
        self._rules = (
            status_reader(item, empty) if isinstance(item, StatusField) and item.rules else None
        )
        self._unknown = (
            f"is not in the mapping {mapping!r} (known: "
            + ", ".join(sorted(repr(raw_text(k)) for k in item.values or {}))[:300]
            + ")"
        )
        plain = _only_reads_its_path(item)
        self.read = self._plain_reader(frozenset(empty)) if plain else self._reader()

    def raw_of(self, data: Any) -> tuple[str, Any]:
        """The path that holds the field's value and the raw value there: ``path``, else the
        first ``fallback`` path holding one (``path`` and its emptiness when none does)."""
        raw = self._get(data)
        for path, get in self._fallback:
            if not self.is_empty(raw):
                break
            other = get(data)
            if not self.is_empty(other):
                return path, other
        return self.path, raw

    def lookup(self, value: Any) -> Any:
        """The canonical value of a (transformed) raw value in the table, or ``NOT_FOUND``."""
        assert self._table is not None
        return self._table.get(raw_text(value), NOT_FOUND)

    def _when_empty(self, label: str, path: str, raw: Any) -> Any:
        """What an empty value reads as: the default, or the error of a required field."""
        item = self.item
        if item.required:
            raise MappingError(
                f"field {label}: required value is missing (path {path!r}"
                f"{'' if raw is MISSING else f', value {short_repr(raw)}'})"
            )
        return item.default

    def _plain_reader(self, empties: frozenset[str]) -> Read:
        """The reader of a field that only reads its path."""
        get, is_empty, path, when_empty = self._get, self.is_empty, self.path, self._when_empty

        def read_plain(data: Any, label: str) -> Any:
            raw = get(data)
            # A text, the usual raw value, tested inline; anything else by the file's test.
            if raw.__class__ is str:
                if raw not in empties:
                    return raw
            elif not is_empty(raw):
                return raw
            return when_empty(label, path, raw)

        return read_plain

    def _reader(self) -> Read:
        """The reader of a field with fallbacks, a transform chain or a table (or rules)."""
        item, get, path, is_empty = self.item, self._get, self.path, self.is_empty
        raw_of = self.raw_of if self._fallback else None
        transform = self.transform if item.transform else None
        table, rules, unknown = self._table, self._rules, self._unknown
        when_empty = self._when_empty

        def read(data: Any, label: str) -> Any:
            at, raw = (path, get(data)) if raw_of is None else raw_of(data)
            value = raw
            # Each value tested for emptiness once: a raw one, then what a transform made of it.
            empty = is_empty(value)
            if transform is not None and not empty:
                value = transform(value, label)
                empty = is_empty(value)
            if empty:
                return when_empty(label, at, raw)
            if table is None:
                return value
            hit = NOT_FOUND if rules is None else rules(value, data)
            if hit is NOT_FOUND:
                hit = table.get(value if value.__class__ is str else raw_text(value), NOT_FOUND)
            if hit is NOT_FOUND:
                if item.on_unknown == "default":
                    return item.default
                shown = (
                    short_repr(raw)
                    if raw == value
                    else f"{short_repr(raw)} (as {short_repr(value)})"
                )
                raise MappingError(f"field {label}: value {shown} at path {at!r} {unknown}")
            return hit

        return read


class PersonReader:
    """A person spec of a mapping, compiled: :meth:`read` gives ``{name, email, ref}``."""

    def __init__(
        self, person: PersonSpec, *, mapping: str, empty: cabc.Set[str], transforms: Transforms
    ) -> None:
        specs = [(part, sub) for part in PERSON_PARTS if (sub := getattr(person, part)) is not None]
        # Parts that only read keys of one object (``fields.reporter.displayName``, ``.email``
        # ...) read that object once, and each key in it: the same values, a third of the
        # path walks. Anything else reads each part's own path.
        split = [parent_and_key(sub.path) for _, sub in specs]
        keys = [pair[1] for pair in split if pair is not None]
        parents = {pair[0] for pair in split if pair is not None}
        shared = len(keys) == len(specs) and len(parents) == 1
        shared = shared and all(_only_reads_its_path(sub) for _, sub in specs)
        self._parent = path_getter(parents.pop()) if shared else None
        self._parts = [
            (
                part,
                FieldReader(
                    sub,
                    mapping=mapping,
                    empty=empty,
                    transforms=transforms,
                    get=path_getter(key) if shared else None,
                ),
            )
            for (part, sub), key in zip(specs, keys if shared else [""] * len(specs), strict=True)
        ]

    def read(self, data: Any, label: str) -> dict[str, Any] | None:
        """The person's parts that hold a value, as text; ``None`` when none does."""
        if self._parent is not None:
            data = self._parent(data)
        out = {}
        for part, reader in self._parts:
            part_label = f"{label}.{part}"
            value = reader.read(data, part_label)
            if value is not None:
                out[part] = as_text(value, part_label)
        return out or None
