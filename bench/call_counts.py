"""Counting what a run of the bridge asks of its database and of the tools' HTTP APIs.

Used by ``bench_sync_backfill.py`` in the ``usm-bridge`` subprocess it times (through
``count_hook/sitecustomize.py``) and around an in-process run. Each count costs one Python
call per statement or request, next to nothing beside the statement or request itself.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import resource
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests.adapters
import sqlalchemy as sa

#: The environment variable that names the file the hook writes the counts into at exit.
COUNTS_FILE = "USM_BRIDGE_BENCH_COUNTS"


@contextlib.contextmanager
def counting_statements() -> Iterator[list[int]]:
    """Count the statements every SQLAlchemy engine runs (``BEGIN`` excluded).

    The listener sits on the :class:`~sqlalchemy.engine.Engine` class, so it sees the engines
    the store creates without a handle on them; an ``executemany`` counts as one statement, and
    so does a ``COPY`` psycopg runs.
    """
    counter = [0]

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            counter[0] += 1

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        with _counting_copies(counter):
            yield counter
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)


@contextlib.contextmanager
def _counting_copies(counter: list[int]) -> Iterator[None]:
    """Count psycopg's ``COPY`` statements too: the store sends a page's new rows with
    ``cursor.copy`` on PostgreSQL (``usm_bridge.store.copy_rows``), below SQLAlchemy."""
    try:
        import psycopg
    except ImportError:
        yield
        return
    copy = psycopg.Cursor.copy

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return copy(self, *args, **kwargs)

    psycopg.Cursor.copy = counted  # type: ignore[method-assign]
    try:
        yield
    finally:
        psycopg.Cursor.copy = copy  # type: ignore[method-assign]


@contextlib.contextmanager
def counting_requests() -> Iterator[Counter[str]]:
    """Count the HTTP requests sent through ``requests`` (every session), by URL path."""
    paths: Counter[str] = Counter()
    send = requests.adapters.HTTPAdapter.send

    def counted(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        paths[urlsplit(request.url).path] += 1
        return send(self, request, *args, **kwargs)

    requests.adapters.HTTPAdapter.send = counted  # type: ignore[method-assign]
    try:
        yield paths
    finally:
        requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]


def count_until_exit(target: Path) -> None:
    """Count from now on; at the interpreter's exit write the counts to ``target`` as JSON.

    A child the command forks to read (``usm_bridge.sync.child_read``) counts its own from
    zero and writes them to ``TARGET.PID`` as it exits (it runs no ``atexit`` handler);
    :func:`read_counts` adds them up."""
    stack = contextlib.ExitStack()
    statements = stack.enter_context(counting_statements())
    paths = stack.enter_context(counting_requests())

    def write(to: Path, **more: float) -> None:
        counts = {"statements": statements[0], "requests": dict(paths), **more}
        to.write_text(json.dumps(counts), encoding="utf-8")

    def write_child() -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        write(
            target.with_name(f"{target.name}.{os.getpid()}"),
            child_cpu=usage.ru_utime + usage.ru_stime,
        )

    def in_child() -> None:
        # The parent's counts so far are the parent's: the child starts from zero.
        statements[0] = 0
        paths.clear()
        from usm_bridge.sync.child_read import at_child_exit

        at_child_exit(write_child)

    os.register_at_fork(after_in_child=in_child)

    def at_exit() -> None:
        stack.close()
        write(target)

    atexit.register(at_exit)


def read_counts(target: Path) -> tuple[int, Counter[str]]:
    """(statements, requests by path) that :func:`count_until_exit` wrote, the reading
    children's included."""
    statements, requests = 0, Counter[str]()
    for path in [target, *children_of(target)]:
        counts = json.loads(path.read_text(encoding="utf-8"))
        statements += int(counts["statements"])
        requests.update(counts["requests"])
    return statements, requests


def children_of(target: Path) -> list[Path]:
    """The counts the reading children of the run counting into ``target`` wrote."""
    return sorted(target.parent.glob(f"{target.name}.*"))


def child_cpu(target: Path) -> float:
    """CPU seconds the reading children of the run counting into ``target`` used (each
    measured by the child itself as it exits; ``os.wait4`` of the command includes them)."""
    return sum(
        float(json.loads(path.read_text(encoding="utf-8")).get("child_cpu", 0.0))
        for path in children_of(target)
    )
