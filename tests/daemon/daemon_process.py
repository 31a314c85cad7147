"""A ``usm-bridge daemon`` process seen through its JSON log lines, for the tests that run one."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Running:
    proc: subprocess.Popen[str]
    state: Path
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[dict[str, Any]] = field(default_factory=list)

    def event(
        self, name: str, timeout: float = 20.0, *, where: Callable[[dict[str, Any]], bool] = any
    ) -> dict[str, Any]:
        """The first log line of event ``name`` (for which ``where`` holds, if given)."""

        def wanted(entry: dict[str, Any]) -> bool:
            return entry.get("event") == name and (where is any or where(entry))

        for entry in self.seen:
            if wanted(entry):
                return entry
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:  # the process closed its standard error
                break
            entry = json.loads(line)  # every line is JSON
            self.seen.append(entry)
            if wanted(entry):
                return entry
        raise AssertionError(f"no {name!r} log line; saw {self.seen}")

    def rest(self) -> list[dict[str, Any]]:
        """Every line until the process closed its standard error."""
        while (line := self.lines.get(timeout=10)) is not None:
            self.seen.append(json.loads(line))
        return self.seen


@contextmanager
def reading_logs(proc: subprocess.Popen[str], state: Path) -> Iterator[Running]:
    """The process's standard error read line by line in a thread; killed if still running
    when the block ends."""
    assert proc.stderr is not None
    running = Running(proc, state)
    stderr = proc.stderr

    def pump() -> None:
        for line in stderr:
            running.lines.put(line)
        running.lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        reader.join(10)


def wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
