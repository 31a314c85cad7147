"""Read a connector's next page while the engine stores the one before it (issue #17).

Without it, a cycle asks the tool for the next page only once the current one is mapped and
stored: the tool's serving time (hundreds of milliseconds a page for Jira Cloud) and the
bridge's own work add up. :class:`ReadAhead` runs the connector's ``read_changes`` iterator on a
thread of its own, one page ahead of the engine: while a socket waits the GIL is free, so the
engine maps and stores page N while the tool serves page N+1.

What it keeps exactly as a read on the engine's thread:

- **Order and checkpoints**: the items come out in the order the connector yielded them, each
  checkpoint a value made when the connector yielded it; the engine stores a cursor only after
  the page before it, as before (the read-ahead never touches the store).
- **Faults**: an exception the connector raises (after its own retries, on its thread) is
  raised by ``next()`` where the engine would have met it, after every item yielded before
  it: the same records are stored, the same cursor kept, the same error reported.
- **One page ahead**: the thread waits once it holds the checkpoint after the page read
  ahead while the engine is still storing the page before (a checkpoint counts until the
  engine asks for what follows it, its cursor stored), or holds :data:`READ_AHEAD_RECORDS`
  records not taken yet (a connector whose checkpoints are far apart). Memory stays flat.
  Items are handed over a batch at a time (up to a checkpoint): the threads wake each other
  once a page, not once a record.
- **The connector to one thread at a time**: while a read-ahead is open, only its thread uses
  the connector; at the read's normal end :meth:`ReadAhead.close` waits for it (the
  connector's generator is closed on that thread) before the engine lets go of the instance.

What differs: a read the engine ends early (a stop, a store failure) may have asked the tool
for one page more than it takes; nothing of it is stored, and the next cycle reads it again
from the stored cursor. Such an end does not wait for the thread's request in flight (a hung
tool must not hold a stop or a worker's time limit): the thread ends it, and the read, on its
own, with the connector it holds; the engine retires that connector
(``InstanceRegistry.retire``), so that whatever runs next builds a fresh one and no connector
is ever used on two threads (an injected one, a test's, cannot be rebuilt). An instance's
``read_ahead = false`` reads on the engine's thread.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import deque
from collections.abc import Iterator
from typing import Final

from ..connector import Checkpoint, RawRecord

__all__ = ["READ_AHEAD_RECORDS", "ReadAhead"]

log = logging.getLogger(__name__)

#: Records waiting to be taken at most, for a connector whose checkpoints are far apart: one
#: ServiceNow page (its largest page size shipped), so that its next page is asked for while
#: the engine still stores this one.
READ_AHEAD_RECORDS = 1000
#: Records the reading thread hands over at once at most (a checkpoint ends a batch sooner).
HANDOVER_BATCH = 1000
#: Checkpoints not done with at most: the end of the page the engine is storing and that of
#: the page read ahead.
_CHECKPOINTS_AHEAD = 2

Item = RawRecord | Checkpoint


class _End:
    """The connector's iterator is exhausted."""


