"""The daemon's watcher of a Maildir inbox: a delivery (a file renamed into ``new/``) or a mail
client's change (a file moved to or renamed in ``cur/``, or removed) changes the folder's
modification time, which is looked at every second: two ``stat`` calls, without a dependency
(inotify would need one, or ctypes). A change wakes the instance's cycle, which reads the
Maildir as always.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

__all__ = ["PERIOD", "watch_maildir"]

#: Seconds between two looks at the folders.
PERIOD: Final = 1.0

#: Longer than a file system's timestamp granularity (a kernel tick, up to 10 ms).
_TICK_NS: Final = 50_000_000

_Stamp = tuple[int, int] | None


def _stamp(folder: Path) -> _Stamp:
    """(modification time in ns, inode) of ``folder``; None while it cannot be looked at."""
    try:
        found = os.stat(folder)
    except OSError:
        return None
    return found.st_mtime_ns, found.st_ino


def watch_maildir(
    path: Path, wake: Callable[[], None], stop: threading.Event, *, period: float = PERIOD
) -> None:
    """Call ``wake`` whenever ``path``'s ``new/`` or ``cur/`` changed, until ``stop``."""
    folders = (path / "new", path / "cur")
    seen = [_stamp(folder) for folder in folders]
    recent = False
    while not stop.wait(period):
        looked = time.time_ns()
        now = [_stamp(folder) for folder in folders]
        # A second change within the file system's timestamp tick of the first leaves the
        # time as it was: a time that recent when looked at is looked past once more.
        if now != seen or recent:
            wake()
        seen = now
        recent = any(stamp is not None and stamp[0] >= looked - _TICK_NS for stamp in now)
