"""A signal the kernel hands to a worker thread still reaches the daemon's main thread.

A process-directed signal (``kill PID``) goes to any thread that does not block it. CPython
runs the Python handler in the main thread, but only once that thread is back in Python code:
a main thread waiting in a lock without end (for the next due cycle, or for the cycles in
flight to commit) would never run the stop, nor a second signal's exit. The daemon's waits
therefore come back every ``SIGNAL_SLICE`` seconds.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from usm_bridge.sync.daemon import SystemClock


@contextmanager
def _signal_from_a_worker(
    on_signal: Callable[[], None], fallback: threading.Event
) -> Iterator[list[str]]:
    """While the block runs, a worker thread sends SIGUSR1 to itself (the kernel's choice of
    thread, made deterministic); the handler (run by the
    main thread) calls ``on_signal``. After 10 s without it, the worker sets ``fallback`` so
    that a failing test ends. Yields what happened, in order."""
    happened: list[str] = []

    def handler(_signum: int, _frame: FrameType | None) -> None:
        happened.append(f"handled in {threading.current_thread().name}")
        on_signal()

    def worker() -> None:
        # Long enough for the main thread to be in its wait (a signal before that is handled
        # at the main thread's next line of Python, which would prove nothing).
        time.sleep(0.5)
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
        if not handled.wait(10):
            happened.append("fallback")
            fallback.set()

    handled = threading.Event()
    previous = signal.signal(signal.SIGUSR1, lambda s, f: (handler(s, f), handled.set()))
    thread = threading.Thread(target=worker, name="worker")
    try:
        thread.start()
        yield happened
    finally:
        handled.set()
        thread.join()
        signal.signal(signal.SIGUSR1, previous)


def test_a_wait_without_end_runs_the_handler_of_a_signal_a_worker_received() -> None:
    wake = threading.Event()
    with _signal_from_a_worker(wake.set, wake) as happened:
        assert SystemClock().wait(wake, None) is True
    assert happened[0] == "handled in MainThread"
    assert "fallback" not in happened


def test_a_wait_with_a_timeout_still_ends_at_its_timeout() -> None:
    never = threading.Event()
    assert SystemClock().wait(never, 0.3) is False
    assert SystemClock().wait(never, 0) is False
