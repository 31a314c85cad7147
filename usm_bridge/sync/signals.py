"""SIGTERM and SIGINT as a graceful stop, and a second one as an exit at once.

The stop is not called from the signal handler. CPython runs a Python handler in the main
thread between two of its bytecodes, wherever that thread is: inside ``Event.clear()`` or
``Event.wait()`` it holds the event's internal lock, and a handler that sets an event behind
that same lock (``Daemon.stop`` sets two) waits for a lock its own thread holds, for ever. The
daemon's main loop clears and waits on its wake-up event many times a second, so a SIGTERM now
and then froze the daemon instead of stopping it.

So the signal travels through :func:`signal.set_wakeup_fd`: CPython's C-level handler writes
the signal's number to a pipe the moment the signal arrives, whatever the main thread is
doing, and a thread of our own reads it and calls ``stop`` like any other thread would. The
Python-level handler does nothing (it must exist: without one, the default action kills the
process).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType

from .fork_safety import mark_fork_safe

__all__ = ["stop_on_signals"]


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """The Python-level handler: the wake-up pipe carries the signal (see the module)."""


@contextmanager
def stop_on_signals(
    stop: Callable[[], None],
    signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> Iterator[list[int]]:
    """While the block runs, the first SIGTERM or SIGINT calls ``stop`` (a graceful stop) on a
    thread of its own; a second one ends the process at once with 128 + the signal's number.
    Yields the list of signals received, complete once the block has ended. Main thread only
    (Python installs signal handlers there)."""
    wanted = {int(sig) for sig in signals}
    received: list[int] = []
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # set_wakeup_fd's own requirement: a signal never blocks

    def relay() -> None:
        while data := os.read(read_end, 64):  # empty: the block ended and closed the pipe
            for signum in data:
                if signum not in wanted:
                    continue  # another signal with a Python handler (SIGCHLD, SIGUSR1...)
                received.append(signum)
                if len(received) > 1:
                    os._exit(128 + signum)
                stop()

    try:
        previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        raise
    previous = {sig: signal.signal(sig, _ignore) for sig in signals}
    thread = threading.Thread(target=relay, name="usm-bridge-signals", daemon=True)
    thread.start()
    # It waits in os.read and only calls ``stop``: a read's child may be forked beside it
    # (:mod:`.fork_safety`); the child clears the wake-up fd it inherits.
    mark_fork_safe(thread)
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        signal.set_wakeup_fd(previous_fd)
        os.close(write_end)  # the relay reads what is left, then the end of the pipe
        thread.join()
        os.close(read_end)
