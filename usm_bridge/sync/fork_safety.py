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
import weakref

__all__ = ["fork_refused_by_threads", "mark_fork_safe"]

#: The threads marked safe, by the thread object: a thread's ident is reused by the next thread
#: started once it ends, and a new thread must not inherit an ended one's mark.
_SAFE: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def mark_fork_safe(thread: threading.Thread) -> None:
    """Say that ``thread`` (started) holds no lock a forked child could need, ever."""
    _SAFE.add(thread)


def fork_refused_by_threads() -> str | None:
    """Why the threads of this process make a fork unsafe now; ``None``: it is safe. The
    reason names every thread not marked safe and counts the threads Python does not know of."""
    if not sys.platform.startswith("linux"):
        return "not on Linux"
    try:
        tasks = len(os.listdir("/proc/self/task"))
    except OSError as exc:
        return f"the process's threads cannot be counted: {exc}"
    threads = threading.enumerate()
    current = threading.current_thread()
    unsafe = sorted(
        t.name for t in threads if t is not current and (t not in _SAFE or not t.is_alive())
    )
    foreign = tasks - len(threads)
    reasons = []
    if unsafe:
        reasons.append(f"other threads run ({', '.join(unsafe)})")
    if foreign > 0:
        reasons.append(f"{foreign} of this process's {tasks} threads are not Python's")
    if not reasons:
        return None
    return "; ".join(reasons) + ": a fork copies only the thread that calls it"
