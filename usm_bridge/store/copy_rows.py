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
backfill's CPU on SQLite. A timestamp is converted once per value and statement: a new row's
created and updated times, and the audit events of one record, are one moment. A failing
``COPY`` or insert raises the SQLAlchemy error the insert would have raised (an
``IntegrityError`` for a broken constraint ...), so the unit of work that sent it rolls back as
for any statement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["COPY_FROM", "insert_rows"]

#: Fewer rows go out as ``executemany``: one or two inserts cost no more than a ``COPY``.
COPY_FROM: Final = 3


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (each with the same keys, columns of ``table``) into ``table``."""
    if not rows:
        return
    dialect = conn.dialect
    if len(rows) < COPY_FROM or (dialect.name, dialect.driver) != ("postgresql", "psycopg"):
        _execute_many(conn, table, rows)
        return
    names = list(rows[0])
    columns = [table.c[name] for name in names]
    processors: list[Callable[[Any], Any] | None] = []
    for column in columns:
        process: Callable[[Any], Any] | None = column.type.dialect_impl(dialect).bind_processor(
            dialect
        )
        if process is not None and _is_timestamp(column):
            process = _once_per_value(process)
        processors.append(process)
    quote = dialect.identifier_preparer.quote
    statement = f"COPY {quote(table.name)} ({', '.join(quote(name) for name in names)}) FROM STDIN"
    raw = conn.connection.driver_connection
    assert raw is not None
    dbapi = dialect.loaded_dbapi
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                values = (row[name] for name in names)
                copy.write_row(
                    [
                        value if process is None else process(value)
                        for process, value in zip(processors, values, strict=True)
                    ]
                )
    except dbapi.Error as exc:
        # As SQLAlchemy wraps a driver's error, the parameters (ticket data) kept out.
        raise sa.exc.DBAPIError.instance(
            statement, None, exc, dbapi.Error, hide_parameters=True, dialect=dialect
        ) from exc


#: A compiled positional insert: its SQL, and per parameter the row key, bind processor and
#: whether it is a timestamp's.
_Positional = tuple[str, tuple[tuple[str, Callable[[Any], Any] | None, bool], ...]]


def _is_timestamp(column: sa.Column[Any]) -> bool:
    kind = column.type
    if isinstance(kind, sa.types.TypeDecorator):  # its own python_type says object
        kind = kind.impl_instance
    return isinstance(kind, sa.DateTime)


def _once_per_value(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``process``, run once per distinct value (a statement's rows share their timestamps)."""
    done: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        found = done.get(value, done)
        if found is done:
            found = done[value] = process(value)
        return found

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
    return str(compiled), tuple(
        (name, table.c[name].type._cached_bind_processor(dialect), _is_timestamp(table.c[name]))
        for name in order
    )


def _execute_many(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """One ``executemany`` of the insert, the rows converted as SQLAlchemy's insert would."""
    prepared = _positional_insert(conn.dialect, table, tuple(rows[0]))
    if prepared is None:
        conn.execute(table.insert(), list(rows))
        return
    statement, prepared_parameters = prepared
    parameters = [
        (name, _once_per_value(process) if timestamp and process is not None else process)
        for name, process, timestamp in prepared_parameters
    ]
    conn.exec_driver_sql(
        statement,
        [
            tuple(
                row[name] if process is None else process(row[name]) for name, process in parameters
            )
            for row in rows
        ],
    )
