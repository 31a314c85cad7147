"""Whether this process may fork a child that goes on running Python (:mod:`.child_read`).

A fork copies only the thread that calls it. A lock another thread held at that moment
(logging's, a connection pool's, an event's) stays held in the child for ever, and the child
hangs the first time it needs it. So a process forks only when every other thread is known
to hold no lock the child could need: a thread marked with :func:`mark_fork_safe` by its
starter (the signal relay of :mod:`.signals`, which waits in ``os.read`` and only sets the
caller's stop event, which the child never uses), and no thread Python does not know of
(a C library's: ``/proc/self/task`` counts every thread of the process). Linux only.
"""

from __future__ import annotations

import os
import sys
import threading

__all__ = ["fork_refused_by_threads", "mark_fork_safe"]

_SAFE: set[int] = set()


def mark_fork_safe(thread: threading.Thread) -> None:
    """Say that ``thread`` (started) holds no lock a forked child could need, ever."""
    if thread.ident is not None:
        _SAFE.add(thread.ident)


def fork_refused_by_threads() -> str | None:
    """Why the threads of this process make a fork unsafe now; ``None``: it is safe."""
    if not sys.platform.startswith("linux"):
        return "not on Linux"
    try:
        tasks = len(os.listdir("/proc/self/task"))
    except OSError as exc:
        return f"the process's threads cannot be counted: {exc}"
    threads = threading.enumerate()
    current = threading.current_thread()
    unsafe = sorted(
        t.name for t in threads if t is not current and (t.ident not in _SAFE or not t.is_alive())
    )
    if unsafe:
        return f"other threads run ({', '.join(unsafe)}): a fork copies only one"
    if tasks != len(threads):
        return f"this process runs {tasks} threads, {tasks - len(threads)} of them not Python's"
    return None
