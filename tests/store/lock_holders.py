"""Another process holding a store lock (:mod:`store.lock_holder`), and waiting for a lock that a
killed process held to be free, for the tests of locks that die with their holder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from usm_bridge.store import Store

HOLDER = Path(__file__).with_name("lock_holder.py")


@dataclass
class HeldElsewhere:
    proc: subprocess.Popen[str]
    said: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return int(self.said["pid"])

    def kill(self) -> None:
        """SIGKILL: no chance to release anything."""
        self.proc.kill()
        self.proc.wait(10)


def env() -> dict[str, str]:
    tests = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([tests, *sys.path])}


@contextmanager
def held_elsewhere(url: str, name: str, *, claim: str | None = None) -> Iterator[HeldElsewhere]:
    """A process holding ``name`` on the store at ``url`` (and the claims of ``claim``'s due
    outbox items) for the block, unless the block kills it."""
    args = [sys.executable, str(HOLDER), url, name] + (["--claim", claim] if claim else [])
    with subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env()
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        holder = HeldElsewhere(proc)
        try:
            line = proc.stdout.readline()
            assert line, f"the lock holder ended with {proc.wait(10)} before holding {name!r}"
            holder.said = json.loads(line)
            assert "busy" not in holder.said, holder.said
            yield holder
        finally:
            if proc.poll() is None:
                proc.stdin.close()  # it releases and exits
                proc.wait(10)


def take_elsewhere(url: str, name: str) -> tuple[int, dict[str, Any]]:
    """Let another process try to take ``name`` (and give it back at once): its exit code (0:
    it took it, 3: busy) and what it said."""
    done = subprocess.run(
        [sys.executable, str(HOLDER), url, name],
        input="", capture_output=True, text=True, env=env(), timeout=60, check=False,
    )  # fmt: skip
    return done.returncode, json.loads(done.stdout.splitlines()[0])


def wait_until_free(store: Store, name: str, timeout: float = 10.0) -> None:
    """Wait until ``name`` can be taken (then give it back). A killed holder's lock is dropped
    by the kernel with its process at once; a PostgreSQL server notices the closed session a
    moment later, when the socket reports the end."""
    deadline = time.monotonic() + timeout
    while (busy := store.locks.acquire(name)) is not None:
        assert time.monotonic() < deadline, f"still held after the holder died: {busy}"
        time.sleep(0.01)
    store.locks.release(name)
