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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from daemon_fakes import Summary

from usm_bridge import cli, runtime
from usm_bridge.store import Store

STATE = Path(sys.argv[1])
MODE = sys.argv[2]


class SlowEngine:
    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.lock = threading.Lock()

    def cycle(self, instance: str, *, progress: Any = None) -> Summary:
        started = datetime.now(UTC)
        with self.lock:
            # Written whole, then renamed: the test waits for the file and reads it at once,
            # and write_text creates it empty before it writes the name.
            (STATE / "inflight.part").write_text(instance)
            (STATE / "inflight.part").replace(STATE / "inflight")
        steps = 600 if MODE == "stubborn" else 8
        for _ in range(steps):
            time.sleep(0.05)  # one write
            if self.stop.is_set() and MODE == "graceful":
                break
        with self.lock, (STATE / "committed").open("a") as out:
            out.write(f"{instance}\n")
        return Summary(
            instance=instance, started=started, finished=datetime.now(UTC), read=1, stored=1
        )

    def census(self, instance: str) -> int:
        return 0

    def close(self) -> None:
        (STATE / "closed").write_text("yes")


@contextmanager
def open_runtime(config: Any, *, stop: threading.Event, **_: Any) -> Iterator[Any]:
    """The composition root with the real store and this slow engine, closed the same way."""
    with Store.open(config.store.url) as store:
        engine = SlowEngine(stop)
        try:
            # No connector watches (the registry builds plain objects).
            instances = SimpleNamespace(connector=lambda _name: object())
            yield SimpleNamespace(config=config, store=store, engine=engine, instances=instances)
        finally:
            engine.close()


runtime.open_runtime = open_runtime  # type: ignore[assignment]
cli.main(sys.argv[3:])