class _Failed:
    """The connector's iterator raised ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END: Final = _End()


class ReadAhead(Iterator[Item]):
    """``items`` read on a thread of its own, a page ahead of the caller; see the module.

    Use it as a context manager (or call :meth:`close`): the thread must be done with the
    connector before anything else uses it.
    """

    def __init__(
        self,
        items: Iterator[Item],
        *,
        name: str,
        max_records: int = READ_AHEAD_RECORDS,
        batch: int = HANDOVER_BATCH,
    ) -> None:
        """
        :param items: the connector's ``read_changes`` iterator (not started yet).
        :param name: the instance's name, for the thread's name.
        :param max_records: records read and not yet taken by the caller at most (a batch
            counts as taken when the caller takes its first item).
        :param batch: records handed over at once at most (a checkpoint ends a batch sooner).
        """
        self._items = items
        self._max_records = max_records
        self._batch = batch
        self._cond = threading.Condition()
        #: Batches handed over, oldest first; the last one may end in an _End or a _Failed.
        self._waiting: deque[list[Item | _End | _Failed]] = deque()
        #: The batch the caller takes items from (its own: no lock needed).
        self._taking: deque[Item | _End | _Failed] = deque()
        self._records = 0
        #: Checkpoints read and not yet done with: waiting, or taken by the caller, who stores
        #: the page before it and then its cursor until it asks for the next item.
        self._checkpoints = 0
        self._holding = False
        # Who waits on the condition: woken only when there is something for them.
        self._producer_waits = False
        self._caller_waits = False
        self._closed = False
        self._done = False
        # The connector's logs keep the cycle's context (contextvars do not follow a thread).
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._produce,), name=f"read-ahead {name}", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        # An exception (a worker's time limit, an interrupt) ends the read at once: the thread
        # may wait in a request to a hung tool that the engine's own thread would never have
        # sent, and is left to end it.
        self.close(wait=exc_type is None)

    def _room(self) -> bool:
        return self._checkpoints < _CHECKPOINTS_AHEAD and self._records < self._max_records

    def _produce(self) -> None:
        items = self._items
        try:
            ended = False
            while not ended:
                with self._cond:
                    while not self._closed and not self._room():
                        self._producer_waits = True
                        self._cond.wait()
                        self._producer_waits = False
                    if self._closed:
                        return
                    limit = min(self._batch, self._max_records - self._records)
                # A batch at a time, up to a checkpoint: one hand-over (and one wake-up of the
                # caller, one GIL hand-over) a page, not one a record.
                batch: list[Item | _End | _Failed] = []
                records = checkpoints = 0
                while records < limit:
                    try:
                        item = next(items)
                    except StopIteration:
                        batch.append(_END)
                        ended = True
                        break
                    except BaseException as exc:  # handed to the caller, raised where it reads
                        batch.append(_Failed(exc))
                        ended = True
                        break
                    batch.append(item)
                    if isinstance(item, Checkpoint):
                        checkpoints += 1
                        break
                    records += 1
                with self._cond:
                    self._waiting.append(batch)
                    self._records += records
                    self._checkpoints += checkpoints
                    if self._caller_waits:
                        self._cond.notify_all()
        finally:
            # As dropping it on the caller's thread did: the generator's own clean-up (a
            # ``finally``, a ``with``) runs, here, before close() lets go of the connector.
            close = getattr(items, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.warning("closing the read of %s failed", self._thread.name, exc_info=True)

    def _next_batch(self) -> None:
        """Take the next batch handed over (waiting for it), and note a checkpoint done with."""
        with self._cond:
            if self._holding:
                # The caller asks for what follows the checkpoint it took: the page before it
                # is stored, and so is its cursor.
                self._holding = False
                self._checkpoints -= 1
            if not self._taking:
                while not self._waiting:
                    self._caller_waits = True
                    self._cond.wait()
                    self._caller_waits = False
                self._taking.extend(self._waiting.popleft())
                self._records -= sum(1 for item in self._taking if isinstance(item, RawRecord))
            if self._producer_waits and self._room():
                self._cond.notify_all()

    def __next__(self) -> Item:
        if self._done:
            raise StopIteration
        if self._holding or not self._taking:
            self._next_batch()
        outcome = self._taking.popleft()
        if isinstance(outcome, _End):
            self._done = True
            raise StopIteration
        if isinstance(outcome, _Failed):
            self._done = True
            raise outcome.error
        if isinstance(outcome, Checkpoint):
            self._holding = True
        return outcome

    @property
    def busy(self) -> bool:
        """Whether the thread still uses the connector (after ``close(wait=False)``: a request
        in flight it has not ended yet)."""
        return self._thread.is_alive()

    def close(self, *, wait: bool = True) -> None:
        """Stop reading ahead. What was read ahead and not taken is dropped: its cursor was
        never stored, so the next read starts before it.

        :param wait: wait until the thread is done with the connector (the request in flight,
            if any, ends first). Without, the thread ends that request and the read on its own
            (a stop, a time limit: they must not wait for a hung tool); while :attr:`busy`,
            the caller must not use the connector (the engine retires it).
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._done = True
            self._waiting.clear()
            self._taking.clear()
            self._cond.notify_all()
        if wait:
            self._thread.join()
