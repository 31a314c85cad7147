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
- ``threads``: a thread of its own runs beside the cycle: the read stays in this process.

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
from pathlib import Path
from typing import Any

from sync.memory_tool import BuggyInbound, MemoryConnector, make_bridge, make_config
from usm_bridge.connector import Checkpoint, RawRecord
from usm_bridge.store import Store

HR = "hr-tool"
COUNT, PAGE, KILL_AT = 30, 4, 9
MALFORMED = {3, 10, 22}
BOOM = {7, 17}


class ChildMemoryConnector(MemoryConnector):
    reads_in_child = True

    def __init__(self, base: MemoryConnector, folder: Path, *, stop_at: str | None) -> None:
        super().__init__(base.tool, page=PAGE)
        self.folder = folder
        self.stop_at = stop_at
        self.parent = os.getpid()

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        with (self.folder / "read-pids").open("a") as pids:
            pids.write(f"{os.getpid()}\n")
        for index, item in enumerate(super().read_changes(cursor)):
            if isinstance(item, RawRecord) and os.getpid() != self.parent:
                if self.stop_at == "kill" and index >= KILL_AT:
                    os.kill(os.getpid(), signal.SIGKILL)
                if self.stop_at == "hang" and index >= KILL_AT:
                    (self.folder / "child-pid").write_text(str(os.getpid()))
                    while True:
                        time.sleep(1)
            yield item


def _ticket(tool: Any, n: int) -> None:
    if n in MALFORMED:
        tool.add(description=f"no title {n}", status="new", kind="request")
    elif n in BOOM:
        tool.add(title=f"Boom {n}", status="new", kind="request")
    else:
        tool.add(title=f"Chair {n}", status="new", kind="request")


def _report(summary: Any) -> None:
    report = {"error": summary.error, "pid": os.getpid(), **summary.counters()}
    print(json.dumps(report), flush=True)


def main(url: str, folder: Path, scenario: str) -> int:
    store = Store.open(url)
    bridge = make_bridge(store, make_config(folder, units=("hr",), routes=[]))
    for n in sorted(BOOM):
        bridge.host.register(BuggyInbound(f"Boom {n}", ValueError(f"boom on {n}")))
    hr = bridge.tools[HR]
    for n in range(COUNT):
        _ticket(hr, n)
    stop_at = scenario if scenario in ("kill", "hang") else None
    connector = ChildMemoryConnector(bridge.connectors[HR], folder, stop_at=stop_at)
    bridge.connectors[HR] = connector
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
