"""Counting the SQL statements a block runs: what issue #17's statements per record are."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from usm_bridge.store import Store


@contextmanager
def counting(store: Store) -> Iterator[list[str]]:
    """The statements the driver runs while the block runs (``BEGIN`` left out)."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)
