"""What runs alone among every process on a store, and under which lock (:mod:`..store.locks`).

- ``daemon``: one ``usm-bridge daemon`` per store. A second one exits at once naming the store
  and the first one's pid and host, or, with ``--wait``, waits for it to stop and takes over.
- ``cycle:INSTANCE``: at most one sync cycle of an instance at a time, whichever process runs
  it (the daemon, ``sync --once`` from cron, later a worker). A cycle that finds its instance's
  lock held is skipped, saying by whom: the instance is being synced already.
- ``push:TARGET``: at most one process uses a target's tool at a time: a drain of its outbox,
  and the read of its own cycle (a read beside another process's push could take a record that
  push just created for a stranger's new call, before its identity is linked). Taken inside
  the instance's thread lock (:class:`~.instances.InstanceRegistry`), so that threads of one
  process queue there as before and only other processes are told "held". Every outbox claim
  is made under it and names its holder: the next holder reclaims at once the claims of a
  holder that died, instead of waiting out their lease.

Each lock dies with its holder, so after a SIGKILL the next cycle of the instance (a restarted
daemon, the next cron run) starts at once.
"""

from __future__ import annotations

import logging
import threading

from ..store import Store
from ..store.locks import LockHeldError

__all__ = [
    "DAEMON_LOCK",
    "DAEMON_WAIT_POLL",
    "cycle_lock",
    "push_lock",
    "take_daemon_lock",
    "take_lock_for_good",
]

log = logging.getLogger(__name__)

DAEMON_LOCK = "daemon"
#: How often a daemon started with ``--wait`` looks whether the running one has stopped.
DAEMON_WAIT_POLL = 1.0


def cycle_lock(instance: str) -> str:
    """The lock of a sync cycle of ``instance``."""
    return f"cycle:{instance}"


def push_lock(target: str) -> str:
    """The lock of the tool of ``target``: its pushes and its reads."""
    return f"push:{target}"


def take_daemon_lock(
    store: Store, *, wait: bool, stop: threading.Event, poll: float = DAEMON_WAIT_POLL
) -> bool:
    """Take the store's daemon lock for good (it is released when the store is closed or the
    process dies); False when ``stop`` was set while waiting for it.

    :param wait: wait for the daemon holding it to stop, instead of raising.
    :raises LockHeldError: another daemon holds it, and not ``wait``.
    """
    return take_lock_for_good(
        store,
        DAEMON_LOCK,
        role="daemon",
        wait=wait,
        stop=stop,
        poll=poll,
        advice="stop it first, or start this one with --wait to take over when it stops",
        waiting="another daemon is running on the store %s (%s): waiting for it to stop",
    )


def take_lock_for_good(
    store: Store,
    lock: str,
    *,
    role: str,
    wait: bool,
    stop: threading.Event,
    poll: float,
    advice: str,
    waiting: str,
) -> bool:
    """Take ``lock`` until the store is closed or the process dies, for the one ``role`` (the
    daemon, the scheduler) a store may run; False when ``stop`` was set while waiting for it.

    :param advice: what the refusal tells to do, after naming the store and the holder.
    :param waiting: the warning logged when standing by, with the store and the holder as
        its two ``%s``; its event is ``ROLE_waiting``, and ``ROLE_took_over`` on taking over.
    :raises LockHeldError: another process holds it, and not ``wait``.
    """
    busy = store.locks.acquire(lock)
    if busy is None:
        return True
    if not wait:
        raise LockHeldError(
            f"another usm-bridge {role} is running on the store {store.display_url} "
            f"({busy.who}); {advice}"
        )
    log.warning(
        waiting,
        store.display_url,
        busy.who,
        extra={"event": f"{role}_waiting", "holder": busy.who},
    )
    while busy is not None:
        if stop.wait(poll):
            return False
        busy = store.locks.acquire(lock)
    log.info("the other %s stopped: taking over", role, extra={"event": f"{role}_took_over"})
    return True
