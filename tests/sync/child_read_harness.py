"""A cycle whose read runs in a forked child (for ``test_child_read``), in a process of its own:
``python child_read_harness.py STORE_URL FOLDER SCENARIO``.

A fork is only made from a process with no other thread (``usm_bridge.sync.fork_safety``), and
pytest's workers run threads of their own, so the cycle runs here. hr's memory tool gets
``COUNT`` tickets: most good, ``MALFORMED`` without a title (the mapping refuses them), and
``BOOM`` on which a mapping plugin raises. Its connector declares ``reads_in_child`` and
writes the pid of each process it reads in to ``FOLDER/read-pids``. Scenarios:

- ``read``: one cycle;
- ``kill``: the first cycle's child SIGKILLs itself at record ``KILL_AT`` (in the middle of a
  page), then a second cycle with a connector that does not;
- ``hang``: the child waits for ever at record ``KILL_AT`` (after writing its pid to
  ``FOLDER/child-pid``): the test kills this process, or sends it SIGTERM (a stop);
- ``threads``: a thread of its own runs beside the cycle: the read stays in this process;
- ``wrapped``: the connector is wrapped in a class that does not subclass ``Connector`` and
  delegates to it by ``__getattr__`` (as ``tests/daemon``'s ``HeldConnector``, or a
  third-party plugin): the wrapper declares nothing, so the read stays in this process;
- ``files``: the tickets carry files (``FILED``: one each, ``TWICE``: the same bytes twice,
  two of them share one file's bytes); each download writes ``PID FILE-ID`` to
  ``FOLDER/downloads``;
- ``files-kill``: ``files`` with the first cycle's child SIGKILLed at record ``KILL_AT``, then
  a second cycle.

Prints one JSON line per cycle: its summary's error and counters, and this process's pid.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sync.memory_files import FilesConnector, FileShelf, files_bridge, files_config, sha
from sync.memory_tool import BuggyInbound, MemoryConnector, make_bridge, make_config
from usm_bridge.connector import Checkpoint, RawRecord
from usm_bridge.store import Store

HR = "hr-tool"
COUNT, PAGE, KILL_AT = 30, 4, 9
MALFORMED = {3, 10, 22}
BOOM = {7, 17}
#: Tickets with one file each, with the same file's bytes twice, and two sharing their bytes.
FILED = {0, 1, 2, 4, 5, 8, 9, 11, 12, 13, 20, 25, 29}
TWICE = {6, 14}
SHARED = (27, 28)


def _read_here_or_die(
    connector: Any, items: Iterator[RawRecord | Checkpoint]
) -> Iterator[RawRecord | Checkpoint]:
    """``items``, each process that reads noted, the child killed or hung at ``KILL_AT``."""
    with (connector.folder / "read-pids").open("a") as pids:
        pids.write(f"{os.getpid()}\n")
    for index, item in enumerate(items):
        if isinstance(item, RawRecord) and os.getpid() != connector.parent:
            if connector.stop_at == "kill" and index >= KILL_AT:
                os.kill(os.getpid(), signal.SIGKILL)
            if connector.stop_at == "hang" and index >= KILL_AT:
                (connector.folder / "child-pid").write_text(str(os.getpid()))
                while True:
                    time.sleep(1)
        yield item


class ChildMemoryConnector(MemoryConnector):
    reads_in_child = True

    def __init__(self, base: MemoryConnector, folder: Path, *, stop_at: str | None) -> None:
        super().__init__(base.tool, page=PAGE)
        self.folder = folder
        self.stop_at = stop_at
        self.parent = os.getpid()

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        return _read_here_or_die(self, super().read_changes(cursor))


class ChildFilesConnector(FilesConnector):
    """Files listed with each record (in the reading process); each download noted with the
    pid of the process that made it."""

    reads_in_child = True

    def __init__(
        self, base: MemoryConnector, shelf: FileShelf, folder: Path, *, stop_at: str | None
    ) -> None:
        super().__init__(base.tool, shelf, page=PAGE)
        self.folder = folder
        self.stop_at = stop_at
        self.parent = os.getpid()

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        return _read_here_or_die(self, super().read_changes(cursor))

    @contextmanager
    def open_attachment(self, attachment_id: str) -> Iterator[Iterator[bytes]]:
        with (self.folder / "downloads").open("a") as downloads:
            downloads.write(f"{os.getpid()} {attachment_id}\n")
        with super().open_attachment(attachment_id) as chunks:
            yield chunks


class Wrapped:
    """A connector that does not subclass ``Connector``: it delegates to one by ``__getattr__``
    (so ``reads_in_child`` on an instance would read the wrapped one's)."""

    def __init__(self, real: ChildMemoryConnector) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        yield from self._real.read_changes(cursor)


def _ticket(tool: Any, n: int) -> str:
    if n in MALFORMED:
        return str(tool.add(description=f"no title {n}", status="new", kind="request"))
    title = f"Boom {n}" if n in BOOM else f"Chair {n}"
    return str(tool.add(title=title, status="new", kind="request"))


def _report(summary: Any) -> None:
    report = {"error": summary.error, "pid": os.getpid(), **summary.counters()}
    print(json.dumps(report), flush=True)


def _file(shelf: FileShelf, ticket: str, n: int) -> None:
    if n in FILED:
        shelf.attach(ticket, f"form-{n}.pdf", b"%PDF-1.4 form " + str(n).encode() * 300)
    if n in TWICE:
        for _ in range(2):
            shelf.attach(ticket, f"scan-{n}.png", b"\x89PNG scan " + str(n).encode() * 200)
    if n in SHARED:
        shelf.attach(ticket, f"policy-{n}.txt", b"the same policy text\n" * 50)


def _files_cycles(url: str, folder: Path, scenario: str) -> int:
    store = Store.open(url)
    bridge = files_bridge(store, files_config(folder, units=("hr",), routes=[]))
    for n in sorted(BOOM):
        bridge.host.register(BuggyInbound(f"Boom {n}", ValueError(f"boom on {n}")))
    hr, shelf = bridge.tools[HR], bridge.shelves[HR]
    for n in range(COUNT):
        _file(shelf, _ticket(hr, n), n)
    # What the tool holds, for the test to account for: each file's record and SHA-256.
    held = {fid: [f.record, sha(f.content)] for fid, f in shelf.files.items()}
    (folder / "files.json").write_text(json.dumps(held))
    stop_at = "kill" if scenario == "files-kill" else None
    connector = ChildFilesConnector(bridge.connectors[HR], shelf, folder, stop_at=stop_at)
    bridge.connectors[HR] = connector
    bridge.restart()
    _report(bridge.engine.run_cycle(HR))
    if stop_at is not None:
        connector.stop_at = None
        _report(bridge.engine.run_cycle(HR))
    return 0


def main(url: str, folder: Path, scenario: str) -> int:
    if scenario.startswith("files"):
        return _files_cycles(url, folder, scenario)
    store = Store.open(url)
    bridge = make_bridge(store, make_config(folder, units=("hr",), routes=[]))
    for n in sorted(BOOM):
        bridge.host.register(BuggyInbound(f"Boom {n}", ValueError(f"boom on {n}")))
    hr = bridge.tools[HR]
    for n in range(COUNT):
        _ticket(hr, n)
    stop_at = scenario if scenario in ("kill", "hang") else None
    connector = ChildMemoryConnector(bridge.connectors[HR], folder, stop_at=stop_at)
    bridge.connectors[HR] = Wrapped(connector) if scenario == "wrapped" else connector  # type: ignore[assignment]
    bridge.restart()
    signal.signal(signal.SIGTERM, lambda *_: bridge.stop.set())
    if scenario == "threads":
        release = threading.Event()
        beside = threading.Thread(target=release.wait, name="beside")
        beside.start()
        _report(bridge.engine.run_cycle(HR))
        release.set()
        beside.join()
        return 0
    _report(bridge.engine.run_cycle(HR))
    if scenario == "kill":
        bridge.connectors[HR] = ChildMemoryConnector(connector, folder, stop_at=None)
        bridge.restart()
        _report(bridge.engine.run_cycle(HR))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3]))
