"""``usm-bridge daemon`` with a fake engine, for the signal tests (run as a subprocess).

    python daemon_fake_main.py STATE_DIR MODE usm-bridge-arguments...

MODE ``graceful``: a cycle "writes" in small steps and, once the stop event is set, finishes
the step in flight, "commits" (appends to STATE_DIR/committed) and returns.
MODE ``stubborn``: a cycle ignores the stop event for 30 s (to test the second signal).
Each cycle touches STATE_DIR/inflight while it runs.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon_fakes import Summary

from usm_bridge import cli
from usm_bridge.sync import daemon

STATE = Path(sys.argv[1])
MODE = sys.argv[2]


class SlowEngine:
    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.lock = threading.Lock()

    def run_cycle(self, instance: str, *, progress: Any = None) -> Summary:
        started = datetime.now(UTC)
        with self.lock:
            (STATE / "inflight").write_text(instance)
        steps = 600 if MODE == "stubborn" else 8
        for _ in range(steps):
            time.sleep(0.05)  # one write
            if self.stop.is_set() and MODE == "graceful":
                break
        with self.lock, (STATE / "committed").open("a") as out:
            out.write(f"{instance}\n")
        return Summary(instance, started, datetime.now(UTC), read=1, stored=1)

    def census(self, instance: str) -> int:
        return 0

    def close(self) -> None:
        (STATE / "closed").write_text("yes")


def make_engine(config: Any, store: Any, host: Any, stop: threading.Event) -> SlowEngine:
    return SlowEngine(stop)


daemon.make_engine = make_engine  # type: ignore[assignment]
cli.main(sys.argv[3:])
