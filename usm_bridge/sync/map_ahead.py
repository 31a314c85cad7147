"""Map a read's next page while the cycle's thread stores the one before it (issue #17).

A backfill's cost is the bridge's own CPU, on one core: each page is mapped (the instance's
mapping and its plugins' hooks), then stored (merge, the page's statements, the commit). While
SQLite steps and commits, or psycopg waits for the server, the GIL is free; :class:`PagePipeline`
maps page N+1 on a thread of its own in that time (:class:`MapAhead`), so the mapping's Python
runs while the store waits, and the server's work overlaps the bridge's.

What it keeps exactly as storing each page right after mapping it:

- **Everything the store sees is done on the cycle's thread, in record order**: pages are
  stored in the order read, each record's outcome handed over in order, dead letters kept
  before the cursor of their page, and a checkpoint's cursor saved only once every record
  before it is stored (in the page's own unit of work, or right after it; :class:`PageEnd`).
  The mapping thread touches no store: killing the process mid-page loses and duplicates
  nothing (the page's unit of work commits whole or not at all).
- **The end of a read**: a page whose mapping ended the read (a mapping plugin's remote error
  that may pass, a mapping file that does not load) has its records before that one stored,
  then the error raised, as before; the page mapped after it is dropped unstored (its records
  get no outcome and are read again: the cursor stays before them).
- **Stop and faults**: a stop ends the read after the page being stored (the page mapped ahead
  is dropped, read again next cycle); waiting for the mapping thread gives up as soon as the
  stop is set. An exception on the cycle's thread (a store failure, a worker's time limit)
  leaves at once: :meth:`MapAhead.close` does not wait for a mapping in flight (a hung plugin
  must not hold a time limit), and the thread ends after that page on its own, storing
  nothing. An exception the mapping thread meets outside a record (a bug of this module) is
  raised on the cycle's thread where it takes that page.
- **Plugins**: the inbound and outbound mapping hooks of a page are called on the mapping
  thread, in record order, possibly while the cycle's thread calls the store-side hooks (the
  router's, ``dead_letter``) for the page before: hooks must be thread-safe, which the daemon,
  running cycles of several instances at once, asks of them already. The mapping hooks of the
  page read after one that ended the read may have been called for records that get no
  outcome this cycle (they are mapped again next cycle); a mapping is a pure function of the
  record, so nothing of it is kept.
- **Memory**: one page mapped ahead at most (two pages of records held, plus the read ahead's).

An instance's ``map_ahead = false`` maps each page on the cycle's thread right before storing it.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..connector import RawRecord
from .page_ingest import PageEnd

if TYPE_CHECKING:
    from .ingest import IngestStage, MappedPage, RecordOutcome

__all__ = ["MapAhead", "PagePipeline"]

log = logging.getLogger(__name__)

#: Seconds between looks at the stop event while waiting for the mapping thread.
_POLL_S = 0.05


class _Failed:
    """The mapping thread raised ``error`` outside any record."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class MapAhead:
    """Pages mapped on a thread of its own, in the order handed over; see the module."""

    def __init__(
        self,
        map_page: Callable[[list[RawRecord]], MappedPage],
        *,
        name: str,
        stop: threading.Event,
    ) -> None:
        """
        :param map_page: maps one page (the ingest stage's ``map_page`` for the instance).
        :param name: the instance's name, for the thread's name.
        :param stop: the engine's stop: :meth:`take` gives up waiting once it is set.
        """
        self._map_page = map_page
        self._stop = stop
        self._closed = False
        self._pages: queue.SimpleQueue[list[RawRecord] | None] = queue.SimpleQueue()
        self._mapped: queue.SimpleQueue[MappedPage | _Failed] = queue.SimpleQueue()
        # The mapping's logs keep the cycle's context (contextvars do not follow a thread).
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._work,), name=f"map-ahead {name}", daemon=True
        )
        self._thread.start()

    def _work(self) -> None:
        while True:
            records = self._pages.get()
            if records is None or self._closed:
                return
            try:
                mapped: MappedPage | _Failed = self._map_page(records)
            except BaseException as exc:  # handed to the cycle's thread, raised where it takes
                mapped = _Failed(exc)
            self._mapped.put(mapped)

    def submit(self, records: list[RawRecord]) -> None:
        """Map ``records`` (a list of its own: the thread reads it) after the pages before."""
        self._pages.put(records)

    def take(self) -> MappedPage | None:
        """The oldest page submitted, once mapped; ``None`` when the stop is set first."""
        while True:
            try:
                mapped = self._mapped.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    return None
                continue
            if isinstance(mapped, _Failed):
                raise mapped.error
            return mapped

    @property
    def busy(self) -> bool:
        """Whether the thread still runs (after ``close(wait=False)``: a page in flight)."""
        return self._thread.is_alive()

    def close(self, *, wait: bool = True) -> None:
        """Stop mapping; pages not taken are dropped (never stored: read again).

        :param wait: wait for the page in flight, if any (without: the thread ends after it).
        """
        if self._closed:
            return
        self._closed = True
        self._pages.put(None)
        if wait:
            self._thread.join()


