""":func:`~usm_bridge.sync.signals.stop_on_signals`: the stop runs outside the signal handler.

A SIGTERM that CPython handled while the daemon's main thread held its wake-up event's lock
(inside ``Event.clear()`` or ``Event.wait()``) used to call ``Daemon.stop`` right there, which
sets that event: the main thread waited on a lock it held itself, and the daemon never stopped
(a CI run caught it, once in a few thousand stops). The first test recreates that moment
deterministically, in a process of its own so that the old behaviour shows as a timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from usm_bridge.sync.signals import stop_on_signals

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

_LOCK_HELD_BY_THE_INTERRUPTED_THREAD = """
import os, signal, threading, time
from usm_bridge.sync.signals import stop_on_signals

lock = threading.Lock()  # as the lock inside a threading.Event
stopped = threading.Event()

def stop():
    with lock:
        stopped.set()

with stop_on_signals(stop) as received:
    with lock:
        os.kill(os.getpid(), signal.SIGTERM)  # handled at the next bytecode: the lock is held
        time.sleep(0.3)
    assert stopped.wait(10), "the stop never ran"
print(received)
"""


def test_a_signal_handled_while_the_main_thread_holds_the_stops_lock_still_stops() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LOCK_HELD_BY_THE_INTERRUPTED_THREAD],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"[{int(signal.SIGTERM)}]"


def test_the_first_signal_stops_once_and_the_list_is_complete_when_the_block_ends() -> None:
    calls: list[str] = []
    stopped = threading.Event()

    def stop() -> None:
        calls.append(threading.current_thread().name)
        stopped.set()

    with stop_on_signals(stop) as received:
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: the block owns SIGINT
        assert stopped.wait(10)
    assert received == [signal.SIGINT]
    assert calls == ["usm-bridge-signals"]  # not the main thread's handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    assert signal.set_wakeup_fd(-1) == -1  # and the wake-up fd too


def test_other_signals_with_python_handlers_are_not_counted() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, _frame: seen.append(signum))
    try:
        with stop_on_signals(lambda: seen.append(-1)) as received:
            os.kill(os.getpid(), signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while not seen and time.monotonic() < deadline:
                time.sleep(0.01)
        assert seen == [signal.SIGUSR1]  # its own handler ran; no stop
        assert received == []
    finally:
        signal.signal(signal.SIGUSR1, previous)


_TWO_SIGNALS = """
import os, signal, threading
from usm_bridge.sync.signals import stop_on_signals

blocked = threading.Lock()
blocked.acquire()
with stop_on_signals(lambda: print("stop", flush=True)):
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    blocked.acquire()  # a main thread that never comes back: the second signal still exits
"""


def test_a_second_signal_exits_even_while_the_main_thread_is_stuck() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _TWO_SIGNALS],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert done.stdout == "stop\n"
