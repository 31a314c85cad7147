"""Many new rows of one table in one statement: ``COPY ... FROM STDIN`` on PostgreSQL.

A backfill page inserts a hundred calls, identities and remote states and two hundred audit
events. Sent with ``executemany``, psycopg pipelines one ``INSERT`` per row, and the server
plans and runs each on its own; ``COPY`` sends the rows as one stream the server loads in a
single pass. :func:`insert_rows` takes the rows a SQLAlchemy ``insert`` would (column
dictionaries), converts each value exactly as that insert's bind processing does (the column
types of :mod:`.schema`: JSON documents through the engine's serializer, UTC timestamps), and
hands them to psycopg's ``copy``, which escapes tabs, newlines and backslashes and writes
``None`` as NULL.

Below :data:`COPY_FROM` rows, on SQLite, or with another driver than psycopg, it is an
``executemany`` of the insert. On a driver with positional parameters (SQLite's ``?``) the
insert is compiled once per table and columns, and its rows go to the driver as plain tuples
converted by the same bind processors: SQLAlchemy's own ``executemany`` builds a parameter
dictionary per row and looks every processor up again, which cost about a tenth of a
backfill's CPU on SQLite. A timestamp (:class:`~.schema.UTCDateTime`, the same text for the
same instant in any zone) is converted once per value, for all the statements of one batch
that share a ``converted`` dict: a record's rows (its call, identity, remote state and audit
events, each with a created and an updated time) are written at one moment. A failing
``COPY`` or insert raises the SQLAlchemy error the insert would have raised (an
``IntegrityError`` for a broken constraint ...), so the unit of work that sent it rolls back as
for any statement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usm_bridge.store.encoded_json import JsonText, store_dumps
from usm_bridge.store.schema import UTCDateTime

__all__ = ["COPY_FROM", "insert_rows"]

#: Fewer rows go out as ``executemany``: one or two inserts cost no more than a ``COPY``.
COPY_FROM: Final = 3


#: Timestamps converted for the driver, by value: see :func:`insert_rows`.
Converted = dict[datetime, Any]


def insert_rows(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    *,
    converted: Converted | None = None,
) -> None:
    """Insert ``rows`` (each with the same keys, columns of ``table``) into ``table``.

    :param converted: the timestamps converted so far, shared by the statements of a batch
        (each statement keeps its own without one).
    """
    if not rows:
        return
    dialect = conn.dialect
    done: Converted = {} if converted is None else converted
    if len(rows) < COPY_FROM or (dialect.name, dialect.driver) != ("postgresql", "psycopg"):
        _execute_many(conn, table, rows, done)
        return
    names = list(rows[0])
    conversions: list[tuple[int, Callable[[Any], Any]]] = []
    for position, name in enumerate(names):
        column = table.c[name]
        process: Callable[[Any], Any] | None = column.type.dialect_impl(dialect).bind_processor(
            dialect
        )
        if process is not None:
            timestamp = _is_timestamp(column)
            conversions.append((position, _once_per_value(process, done) if timestamp else process))
    quote = dialect.identifier_preparer.quote
    statement = f"COPY {quote(table.name)} ({', '.join(quote(name) for name in names)}) FROM STDIN"
    raw = conn.connection.driver_connection
    assert raw is not None
    dbapi = dialect.loaded_dbapi
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for values in _values(rows, names, conversions):
                copy.write_row(values)
    except dbapi.Error as exc:
        # As SQLAlchemy wraps a driver's error, the parameters (ticket data) kept out.
        raise sa.exc.DBAPIError.instance(
            statement, None, exc, dbapi.Error, hide_parameters=True, dialect=dialect
        ) from exc


#: A compiled positional insert: its SQL, its row keys in the order of its parameters, and
#: the parameters that need a conversion: their position, bind processor and whether it is a
#: timestamp's.
_Positional = tuple[str, tuple[str, ...], tuple[tuple[int, Callable[[Any], Any], bool], ...]]


def _is_timestamp(column: sa.Column[Any]) -> bool:
    # Only UTCDateTime: it converts an instant to one text in any zone, so equal values (the
    # same instant, whatever their zones) convert alike, in whichever column.
    return isinstance(column.type, UTCDateTime)


def _once_per_value(process: Callable[[Any], Any], done: Converted) -> Callable[[Any], Any]:
    """``process`` (a :class:`~.schema.UTCDateTime`'s), run once per value kept in ``done``."""

    def convert(value: Any) -> Any:
        if value is None:
            return None
        found = done.get(value, done)
        if found is done:
            found = done[value] = process(value)
        return found

    return convert


def _encoded_as_is(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A JSON column's bind processor on SQLite, :class:`.JsonText` handed over as its text
    without the processor's calls: what it would give (the store's serializer passes such
    text through, and SQLite's strings need no processing after it), for each document and
    audit member a page writes."""

    def convert(value: Any) -> Any:
        if type(value) is JsonText:
            return str.__str__(value)
        return process(value)

    return convert


@lru_cache(maxsize=64)
def _positional_insert(
    dialect: sa.Dialect, table: sa.Table, names: tuple[str, ...]
) -> _Positional | None:
    """The insert of ``names`` into ``table`` compiled for ``dialect``, or ``None`` when its
    parameters are not positional or are not exactly ``names`` (a Python-side default the
    statement would compute): SQLAlchemy's own ``executemany`` then does it."""
    compiled = table.insert().compile(dialect=dialect, column_keys=list(names))
    order = compiled.positiontup
    if not compiled.positional or order is None or sorted(order) != sorted(names):
        return None
    passes_text = dialect.name == "sqlite" and dialect._json_serializer is store_dumps
    converted = []
    for position, name in enumerate(order):
        column = table.c[name]
        process: Callable[[Any], Any] | None = column.type._cached_bind_processor(dialect)
        if process is None:
            continue
        if passes_text and isinstance(column.type, sa.JSON):
            process = _encoded_as_is(process)
        converted.append((position, process, _is_timestamp(column)))
    return str(compiled), tuple(order), tuple(converted)


def _execute_many(
    conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]], done: Converted
) -> None:
    """One ``executemany`` of the insert, the rows converted as SQLAlchemy's insert would."""
    prepared = _positional_insert(conn.dialect, table, tuple(rows[0]))
    if prepared is None:
        conn.execute(table.insert(), list(rows))
        return
    statement, order, processors = prepared
    conversions = [
        (position, _once_per_value(process, done) if timestamp else process)
        for position, process, timestamp in processors
    ]
    conn.exec_driver_sql(statement, [tuple(values) for values in _values(rows, order, conversions)])


def _values(
    rows: Sequence[dict[str, Any]],
    order: Sequence[str],
    conversions: Sequence[tuple[int, Callable[[Any], Any]]],
) -> Iterator[list[Any]]:
    """Each row's values in ``order``, those at the positions of ``conversions`` converted: the
    other columns (most of them) are not touched, not even to find they need nothing."""
    for row in rows:
        values = [row[name] for name in order]
        for position, process in conversions:
            values[position] = process(values[position])
        yield values
