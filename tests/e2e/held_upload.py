"""A ``usm-bridge sync --once`` killed between a target's upload and the bridge's record of it.

The target simulator runs in the test's process; :class:`HeldUpload` wraps its ``answer`` so
that the first upload is carried out (the file stored), then its answer waits. The test kills
the command meanwhile (:func:`kill_when_held`): what the bridge knows is what a crash between
the upload and the commit leaves. Test-only: no simulator is changed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = [
    "SNOW_UPLOAD",
    "HeldUpload",
    "kill_when_held",
    "snow_copies",
    "snow_uploads",
    "spool_files",
    "sync_once",
]

#: ServiceNow's upload requests (the Attachment API's ``file`` and ``upload``).
SNOW_UPLOAD = re.compile(r"^/api/now(/v1)?/attachment/(file|upload)")


class HeldUpload:
    """Wraps a simulator's ``answer``: the first request matching ``pattern`` is served (the
    file is stored), then its answer waits until :meth:`release`."""

    def __init__(self, answer: Callable[..., Any], method: str, pattern: re.Pattern[str]) -> None:
        self._answer, self._method, self._pattern = answer, method, pattern
        self.served = threading.Event()
        self._release = threading.Event()
        self._armed = True
        self._lock = threading.Lock()

    def __call__(self, method: str, path: str, *args: Any) -> Any:
        reply = self._answer(method, path, *args)
        with self._lock:
            hold = self._armed and method == self._method and bool(self._pattern.search(path))
            self._armed = self._armed and not hold
        if hold:
            self.served.set()
            self._release.wait(timeout=60)
        return reply

    def release(self) -> None:
        self._release.set()


def sync_once(config: Path, cwd: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """``usm-bridge sync --once`` on ``config``, started in ``cwd`` (the state folder)."""
    env = dict(os.environ, PYTHONWARNINGS="error")
    return subprocess.Popen(
        [sys.executable, "-m", "usm_bridge", "sync", "--once", "-c", str(config)],
        cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip


def kill_when_held(held: HeldUpload, config: Path, cwd: Path, log_path: Path) -> int:
    """Run ``sync --once`` until ``held`` holds its upload's answer, SIGKILL it, then let the
    answer go (to a dead socket); the killed process's id."""
    with log_path.open("ab") as log:
        process = sync_once(config, cwd, log)
    try:
        while not held.served.wait(timeout=0.1):
            assert process.poll() is None, log_path.read_text()[-3000:]
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        held.release()
    return process.pid


def spool_files(spool: Path) -> list[str]:
    """The names of the temporary files in the spool folder (not the files kept by hash in
    its ``by-sha256`` folder)."""
    return sorted(p.name for p in spool.iterdir() if p.is_file()) if spool.is_dir() else []


def snow_copies(tools: Any, sys_id: str) -> list[str]:
    """The sys_ids of the files ServiceNow (``tools.snow``) holds on the record ``sys_id``."""
    with tools.snow.lock:
        records = tools.snow.tables["sys_attachment"].records.values()
        return [r["sys_id"] for r in records if r["table_sys_id"] == sys_id]


def snow_uploads(tools: Any) -> int:
    """How many uploads ServiceNow served (``tools.snow_traffic``)."""
    return sum(
        1
        for method, path in tools.snow_traffic.seen
        if method == "POST" and SNOW_UPLOAD.search(path)
    )
