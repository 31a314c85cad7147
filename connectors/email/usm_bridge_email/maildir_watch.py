"""The daemon's watcher of a Maildir inbox: a delivery (a file renamed into ``new/``) or a mail
client's change (a file moved to or renamed in ``cur/``, or removed) wakes the instance's
cycle, which reads the Maildir as always.

Two ways, together: Linux's inotify (through ctypes: the standard library has no binding, and
no dependency is worth two system calls) tells at once; and the folders' modification times,
looked at every second, catch what inotify cannot see (a Maildir on NFS changed by another
host, a system without inotify or out of watches). Either one alone wakes the cycle.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

__all__ = ["PERIOD", "inotify_fd", "watch_maildir"]

log = logging.getLogger(__name__)

#: Seconds between two looks at the folders' modification times.
PERIOD: Final = 1.0
#: Longer than a file system's timestamp granularity (a kernel tick, up to 10 ms).
_TICK_NS: Final = 50_000_000
#: inotify events that mean a message came, went or changed its flags (linux/inotify.h).
_IN_EVENTS: Final = 0x40 | 0x80 | 0x100 | 0x200  # MOVED_FROM, MOVED_TO, CREATE, DELETE
_IN_NONBLOCK: Final = os.O_NONBLOCK
_IN_CLOEXEC: Final = os.O_CLOEXEC

_Stamp = tuple[int, int] | None


def _stamp(folder: Path) -> _Stamp:
    """(modification time in ns, inode) of ``folder``; None while it cannot be looked at."""
    try:
        found = os.stat(folder)
    except OSError:
        return None
    return found.st_mtime_ns, found.st_ino


def _libc() -> ctypes.CDLL:
    """The C library, which has inotify's calls on Linux.

    :raises OSError: not on Linux (or no C library found)."""
    if not sys.platform.startswith("linux"):
        raise OSError("inotify is Linux's")
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


@contextlib.contextmanager
def inotify_fd(folders: tuple[Path, ...]) -> Iterator[int | None]:
    """An inotify descriptor watching ``folders`` (closed when the block ends), or None where
    inotify cannot be had (not Linux, no watches left, a folder missing): the modification
    times serve alone then."""
    fd = -1
    try:
        libc = _libc()
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        for folder in folders:
            if libc.inotify_add_watch(fd, os.fsencode(folder), _IN_EVENTS) < 0:
                raise OSError(ctypes.get_errno(), f"{folder}: {os.strerror(ctypes.get_errno())}")
    except (OSError, AttributeError) as exc:
        if fd >= 0:
            os.close(fd)
        log.info("inotify is not available for %s (%s): its folders are looked at every second",
                 folders[0].parent, exc)  # fmt: skip
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def watch_maildir(
    path: Path, wake: Callable[[], None], stop: threading.Event, *, period: float = PERIOD
) -> None:
    """Call ``wake`` once watching, then whenever ``path``'s ``new/`` or ``cur/`` changed,
    until ``stop``."""
    folders = (path / "new", path / "cur")
    with inotify_fd(folders) as fd:
        _watch(folders, fd, wake, stop, period)


def _watch(
    folders: tuple[Path, ...],
    fd: int | None,
    wake: Callable[[], None],
    stop: threading.Event,
    period: float,
) -> None:
    seen = [_stamp(folder) for folder in folders]
    recent = False
    next_look = time.monotonic() + period
    wake()  # watching from here: what came before is read by the cycle this wakes (as IDLE)
    while not stop.is_set():
        # Short waits: a stop is seen within a fraction of a second.
        wait = max(min(next_look - time.monotonic(), 0.25), 0.0)
        if fd is None:
            stop.wait(wait)
        elif select.select([fd], [], [], wait)[0]:
            with contextlib.suppress(BlockingIOError):
                while os.read(fd, 65536):  # every event queued: one wake for them all
                    pass
            # The folders as they are now: what changed up to here is read by the cycle this
            # wakes, so the next look at the times must not wake it again for the same.
            seen, recent = [_stamp(folder) for folder in folders], False
            wake()
        if time.monotonic() < next_look:
            continue
        next_look = time.monotonic() + period
        looked = time.time_ns()
        now = [_stamp(folder) for folder in folders]
        # A second change within the file system's timestamp tick of the first leaves the
        # time as it was: a time that recent when looked at is looked past once more.
        if now != seen or recent:
            wake()
        seen = now
        recent = any(stamp is not None and stamp[0] >= looked - _TICK_NS for stamp in now)
