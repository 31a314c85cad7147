"""A connector's read run one page ahead of the ingest, in a thread of its own.

Read in the cycle's own thread, a backfill alternates: the connector waits for the tool's next
page (the tool's time, not this process's CPU), then the ingest maps and stores it while the
tool waits for the next request. :class:`ReadAhead` runs ``read_changes`` in a worker thread
that fetches the next page while the ingest stores the one before, so the tool's time and the
bridge's overlap. Nothing else changes:

- The items come out in the order the connector yielded them, and an exception the connector
  raised comes out at the place it was raised (the same object), after the items before it.
  The cursor still moves only when the ingest reaches a checkpoint and stores its page.
- The worker hands the items over a batch at a time (a page: up to the connector's checkpoint,
  at most :data:`BATCH` items), and at most :data:`BATCHES` batches wait (memory stays
  bounded: a few pages of raw records).
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
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Final, Generic, TypeVar

__all__ = ["BATCH", "BATCHES", "ReadAhead"]

T = TypeVar("T")

#: Items handed over at a time, at most: the worker hands over a batch when it is this long or
#: ends at a boundary (a connector's checkpoint, after its page), never item by item: a
#: hand-over wakes the other thread, and one per item cost more CPU than the overlap saved.
BATCH: Final = 500
#: Batches that may wait: the next page of the tool is fetched while the ingest stores this
#: one, and at most about ``BATCH * (BATCHES + 2)`` raw records are held (memory stays flat).
BATCHES: Final = 2
#: How often a worker waiting for room checks whether it was told to stop.
_POLL_SECONDS: Final = 0.05


class _End:
    """The connector's read ended (``error`` is what it raised, or ``None``)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


def _never(item: object) -> bool:
    return False


class ReadAhead(Generic[T]):
    """An iterator over ``source``'s items, read by a worker thread (see the module docstring).

    :param boundary: whether an item ends a batch (the engine's: a checkpoint), so that the
        ingest gets a page as soon as the connector has read it.

    Use it as a context manager, or call :meth:`close` when done with it.
    """

    def __init__(
        self,
        source: Iterable[T],
        *,
        boundary: Callable[[T], bool] = _never,
        batch: int = BATCH,
        batches: int = BATCHES,
        name: str = "read-ahead",
    ) -> None:
        if batch < 1 or batches < 1:
            raise ValueError("batch and batches must be at least 1")
        self._boundary = boundary
        self._size = batch
        self._batches: queue.Queue[list[T] | _End] = queue.Queue(maxsize=batches)
        self._current: Iterator[T] = iter(())
        self._stop = threading.Event()
        self._ended = False
        context = contextvars.copy_context()
        self._worker = threading.Thread(
            target=context.run, args=(self._read, source), name=name, daemon=True
        )
        self._worker.start()

    def _read(self, source: Iterable[T]) -> None:
        end = _End(None)
        batch: list[T] = []
        iterator = iter(source)
        try:
            for item in iterator:
                batch.append(item)
                if len(batch) >= self._size or self._boundary(item):
                    if not self._put(batch):
                        break
                    batch = []
        except BaseException as exc:  # handed over to the consumer, raised there
            end = _End(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()  # in the thread that ran it: a generator's finally runs here
                except Exception as exc:
                    end = end if end.error is not None else _End(exc)
            if not batch or self._put(batch):  # the items before the end come first
                self._put(end)

    def _put(self, item: list[T] | _End) -> bool:
        """Queue ``item`` when there is room; ``False`` once told to stop."""
        while not self._stop.is_set():
            try:
                self._batches.put(item, timeout=_POLL_SECONDS)
            except queue.Full:
                continue
            return True
        return False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        for item in self._current:
            return item
        if self._ended:
            raise StopIteration
        got = self._batches.get()
        if isinstance(got, _End):
            self._ended = True
            self._worker.join()
            if got.error is not None:
                raise got.error
            raise StopIteration
        self._current = iter(got)
        return next(self._current)

    def close(self) -> None:
        """Stop the worker and wait for it (its request in flight ends first)."""
        self._ended = True
        self._current = iter(())
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
