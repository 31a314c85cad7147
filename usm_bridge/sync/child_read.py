"""Read and map an instance's records in a child process while the cycle's process stores them.

A backfill's CPU is spread thin over one core: reading (HTTP, JSON, the connector's digests),
mapping (the mapping's readers, the call's validation, the outbound draft) and storing (the
page's rows, its commit), none above a tenth. :class:`ChildRead` moves the first two to a child
process forked for the read, so that the second core works too (issue #17; measured in
bench/README.md). What the cycle sees is the connector's read as before: records (each
:class:`~.ingest.MappedElsewhere`, mapped in the child) and checkpoints, in order, and the
read's failure where it happened. The cycle stores pages exactly as it does a read in its own
process: same units of work, cursor, dead letters and order (:meth:`.ingest.IngestStage.
ingest_page`); a record's **files are taken in by the cycle's process** (its own connector,
the instance's lock held), because the intake reads the store, writes the spool and may end
the read before the record, all of which is the storing side's, and a download streams to
disk (little CPU to move).

When it is used (:func:`reads_in_child`): on Linux, for an instance whose ``read_in_child`` is
on (the default), whose connector declares
:attr:`~usm_bridge.connector.Connector.reads_in_child` (third-party connectors keep reading
in the cycle's process unless they do), in a process with **no other thread** but ones known
to hold no lock (:mod:`.fork_safety`: ``sync --once``'s signal relay). A fork copies only the
thread that forks, and a lock another thread held (logging's, a pool's) would stay held in
the child forever. So this is "fork before threads", checked at each read by counting the
process's threads in ``/proc/self/task``: ``usm-bridge sync --once`` and a Celery prefork
pool process whose task runs on its only thread qualify; the daemon (its cycles run on worker
threads) reads in its own process. A fork server would be safe from threads, but its child
starts from nothing: it would rebuild the plugin host, the connector and the mapping each
cycle, and ask Jira for its field list each time.

What the child holds and lets go of:

- **Connections**: it inherits the parent's sockets (HTTP pools, the store's connections).
  :meth:`~usm_bridge.connector.Connector.after_fork` gives the connector's clients new, empty
  pools without closing the old ones (a TLS session cannot be shared: a close from the child
  could end the parent's); the store is never touched, and the child ends with ``os._exit``,
  so no finalizer or ``atexit`` handler of the parent's runs in it.
- **What the read learns** (Jira's deployment and field list, which ServiceNow table holds a
  record) is handed back at the read's end (``read_state``/``adopt_read_state``), so the
  parent's pushes need not ask again. A 429's back-off lives inside the request (the HTTP
  client's retries) and ends with it.
- **Its life**: it dies with the parent (``PR_SET_PDEATHSIG``: SIGKILL when the thread that
  forked it ends, and a closed pipe: its next send fails), and is SIGKILLed when the read ends
  early (a stop, a worker's time limit, a store failure: whatever leaves the read's context).
  Its death before the read's end is the read's failure (``summary.error`` names it, with the
  signal or exit code), never a hang: the parent polls the pipe and sees its end as soon as
  it dies. What it sent before is stored as any records a failed read yielded; the cursor
  stays before what was not stored, so the next cycle reads it again.
- **Requests**: they are the child's; a benchmark counting requests in the process registers
  a callback with :func:`at_child_exit` to count them (``bench/call_counts.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, Pipe
from typing import TYPE_CHECKING, NoReturn

from ..connector import Checkpoint, Connector
from ..errors import UsmBridgeError
from .fork_safety import fork_refused_by_threads
from .ingest import MappedElsewhere, RecordOutcome

if TYPE_CHECKING:
    from .ingest import IngestStage

__all__ = [
    "BATCH",
    "ChildRead",
    "ChildReadError",
    "at_child_exit",
    "declares_reads_in_child",
    "fork_refused",
]

log = logging.getLogger(__name__)

#: Records sent to the parent at once at most (a checkpoint ends a batch sooner): one message,
#: one wake-up of the parent, a page at a time rather than a record at a time.
BATCH = 100
#: Seconds between the parent's looks at the stop event while it waits for the child.
_POLL = 0.2
#: Seconds the parent waits for a child that said it is done to exit, before killing it.
_EXIT_WAIT = 5.0
_PR_SET_PDEATHSIG = 1

#: Called in the child just before it exits (``os._exit`` runs no ``atexit`` handler).
_AT_CHILD_EXIT: list[Callable[[], None]] = []


def at_child_exit(callback: Callable[[], None]) -> None:
    """Run ``callback`` in a reading child just before it exits (its ``atexit`` handlers are
    the parent's and do not run there): for a benchmark that counts the child's requests."""
    _AT_CHILD_EXIT.append(callback)


class ChildReadError(UsmBridgeError):
    """The read in the child process ended without finishing, or raised what cannot be
    handed over as it is."""


class _End:
    """The child's last message: the read's failure, if any, and what the read learned."""

    __slots__ = ("failure", "state")

    def __init__(self, failure: Exception | None, state: object | None) -> None:
        self.failure = failure
        self.state = state


Item = MappedElsewhere | Checkpoint


def declares_reads_in_child(connector: object) -> bool:
    """Whether ``connector``'s class declares ``reads_in_child``. Read from the class, with a
    default: a connector that does not subclass :class:`Connector` (a third-party plugin, a
    wrapper delegating to a real connector by ``__getattr__``) has no such attribute, and a
    wrapper has not declared for its own ``read_changes`` what the connector it wraps did."""
    return getattr(type(connector), "reads_in_child", False) is True


def _named(connector: object) -> str:
    return str(getattr(connector, "kind", None) or type(connector).__name__)


def fork_refused(connector: Connector) -> str | None:
    """Why ``connector``'s read may not run in a forked child here; ``None``: it may."""
    if not declares_reads_in_child(connector):
        return f"the {_named(connector)} connector does not declare reads_in_child"
    return fork_refused_by_threads()


def _portable(exc: BaseException) -> Exception:
    """``exc`` as it can cross the pipe: itself when it pickles and unpickles, else a
    :class:`ChildReadError` with its type and message."""
    try:
        copy = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes, just made
        if isinstance(copy, Exception) and str(copy) == str(exc):
            return copy
    except Exception:  # noqa: S110 - any failure to copy falls back to the message
        pass
    return ChildReadError(f"{type(exc).__name__}: {exc}")


def _die_with(parent: int) -> None:
    """SIGKILL this process when the thread that forked it ends (Linux), and exit now if the
    parent is gone already (it may have died before the call)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


def _serve(
    conn: Connection, connector: Connector, stage: IngestStage, instance: str, cursor: str | None
) -> None:
    """The child's work: read from ``cursor``, map each record, send batches, then an _End."""
    batch: list[Item | _End] = []
    failure: Exception | None = None
    try:
        for item in connector.read_changes(cursor):
            if isinstance(item, Checkpoint):
                batch.append(item)
                conn.send(batch)
                batch = []
                continue
            try:
                mapped = stage.map_only(instance, item)
            except Exception as exc:  # ends the read at this record, as in the parent
                batch.append(MappedElsewhere(item, ended=_portable(exc)))
                break
            if isinstance(mapped, RecordOutcome):
                batch.append(MappedElsewhere(item, reason=mapped.reason))
            else:
                batch.append(MappedElsewhere(item, call=mapped[2], draft=mapped[3]))
            if len(batch) >= BATCH:
                conn.send(batch)
                batch = []
    except (BrokenPipeError, ConnectionResetError):
        raise  # the parent is gone or done with the read: nothing to tell it
    except Exception as exc:  # the connector's failure: the parent raises it where it was
        failure = _portable(exc)
    try:
        # A connector declaring reads_in_child without subclassing Connector may lack the hooks.
        read_state = getattr(connector, "read_state", None)
        state = read_state() if read_state is not None else None
        pickle.dumps(state)
    except Exception:
        log.warning("what the read of %s learned cannot be handed back", instance, exc_info=True)
        state = None
    batch.append(_End(failure, state))
    conn.send(batch)


def _child(
    conn: Connection,
    connector: Connector,
    stage: IngestStage,
    instance: str,
    cursor: str | None,
    parent: int,
) -> NoReturn:
    code = 0
    try:
        _die_with(parent)
        # The parent decides when the read ends (a stop kills the child); a terminal's
        # Ctrl-C reaches the whole process group.
        signal.set_wakeup_fd(-1)  # the parent's signal relay reads that pipe
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        after_fork = getattr(connector, "after_fork", None)
        if after_fork is not None:
            after_fork()
        _serve(conn, connector, stage, instance, cursor)
    except (BrokenPipeError, ConnectionResetError):
        code = 1  # the parent is gone, or ended the read: nobody to tell
    except BaseException:
        code = 1
        with contextlib.suppress(BaseException):  # exiting either way
            log.warning("the read of %s in a child process failed", instance, exc_info=True)
    finally:
        for callback in _AT_CHILD_EXIT:
            with contextlib.suppress(BaseException):  # exiting either way
                callback()
        os._exit(code)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return f"killed by signal {number} ({name})"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


class ChildRead(Iterator[Item]):
    """The read of ``instance`` from ``cursor`` in a forked child; see the module docstring.

    Use it as a context manager (or call :meth:`close`): leaving it early kills the child.
    """

    def __init__(
        self,
        connector: Connector,
        stage: IngestStage,
        instance: str,
        cursor: str | None,
        *,
        stop: threading.Event,
    ) -> None:
        self.instance = instance
        self._connector = connector
        self._stop = stop
        self._taking: deque[Item | _End] = deque()
        self._done = False
        self._status: int | None = None
        self.cpu: float | None = None
        reader, writer = Pipe(duplex=False)
        parent = os.getpid()
        # Unwritten output would be written again by the child's first flush.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, OSError, ValueError):
                stream.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's side, which never returns
            reader.close()
            _child(writer, connector, stage, instance, cursor, parent)
        writer.close()  # the child's end: its death closes the pipe for good
        self.pid = pid
        self._conn = reader
        self._began = time.monotonic()
        log.debug("reading %s in a child process (pid %d)", instance, pid)

    def __enter__(self) -> ChildRead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __next__(self) -> Item:
        while not self._taking:
            if self._done:
                raise StopIteration
            self._receive()
        item = self._taking.popleft()
        if isinstance(item, _End):
            self._done = True
            self._reap(wait=True)
            adopt = getattr(self._connector, "adopt_read_state", None)
            if item.state is not None and adopt is not None:
                adopt(item.state)
            if item.failure is not None:
                raise item.failure
            raise StopIteration
        return item

    def _receive(self) -> None:
        """The child's next batch (waiting for it); a stop ends the read, the child's death
        fails it."""
        while not self._conn.poll(_POLL):
            if self._stop.is_set():
                # As a stop in the parent's own read: what was yielded is stored, the cursor
                # stays before the rest.
                self._done = True
                self.close()
                raise StopIteration
        try:
            batch = self._conn.recv()
        except (EOFError, OSError):
            self._done = True
            self._reap(wait=True)
            status = "its end unknown" if self._status is None else _describe(self._status)
            raise ChildReadError(
                f"the read of {self.instance} in its child process (pid {self.pid}) ended "
                f"without finishing: {status}"
            ) from None
        self._taking.extend(batch)

    def _reap(self, *, wait: bool) -> None:
        if self._status is not None:
            return
        deadline = time.monotonic() + (_EXIT_WAIT if wait else 0.0)
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid == self.pid:
                self._status = status
                self.cpu = usage.ru_utime + usage.ru_stime
                log.info(
                    "the read of %s in a child process (pid %d): %.1f s, %.2f s of CPU, %s",
                    self.instance, self.pid, time.monotonic() - self._began, self.cpu,
                    _describe(status),
                )  # fmt: skip
                return
            if time.monotonic() >= deadline:
                os.kill(self.pid, signal.SIGKILL)
                deadline = float("inf")  # dead now: wait for it
                continue
            time.sleep(0.01)

    def close(self) -> None:
        """End the read: the child is killed unless it finished, and reaped; the pipe closed."""
        self._done = True
        self._taking.clear()
        self._reap(wait=False)
        self._conn.close()


def reads_in_child(connector: Connector, *, enabled: bool) -> bool:
    """Whether a read of ``connector`` goes to a child process (``enabled``: the instance's
    ``read_in_child``); says why not at debug level."""
    if not enabled:
        return False
    why = fork_refused(connector)
    if why is not None:
        log.debug("reading %s in this process: %s", getattr(connector, "name", "?"), why)
        return False
    return True
