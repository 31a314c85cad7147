"""Waiting for a server process of a test to answer ``/healthz`` with 200."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable


def wait_healthy(
    url: str,
    process: subprocess.Popen[bytes] | subprocess.Popen[str],
    *,
    timeout: float,
    why: Callable[[], str] = lambda: "",
) -> None:
    """Until ``url``/healthz answers 200; fails at once when ``process`` ended, and after
    ``timeout`` seconds, with ``why()`` (the process's log) in the message."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as answer:
                assert answer.status == 200
                return
        except OSError:
            assert process.poll() is None, f"it exited {process.returncode}: {why()}"
            assert time.monotonic() < deadline, f"no answer within {timeout:g} s: {why()}"
            time.sleep(0.05)
