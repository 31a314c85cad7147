"""Exception evidence kept on disk while a report is built and rendered, not in memory.

A report over a million calls lists well over a million exceptions, each with its evidence
(the JSON report and the exceptions export list every one; an auditor signs them). Held as
Python objects they were most of the report's memory. Here each outcome's evidence is a
:class:`SpooledEvidence`: a sequence whose items live in one temporary SQLite database per
report (:class:`EvidenceSpool`), written in batches as the checks find them and read back in
order, a batch at a time, by whoever lists them (the JSON writer, the exceptions export, the
first 50 of the HTML and Markdown reports).

Why SQLite's own temporary database (an empty file name): SQLite keeps it in its page cache
while it is small and spills to a file in the temporary folder when it grows, and it removes
that file itself (unlinked as soon as it is opened, on POSIX), so nothing is left behind when
the report fails half way or the process is killed. No dependency beyond the standard library.

Each item is kept as the JSON that :meth:`pydantic.BaseModel.model_dump_json` gives with
``indent=2``, so that the streamed JSON report writes it as it is, indented to its place,
byte for byte what the whole report dumped at once would hold
(:mod:`usm_bridge.conformance.json_stream`). A batch of items is one row (the items' texts
joined, with where each ends): a row per item cost SQLite about 8 µs of CPU each, most of the
evidence's cost in a report over many calls, where a row per batch costs under 1 µs an item.
The items of a row are joined by ``",\n"``, as a JSON list writes them: the JSON report
writes a whole row as it is read, indented to its place in one step (:meth:`json_rows`),
never an item at a time.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from .api import Evidence

__all__ = ["EvidenceSpool", "SpooledEvidence", "spooled_evidence"]

#: Items buffered in memory before they go to the spool in one ``executemany``.
_BATCH = 1000
#: SQLite's page cache of the spool, in KiB: what the spool holds in memory at most.
_CACHE_KIB = 8192
#: Between two items of a row: what a JSON list of ``indent=2`` items has between them
#: before they are indented to their place.
_SEPARATOR = ",\n"
_GAP = len(_SEPARATOR)
#: Bytes of one item's end offset in a row's ``ends``.
_END_SIZE = array("Q").itemsize


class EvidenceSpool:
    """One report's temporary store of evidence lists (see the module docstring).

    The database is opened on the first list written to it, so a report that spools nothing
    costs nothing. Closing it (or letting it be collected) removes it.
    """

    def __init__(self) -> None:
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._ids = itertools.count(1)
        # The report may be rendered in another thread than the one that built it.
        self._lock = threading.Lock()

    def new_list(self, items: Iterable[Evidence] = ()) -> SpooledEvidence:
        """An empty list in this spool (with ``items`` appended)."""
        spooled = SpooledEvidence(self, next(self._ids))
        spooled.extend(items)
        return spooled

    def close(self) -> None:
        """Drop the spool and its file; its lists can no longer be read."""
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            # Never a fresh, empty spool: its lists would read back short.
            raise ValueError("the evidence spool is closed")
        if self._db is None:
            # "": a private temporary database on disk, deleted when closed.
            db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
            # Nothing to recover after a crash: a spool never outlives its report.
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            # One row per batch of a list: ``first`` is the index of its first item, ``bodies``
            # the items' texts joined by _SEPARATOR, ``ends`` where each ends in it (an array
            # of unsigned 64-bit offsets), so the separator need not be kept out of the texts.
            db.execute(
                "CREATE TABLE batches (list INTEGER NOT NULL, first INTEGER NOT NULL, "
                "bodies TEXT NOT NULL, ends BLOB NOT NULL, PRIMARY KEY (list, first))"
            )
            self._db = db
        return self._db

    def _write(self, list_id: int, first: int, bodies: list[str]) -> None:
        # Item k ends after the k + 1 items and k separators up to it (the first offset,
        # -_GAP, stands for the separator no item has before it; summed in C, not per item).
        lengths = map(_GAP.__add__, map(len, bodies))
        ends = array("Q", itertools.islice(itertools.accumulate(lengths, initial=-_GAP), 1, None))
        with self._lock:
            self._connection().execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?)",
                (list_id, first, _SEPARATOR.join(bodies), ends.tobytes()),
            )

    def _copy(self, source: int, target: int) -> None:
        with self._lock:
            self._connection().execute(
                "INSERT INTO batches SELECT ?, first, bodies, ends FROM batches WHERE list = ?",
                (target, source),
            )

    #: The batch holding item ``start``, and every later one that starts before ``stop``.
    _READ = (
        "SELECT first, bodies, ends FROM batches WHERE list = :list AND first < :stop AND first"
        " >= (SELECT max(first) FROM batches WHERE list = :list AND first <= :start)"
        " ORDER BY first"
    )

    def _read(self, list_id: int, start: int, stop: int) -> list[str]:
        """The bodies of items ``start`` to ``stop - 1`` of a list, in order."""
        with self._lock:
            query = {"list": list_id, "start": start, "stop": stop}
            rows = self._connection().execute(self._READ, query).fetchall()
        found: list[str] = []
        for first, bodies, ends_bytes in rows:
            ends = array("Q")
            ends.frombytes(ends_bytes)
            lo, hi = max(start - first, 0), min(stop - first, len(ends))
            begin = ends[lo - 1] + _GAP if lo else 0
            for end in ends[lo:hi]:
                found.append(bodies[begin:end])
                begin = end + _GAP
        return found

    #: The first row of a list from item ``start`` on, and how many items it holds.
    _ROW = (
        "SELECT first, bodies, length(ends) FROM batches WHERE list = ? AND first >= ?"
        " ORDER BY first LIMIT 1"
    )

    def _rows(self, list_id: int) -> Iterator[str]:
        """Each row's bodies of a list, in order, a row at a time."""
        start = 0
        while True:
            with self._lock:
                row = self._connection().execute(self._ROW, (list_id, start)).fetchone()
            if row is None:
                return
            first, bodies, ends_size = row
            yield bodies
            start = first + ends_size // _END_SIZE


