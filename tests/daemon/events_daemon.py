"""A ``usm-bridge daemon`` process taking events, seen through its JSON log lines: for the
tests that send it deliveries from a simulator over loopback."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


class DaemonProcess:
    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "usm_bridge", "daemon", "-c", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, cwd=config.parent, env=env,
        )  # fmt: skip
        self.entries: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line)
                with contextlib.suppress(ValueError):  # a line that is not JSON: kept as text
                    self.entries.append(json.loads(line))
                self._changed.notify_all()
        self.proc.wait()  # its standard error closed: it ended (or is ending)
        with self._changed:  # a waiter sees the end at once, not at its time limit
            self._changed.notify_all()

    def wait_for(self, test: Callable[[list[dict[str, Any]]], bool], timeout: float = 60) -> None:
        with self._changed:
            ok = self._changed.wait_for(
                lambda: test(self.entries) or self.proc.poll() is not None, timeout
            )
            assert ok and self.proc.poll() is None, "".join(self.lines[-30:])

    def cycles(self) -> int:
        with self._changed:
            return sum(e.get("event") == "cycle" for e in self.entries)

    @property
    def url(self) -> str:
        found = [e["url"] for e in self.entries if e.get("event") == "listening"]
        assert found, self.lines
        return str(found[0])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
