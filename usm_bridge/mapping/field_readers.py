"""Field specs compiled into readers: the inbound half of one field, built once per mapping.

A :class:`FieldReader` holds what reading one canonical value needs, resolved when the mapping
is compiled (:mod:`usm_bridge.mapping.compiled`): the path and its fallbacks as getters, the
transform chain with its functions looked up, the ``values`` table as a dict keyed by raw
text, the status rules as compiled tests. Reading a record then only runs those. What it
reads, and the errors it raises, are the mapping format's (:mod:`usm_bridge.mapping`).
"""

from __future__ import annotations

import collections.abc as cabc
from typing import Any

from ..errors import MappingError
from .paths import MISSING, path_getter
from .spec import NOT_FOUND, FieldSpec, PersonSpec, StatusField, raw_text
from .status import status_reader
from .types import PERSON_PARTS, Transforms
from .values import compile_chain, empty_test, short_repr

__all__ = ["FieldReader", "PersonReader", "as_text"]


def as_text(value: Any, label: str) -> str:
    """A value read for a text (a person's part, a comment's body or id) as text."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | bool):
        return raw_text(value)
    raise MappingError(f"field {label}: expected a text, got {short_repr(value)}")


class FieldReader:
    """One field spec of a mapping, compiled: :meth:`read` gives its canonical value."""

    def __init__(
        self, item: FieldSpec[Any], *, mapping: str, empty: cabc.Set[str], transforms: Transforms
    ) -> None:
        """
        :param mapping: the mapping's name, for messages.
        :param empty: the file's empty values (as :func:`~usm_bridge.mapping.spec.raw_text`).
        :param transforms: the installed transforms the chain's names are looked up in.
        """
        self.item = item
        self.path = item.path
        self._get = path_getter(item.path)
        self._fallback = [(path, path_getter(path)) for path in item.fallback]
        self.is_empty = empty_test(empty)
        self.transform = compile_chain(item.transform, transforms)
        self._chained = bool(item.transform)
        self._table = item.inbound_table() if item.values is not None else None
        self._rules = (
            status_reader(item, empty) if isinstance(item, StatusField) and item.rules else None
        )
        self._unknown = (
            f"is not in the mapping {mapping!r} (known: "
            + ", ".join(sorted(repr(raw_text(k)) for k in item.values or {}))[:300]
            + ")"
        )

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

    def read(self, data: Any, label: str) -> Any:
        """The canonical value on ``data`` (the default when it holds none).

        :raises MappingError: naming ``label`` and the path: a required value missing, a
            transform failing, a value not in the table (unless ``on_unknown: default``).
        """
        path, raw = self.raw_of(data) if self._fallback else (self.path, self._get(data))
        value = raw
        # Each value tested for emptiness once: a raw one, then what a transform made of it.
        empty = self.is_empty(value)
        if self._chained and not empty:
            value = self.transform(value, label)
            empty = self.is_empty(value)
        if empty:
            item = self.item
            if item.required:
                raise MappingError(
                    f"field {label}: required value is missing (path {path!r}"
                    f"{'' if raw is MISSING else f', value {short_repr(raw)}'})"
                )
            return item.default
        table = self._table
        if table is None:
            return value
        hit = NOT_FOUND if self._rules is None else self._rules(value, data)
        if hit is NOT_FOUND:
            hit = table.get(raw_text(value), NOT_FOUND)
        if hit is NOT_FOUND:
            if self.item.on_unknown == "default":
                return self.item.default
            shown = (
                short_repr(raw) if raw == value else f"{short_repr(raw)} (as {short_repr(value)})"
            )
            raise MappingError(f"field {label}: value {shown} at path {path!r} {self._unknown}")
        return hit


class PersonReader:
    """A person spec of a mapping, compiled: :meth:`read` gives ``{name, email, ref}``."""

    def __init__(
        self, person: PersonSpec, *, mapping: str, empty: cabc.Set[str], transforms: Transforms
    ) -> None:
        self._parts = [
            (part, FieldReader(sub, mapping=mapping, empty=empty, transforms=transforms))
            for part in PERSON_PARTS
            if (sub := getattr(person, part)) is not None
        ]

    def read(self, data: Any, label: str) -> dict[str, Any] | None:
        """The person's parts that hold a value, as text; ``None`` when none does."""
        out = {}
        for part, reader in self._parts:
            value = reader.read(data, f"{label}.{part}")
            if value is not None:
                out[part] = as_text(value, f"{label}.{part}")
        return out or None
