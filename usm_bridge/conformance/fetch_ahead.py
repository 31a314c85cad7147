"""Fetching a cursor's next batch while the caller works on the last one.

On PostgreSQL each batch of a server-side cursor is a round trip in which the server steps
its plan (an index walk, a join, the first fetch of a sort the whole sort) while the report's
process waits; then the process works on the batch while the server waits. :func:`fetched_ahead`
runs the fetches in a thread one batch early, so the server's share and the round trips overlap
the caller's work: the driver waits on its socket without the GIL. psycopg's connection
serialises its cursors' commands, so other queries on the same connection (the other streams,
the keyed ones) wait for a fetch under way and never interleave with it.

Only for drivers whose connections may be used from another thread (psycopg); SQLite's module
refuses a connection used outside its thread, and steps its rows in process anyway.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Sequence
from contextlib import suppress
from typing import Any, Final, TypeVar

__all__ = ["WHOLE_READ_SETTINGS", "batches", "fetched_ahead"]

T = TypeVar("T")

#: PostgreSQL settings for a transaction whose cursors are read to their end (the report's
#: pass), set with ``SET LOCAL``, so they end with it (never the server's configuration).
#: A cursor is planned for its first tenth by default (``cursor_tuple_fraction``): an index walk
#: of ``calls`` fetching each row from the table in the index's order, and nested loops over it
#: for the related tables, which at 1,000,000 calls cost 65, 46 and 10 s of the server's time
#: against 9, 8 and 2 s for a scan and a sort (bench/README.md). ``work_mem`` lets the calls'
#: sort (640 bytes a row) run in memory at 100,000 calls and merge fewer runs at a million: it
#: is what each sort may hold, three at most (the calls and two related streams), for the
#: transaction only.
WHOLE_READ_SETTINGS: Final = (
    "SET LOCAL cursor_tuple_fraction = 1.0",
    "SET LOCAL work_mem = '64MB'",
)


class _Failed:
    """What the fetching thread hands over when a fetch raised: the error, for the caller."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def fetched_ahead(fetch: Callable[[], Sequence[T]]) -> Generator[Sequence[T], None, None]:
    """The batches ``fetch`` returns until an empty one, each fetched by a thread while the
    caller works on the one before (one batch ahead, so memory stays at two batches).

    An error of ``fetch`` is raised here, where the caller reads the next batch. Closing the
    generator early (``break`` in a ``with closing(...)`` block, an error of the caller's)
    stops the thread and waits for the fetch under way to end: the cursor is the caller's to
    close, never while a fetch runs on it. The thread starts on the first batch asked for.
    """
    ahead: queue.Queue[Sequence[T] | _Failed] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def work() -> None:
        try:
            while not stop.is_set():
                batch = fetch()
                ahead.put(batch)
                if not batch:
                    return
        except BaseException as error:  # handed to the caller, raised there
            ahead.put(_Failed(error))

    thread = threading.Thread(target=work, name="usm-bridge-fetch-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = ahead.get()
            if isinstance(item, _Failed):
                raise item.error
            if not item:
                return
            yield item
    finally:
        stop.set()
        # The thread may wait to hand over a batch: take it, so the put ends and the thread
        # sees ``stop`` (at most one batch waits, the queue holds one).
        with suppress(queue.Empty):
            ahead.get_nowait()
        thread.join()


def batches(cursor: Any, size: int, *, ahead: bool) -> Generator[Sequence[Any], None, None]:
    """A DB-API cursor's rows (its query executed) as batches of ``size``, fetched ahead by
    :func:`fetched_ahead` when ``ahead``, else each when asked for. Close it (``closing``)
    before the cursor."""

    def fetch() -> Sequence[Any]:
        rows: Sequence[Any] = cursor.fetchmany(size)
        return rows

    return fetched_ahead(fetch) if ahead else _each(fetch)


def _each(fetch: Callable[[], Sequence[T]]) -> Generator[Sequence[T], None, None]:
    while batch := fetch():
        yield batch
