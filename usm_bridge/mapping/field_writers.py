"""Field specs compiled into writers: the outbound half of one field, built once per mapping.

A :class:`FieldWriter` holds the field's path as a setter, its table canonical -> raw as a
dict and its ``transform_out`` chain with the functions looked up; a :class:`StatusWriter`
also what each status writes (:func:`~usm_bridge.mapping.status.write_status`), found once per
status. :mod:`usm_bridge.mapping.outbound` runs them per call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import JsonValue

from ..errors import MappingError
from ..model import Call
from .paths import Setter, path_setter
from .spec import NOT_FOUND, FieldSpec, StatusField, canonical_text, raw_text
from .status import write_status
from .types import Transforms
from .values import compile_chain, short_repr, write_key

__all__ = ["FieldWriter", "StatusWriter"]


def _setter(path: str) -> Setter:
    try:
        return path_setter(path)
    except ValueError as exc:  # ``$``: an error when a value is written there, as before
        problem = str(exc)

        def refuse(target: dict[str, Any], value: Any) -> None:
            raise ValueError(problem)

        return refuse


class FieldWriter:
    """One writable field spec, compiled: :meth:`write` puts a canonical value in a record."""

    def __init__(self, item: FieldSpec[Any], transforms: Transforms) -> None:
        self.item = item
        self.set = _setter(item.path)
        self._table = item.outbound_table()
        self._tabled = item.values is not None
        self._chain = compile_chain(item.transform_out, transforms) if item.transform_out else None

    def raw_for(self, canonical: Any) -> Any:
        """The raw value ``values`` or ``write`` give a canonical one (else ``NOT_FOUND``)."""
        return self._table.get(canonical_text(canonical), NOT_FOUND)

    def to_raw(self, canonical: Any, label: str) -> Any:
        """The raw value to write for ``canonical``: through the table, then ``transform_out``.

        :raises MappingError: naming ``label``: a value the table has no raw value for, or a
            transform failing.
        """
        if self._tabled:
            raw = self._table.get(canonical_text(canonical), NOT_FOUND)
            if raw is NOT_FOUND:
                raise MappingError(
                    f"field {label}: canonical value {short_repr(write_key(canonical))} has no "
                    "raw value in the mapping's table (add it to values, or to write)"
                )
        else:
            raw = canonical
        if hasattr(raw, "value") and isinstance(raw.value, str):
            raw = raw.value
        if self._chain is not None:
            raw = self._chain(raw, label)
        if isinstance(raw, datetime):
            raw = raw.isoformat()
        return raw

    def write(self, out: dict[str, Any], canonical: Any, label: str) -> None:
        """Put the raw value for ``canonical`` at the field's path in ``out``."""
        self.set(out, self.to_raw(canonical, label))


class StatusWriter:
    """The status field, compiled: the tool status and status fields a call's status writes."""

    def __init__(self, item: StatusField, transforms: Transforms) -> None:
        self.item = item
        self._field = FieldWriter(item, transforms)
        self._chain = compile_chain(item.transform_out, transforms) if item.transform_out else None
        self._writes: dict[str, tuple[Any, dict[str, JsonValue]]] = {}

    def says_whom(self, call: Call) -> bool:
        """Whether the tool status written for the call also says whom it waits on."""
        waiting_on = call.waiting_on
        return (
            waiting_on is not None
            and self._field.raw_for(f"waiting:{waiting_on.value}") is not NOT_FOUND
        )

    def write(self, call: Call) -> tuple[str, dict[str, JsonValue]]:
        """``(draft.status, draft.status_fields)`` for the call's status.

        :raises MappingError: a status the file cannot express in the tool.
        """
        key = call.status.value
        if self.says_whom(call):
            assert call.waiting_on is not None
            key = f"waiting:{call.waiting_on.value}"
        found = self._writes.get(key)
        if found is None:
            found = self._writes[key] = write_status(self.item, key)
        raw, fields = found
        if raw is NOT_FOUND:
            raw = self._field.to_raw(key, "status")  # raises, naming the status
        elif self._chain is not None:
            raw = self._chain(raw, "status")
        return (raw if isinstance(raw, str) else raw_text(raw)), dict(fields)
