"""A query's rows as the driver hands them, each value read by its column type's own
result processor: SQLAlchemy's rows without SQLAlchemy's per-row machinery.

The report's pass reads every call row and the keyed rows of every page (identities, chain
links, change events). Through ``Connection.execute`` each row became a ``Row`` and then a
``RowMapping`` (``partitions`` of a ``MappingResult``), which cost about a tenth of a report's
CPU at 100,000 calls. Here the statement is compiled once per dialect, executed as the
driver's SQL (``exec_driver_sql``: the same transaction, the same streaming, no result
processing), and each row becomes a plain ``dict``; the columns whose type has a result
processor on this dialect (``UTCDateTime``'s, SQLite's text-to-datetime and JSON decoding) go
through that very processor, so every value is the one ``Connection.execute`` gives, and a bad
stored value fails (or is refused downstream) exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

__all__ = ["DriverQuery"]


@dataclass(frozen=True)
class DriverQuery:
    """A select compiled for one dialect, its rows read as dicts (see the module docstring)."""

    sql: str
    #: The bound parameters' names in the order the driver takes them (positional dialects),
    #: else ``None`` (the driver takes them by name).
    order: tuple[str, ...] | None
    #: The statement's own bound values (an expanded ``IN`` list), by name.
    fixed: Mapping[str, Any]
    names: tuple[str, ...]
    #: ``(name, processor)`` of each column whose type processes what the driver gives.
    processed: tuple[tuple[str, Callable[[Any], Any]], ...]
    #: The bind processor of each parameter whose type has one (``UTCDateTime``'s).
    binders: Mapping[str, Callable[[Any], Any]]

    @classmethod
    def of(cls, query: sa.Select[Any], dialect: Dialect) -> DriverQuery:
        compiled = query.compile(dialect=dialect)
        # The statement's expanded ``IN`` lists rendered into its SQL; the parameters left
        # open (a page's range) with a placeholder, given their values at each execution.
        open_names = {bind.key for bind in compiled.binds.values() if bind.required}
        expanded = compiled.construct_expanded_state(dict.fromkeys(open_names))
        fixed = {k: v for k, v in expanded.parameters.items() if k not in open_names}
        names: list[str] = []
        processed: list[tuple[str, Callable[[Any], Any]]] = []
        for column in query.selected_columns:
            if column.key is None:  # every column of the pass's queries is named
                raise ValueError(f"an unnamed column in {query}")
            names.append(column.key)
            processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if processor is not None:
                processed.append((column.key, processor))
        binders = {}
        for name, bind in compiled.binds.items():
            binder = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if binder is not None:
                binders[name] = binder
        positions = expanded.positiontup
        return cls(
            sql=expanded.statement,
            order=tuple(positions) if dialect.positional and positions is not None else None,
            fixed=fixed,
            names=tuple(names),
            processed=tuple(processed),
            binders=binders,
        )

    def execute(self, conn: Connection, parameters: Mapping[str, Any] | None = None) -> Any:
        """The driver's cursor result for ``parameters`` (the bound names left open)."""
        values = {**self.fixed, **(parameters or {})}
        for name, binder in self.binders.items():
            if name in values:
                values[name] = binder(values[name])
        if self.order is not None:
            return conn.exec_driver_sql(self.sql, tuple(values[name] for name in self.order))
        return conn.exec_driver_sql(self.sql, values)

    def rows(self, raw: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        """``raw`` rows of this query's result as dicts of the values ``execute`` would give."""
        names, processed = self.names, self.processed
        rows = [dict(zip(names, row, strict=True)) for row in raw]
        for name, processor in processed:
            for row in rows:
                value = row[name]
                if value is not None:
                    row[name] = processor(value)
        return rows

    def all(
        self, conn: Connection, parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Every row for ``parameters``, as :meth:`rows` gives them."""
        return self.rows(self.execute(conn, parameters).fetchall())

    def pages(self, conn: Connection, size: int) -> Iterator[list[dict[str, Any]]]:
        """Every row, ``size`` at a time (``conn`` streams them where it is told to)."""
        for raw in self.execute(conn).partitions(size):
            yield self.rows(raw)