class SpooledEvidence(Sequence[Evidence]):
    """An outcome's evidence items, in the order they were appended, kept in a spool.

    It reads like a list (``len``, iteration, indexing, slicing, ``==`` with a list) and
    grows with :meth:`append` and :meth:`extend`; the last few items appended wait in memory
    until a batch is full or the list is read.
    """

    def __init__(self, spool: EvidenceSpool, list_id: int) -> None:
        self._spool = spool
        self._id = list_id
        self._stored = 0
        self._pending: list[str] = []

    def new_like(self) -> SpooledEvidence:
        """An empty list in the same spool."""
        return self._spool.new_list()

    def append(self, item: Evidence) -> None:
        self.append_json(item.model_dump_json(indent=2))

    def append_json(self, body: str) -> None:
        """Append an item given as its ``model_dump_json(indent=2)`` text."""
        self._pending.append(body)
        if len(self._pending) >= _BATCH:
            self._flush()

    def extend(self, items: Iterable[Evidence]) -> None:
        for item in items:
            self.append(item)

    def _flush(self) -> None:
        if self._pending:
            self._spool._write(self._id, self._stored, self._pending)
            self._stored += len(self._pending)
            self._pending = []

    def __len__(self) -> int:
        return self._stored + len(self._pending)

    def json_items(self) -> Iterator[str]:
        """Each item's JSON (``indent=2``, at the top level), in order, a batch at a time."""
        self._flush()
        for start in range(0, self._stored, _BATCH):
            yield from self._spool._read(self._id, start, min(start + _BATCH, self._stored))

    def json_rows(self) -> Iterator[str]:
        """The items' JSON as :meth:`json_items` gives them, joined by ``",\n"``, a batch at a
        time (as many texts as batches; none for no item)."""
        self._flush()
        if self._stored:
            yield from self._spool._rows(self._id)

    def __iter__(self) -> Iterator[Evidence]:
        for body in self.json_items():
            yield Evidence.model_validate_json(body)

    @overload
    def __getitem__(self, index: int) -> Evidence: ...

    @overload
    def __getitem__(self, index: slice) -> list[Evidence]: ...

    def __getitem__(self, index: int | slice) -> Evidence | list[Evidence]:
        self._flush()
        if isinstance(index, slice):
            start, stop, step = index.indices(self._stored)
            if step != 1:
                return list(self)[index]
            if stop <= start:
                return []
            bodies = self._spool._read(self._id, start, stop)
            return [Evidence.model_validate_json(body) for body in bodies]
        position = index + self._stored if index < 0 else index
        if not 0 <= position < self._stored:
            raise IndexError("evidence index out of range")
        (body,) = self._spool._read(self._id, position, position + 1)
        return Evidence.model_validate_json(body)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    def __deepcopy__(self, memo: dict[int, object]) -> SpooledEvidence:
        # A copy in the same spool, made by SQLite (the items are text, nothing is shared).
        self._flush()
        copied = SpooledEvidence(self._spool, next(self._spool._ids))
        self._spool._copy(self._id, copied._id)
        copied._stored = self._stored
        return copied

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"SpooledEvidence({len(self)} items)"


def spooled_evidence(items: Sequence[Evidence]) -> SpooledEvidence | None:
    """``items`` if they are spooled, else ``None``."""
    return items if isinstance(items, SpooledEvidence) else None
