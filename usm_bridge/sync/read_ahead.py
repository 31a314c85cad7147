"""A connector's read run one page ahead of the ingest, in a thread of its own.

Read in the cycle's own thread, a backfill alternates: the connector waits for the tool's next
page (the tool's time, not this process's CPU), then the ingest maps and stores it while the
tool waits for the next request. :class:`ReadAhead` runs ``read_changes`` in a worker thread
that fetches the next page while the ingest stores the one before, so the tool's time and the
bridge's overlap. Nothing else changes:

- The items come out in the order the connector yielded them, and an exception the connector
  raised comes out at the place it was raised (the same object), after the items before it.
  The cursor still moves only when the ingest reaches a checkpoint and stores its page.
- At most ``ahead`` items wait (memory stays bounded: a page or two of raw records).
- :meth:`ReadAhead.close` (also when the consumer stops early, on a stop request or a store
  error) tells the worker to stop, waits for the request in flight to end, and closes the
  connector's generator in the thread that ran it: once it returns the connector is used by
  the caller's thread alone again (the outbox drain pushes through it after the read).
  Records read ahead but never taken are not lost: the cursor stays before them, so they are
  read again.

The worker runs in a copy of the caller's context (:mod:`contextvars`), so whatever the
connector reads from it (trace ids, settings) is what it would read in the caller's thread.
A connector opts in with ``reads_ahead = True`` (:class:`~usm_bridge.connector.Connector`):
one whose clients are bound to the thread that made them (a SQLite connection, a thread-local
session) keeps reading in the cycle's thread.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Final, Generic, TypeVar

__all__ = ["AHEAD", "ReadAhead"]

T = TypeVar("T")

#: Items that may wait: a little over one page of the engine (100) and of the connectors
#: (Jira 100, ServiceNow up to 1,000 records a request), so the worker fetches the next page of
#: the tool while the ingest stores the current one.
AHEAD: Final = 1_200
#: How often a worker waiting for room checks whether it was told to stop.
_POLL_SECONDS: Final = 0.05


class _End:
    """The connector's read ended (``error`` is what it raised, or ``None``)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class ReadAhead(Generic[T]):
    """An iterator over ``source``'s items, read by a worker thread (see the module docstring).

    Use it as a context manager, or call :meth:`close` when done with it.
    """

    def __init__(
        self, source: Iterable[T], *, ahead: int = AHEAD, name: str = "read-ahead"
    ) -> None:
        if ahead < 1:
            raise ValueError("ahead must be at least 1")
        self._items: queue.Queue[T | _End] = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._ended = False
        context = contextvars.copy_context()
        self._worker = threading.Thread(
            target=context.run, args=(self._read, source), name=name, daemon=True
        )
        self._worker.start()

    def _read(self, source: Iterable[T]) -> None:
        end = _End(None)
        iterator = iter(source)
        try:
            for item in iterator:
                if not self._put(item):
                    break
        except BaseException as exc:  # handed over to the consumer, raised there
            end = _End(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()  # in the thread that ran it: a generator's finally runs here
                except Exception as exc:
                    end = end if end.error is not None else _End(exc)
            self._put(end)

    def _put(self, item: T | _End) -> bool:
        """Queue ``item`` when there is room; ``False`` once told to stop."""
        while not self._stop.is_set():
            try:
                self._items.put(item, timeout=_POLL_SECONDS)
            except queue.Full:
                continue
            return True
        return False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._ended:
            raise StopIteration
        item = self._items.get()
        if isinstance(item, _End):
            self._ended = True
            self._worker.join()
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the worker and wait for it (its request in flight ends first)."""
        self._ended = True
        self._stop.set()
        self._worker.join()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