class ProcMap:
    """PROTOTYPE: pages mapped in a forked child process."""

    def __init__(self, stage: Any, instance: str, stop: threading.Event) -> None:
        import multiprocessing
        import os
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._stop = stop
        self._pages: list[list[RawRecord]] = []
        pid = os.fork()
        if pid == 0:
            self._conn.close()
            try:
                while True:
                    try:
                        records = child.recv()
                    except EOFError:
                        break
                    mapped = stage.map_page(instance, records, stop=None)
                    out = []
                    for item in mapped.records:
                        if isinstance(item, tuple):
                            out.append((item[2], item[3]))
                        else:
                            out.append((item.stage, item.reason))
                    child.send((out, mapped.complete, mapped.ended))
            finally:
                import resource
                ru = resource.getrusage(resource.RUSAGE_SELF)
                with open("/tmp/procmap-child.txt", "a") as f:
                    f.write(f"{ru.ru_utime + ru.ru_stime:.2f}\n")
                os._exit(0)
        child.close()
        self._pid = pid

    def submit(self, records: list[RawRecord]) -> None:
        self._pages.append(records)
        self._conn.send(records)

    def take(self) -> Any:
        from .ingest import MappedPage, Outcome, RecordOutcome
        records = self._pages.pop(0)
        out, complete, ended = self._conn.recv()
        items: list[Any] = []
        for record, (a, b) in zip(records, out):
            if isinstance(a, str) or a is None or not hasattr(a, "source"):
                items.append(RecordOutcome(record, Outcome.DEAD_LETTER, stage=a, reason=b))
            else:
                items.append((record.remote_id and self._instance, record, a, b))
        return MappedPage(items, complete=complete, ended=ended)

    def close(self, *, wait: bool = True) -> None:
        import os
        self._conn.close()
        os.waitpid(self._pid, 0)


class PagePipeline:
    """The pages of one read, each mapped (ahead, with a :class:`MapAhead`) then stored.

    The engine appends records to :attr:`page` and ends a page with :meth:`end_page`; the
    pages are stored in order on the caller's thread, each checkpoint's cursor after its page.
    """

    def __init__(
        self,
        stage: IngestStage,
        instance: str,
        *,
        stop: threading.Event,
        each: Callable[[RecordOutcome], None],
        save_cursor: Callable[[str], None],
        ahead: MapAhead | None,
    ) -> None:
        """
        :param each: called with each record's outcome, in order, once its page is stored.
        :param save_cursor: saves a checkpoint's cursor its page's unit of work did not save.
        :param ahead: maps the pages on its thread; ``None``: on the caller's thread.
        """
        self.stage = stage
        self.instance = instance
        self.stop = stop
        self._each = each
        self._save_cursor = save_cursor
        self._ahead = ahead
        #: The records of the page being read.
        self.page: list[RawRecord] = []
        #: The page mapped ahead and not stored yet: whether it has records, and its end.
        self._pending: tuple[bool, PageEnd | None] | None = None

    def end_page(self, end: PageEnd | None) -> bool:
        """The records read since the last page make a page (ending at ``end``, a checkpoint,
        if given); the page before it is stored. Whether the read goes on: a stop ends it
        after the record in flight, and the records left out are read again.

        :raises Exception: what ended the read while mapping the page stored (see
            :meth:`.ingest.IngestStage.store_mapped`), or a store failure.
        """
        records, self.page = self.page, []
        if self._ahead is None:
            mapped = self.stage.map_page(self.instance, records, stop=self.stop)
            return self._store(mapped if records else None, end)
        if records:
            self._ahead.submit(records)
        previous, self._pending = self._pending, (bool(records), end)
        if previous is None:
            return not self.stop.is_set()
        return self._store_pending(previous)

    def finish(self) -> bool:
        """Store the page mapped ahead, if any (the read ended); whether it was stored."""
        previous, self._pending = self._pending, None
        return previous is None or self._store_pending(previous)

    def _store_pending(self, pending: tuple[bool, PageEnd | None]) -> bool:
        has_records, end = pending
        mapped = None
        if has_records:
            assert self._ahead is not None
            mapped = self._ahead.take()
            if mapped is None:  # stopped while waiting for the mapping
                return False
        return self._store(mapped, end)

    def _store(self, mapped: MappedPage | None, end: PageEnd | None) -> bool:
        if mapped is not None:
            self.stage.store_mapped(self.instance, mapped, stop=self.stop, each=self._each, end=end)
        if self.stop.is_set():
            return False
        if end is not None and not end.stored:
            # Everything before it is committed (page by page): the cursor may move. The
            # page's own unit of work saved it when it stored every record of the page.
            self._save_cursor(end.cursor)
        return True
