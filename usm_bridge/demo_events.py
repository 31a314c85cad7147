"""``usm-bridge demo --events``: the same onboarding, moved by the tools' events alone.

Every instance is polled only every 5 minutes (or ``--interval``), after one first cycle each
before the daemon starts, so no poll falls inside the story; what moves the work is what a
deployment with events set up has (issue #19):

* Jira (Facilities) sends its signed admin webhook to ``/events/jira/facilities-jira``;
* ServiceNow (IT) runs the usm-bridge business rule (docs/servicenow-events.md) and posts
  its signed event to ``/events/servicenow/it-requests``;
* HR's shared mailbox is watched (a Maildir's folders; IMAP IDLE on a real server).

The receivers are the daemon's own (:func:`usm_bridge.events.daemon_app.events_app`, as
``usm-bridge daemon --listen`` serves them), on a free loopback port; each tool is told the
address as its admin would be. The shared secret is made for the run and kept in a file of
the run folder (mode 0600), never printed.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import BridgeConfig
    from .sync.daemon import Daemon

__all__ = [
    "EVENTS_INTERVAL",
    "EventsMoved",
    "Quiet",
    "event_receivers",
    "events_moved",
    "with_webhook_secret",
]

#: Every instance's interval when the demo runs on events and no ``--interval`` is given.
EVENTS_INTERVAL = 300.0
#: The instances that take events, and the path of their receiver.
_RECEIVERS = {"facilities-jira": "jira", "it-requests": "servicenow"}
#: The ServiceNow table IT's requested items live in (the rule fires for it).
_IT_TABLE = "sc_req_item"
_SECRET_FILE = "webhook-secret"  # noqa: S105 - a file name, not a secret


def with_webhook_secret(config_text: str, secrets_dir: Path) -> tuple[str, str]:
    """``config_text`` with a ``webhook_secret`` (a new random one, in a file of
    ``secrets_dir``) on each instance that takes events; and that secret, for the tools."""
    secret = secrets.token_urlsafe(32)
    secrets_dir.mkdir(parents=True, exist_ok=True)
    path = secrets_dir / _SECRET_FILE
    path.write_text(secret + "\n", encoding="utf-8")
    path.chmod(0o600)
    quoted = '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'
    for name in _RECEIVERS:
        header = re.compile(rf"^\[instances\.{re.escape(name)}\]\n", re.MULTILINE)
        config_text, found = header.subn(
            lambda m: f"{m.group(0)}webhook_secret = {{ file = {quoted} }}\n", config_text
        )
        if found != 1:
            raise ValueError(f"the sample config has {found} [instances.{name}] sections, not 1")
    return config_text, secret


@contextmanager
def event_receivers(config: BridgeConfig, daemon: Daemon, tools: Any, secret: str) -> Iterator[str]:
    """The daemon's event receivers on a free loopback port, each tool sending its events
    there while the block runs; yields the receivers' base URL."""
    from .events.daemon_app import events_app
    from .events.server import AppServer

    with AppServer(events_app(config, daemon), "127.0.0.1", 0) as server:
        tools.jira.site.webhooks.register(
            f"{server.url}/events/jira/facilities-jira", secret=secret, name="usm-bridge demo"
        )
        tools.snow.events.register(
            f"{server.url}/events/servicenow/it-requests",
            secret=secret,
            tables=[_IT_TABLE],
            name="usm-bridge demo",
        )
        yield server.url


class Quiet:
    """Whether the daemon has nothing left to do for some instances: no cycle or push running
    or asked for, no event waiting out its debounce, the next poll further than ``margin``.

    With events, "settled" cannot be "two more polls" (they are minutes apart): it is this,
    held for ``hold`` seconds, longer than the debounce, so that an event the tools are still
    sending (their own writes' too) is seen before the people act again."""

    def __init__(self, daemon: Daemon, instances: tuple[str, ...], *, hold: float) -> None:
        self.daemon = daemon
        self.instances = instances
        self.hold = hold
        self._since: float | None = None

    def _idle(self, now: float) -> bool:
        margin = self.daemon.config.daemon.event_debounce + 0.5
        # Read without the daemon's lock, as the demo's waiter does: a flag read a moment
        # early only makes the wait longer, since it must hold for ``hold`` seconds.
        for name in self.instances:
            slot = self.daemon.schedule.slots[name]
            if slot.running or slot.hinted is not None or slot.next_due <= now + margin:
                return False
            push = self.daemon.pushes.slots.get(name)
            if push is not None and (push.running or push.requested):
                return False
        return True

    def wait(self, wait: Callable[[str, Callable[[], bool | None]], object]) -> None:
        """Through the demo's ``wait``, until the daemon has been quiet for :attr:`hold`
        seconds from now on."""
        self._since = None
        wait(f"{', '.join(self.instances)} to be quiet for {self.hold:g} s", self)
        # The waiter polls: give an event posted in its last moment the time to arrive.
        time.sleep(0.05)

    def __call__(self) -> bool | None:
        """For a waiter: ``True`` once idle for ``hold`` seconds in a row, else ``None``."""
        now = self.daemon.clock.monotonic()
        if not self._idle(now):
            self._since = None
            return None
        if self._since is None:
            self._since = now
        return True if now - self._since >= self.hold else None


@dataclass(frozen=True)
class EventsMoved:
    """What moved the story: the deliveries each receiver took, the mailbox's wakes, and
    the cycles the daemon ran of each instance (the first cycles ran before it started)."""

    accepted: Mapping[str, int]
    wakes: Mapping[str, int]
    cycles: Mapping[str, int]

    def line(self) -> str:
        parts = [f"{n} {_RECEIVERS[name]} event(s) for {name}" for name, n in self.accepted.items()]
        parts += [f"{n} mailbox wake(s) of {name}" for name, n in self.wakes.items()]
        return "moved by " + ", ".join(parts)


def events_moved(daemon: Daemon) -> EventsMoved:
    def sample(metric: str, labels: dict[str, str]) -> int:
        value = daemon.metrics.registry.get_sample_value(metric, labels)
        return int(value or 0)

    accepted = {
        name: sample("usm_bridge_events_total", {"instance": name, "outcome": "accepted"})
        for name in _RECEIVERS
    }
    wakes = {
        name: sample("usm_bridge_watch_wakes_total", {"instance": name})
        for name in daemon.watchers.names
    }
    cycles = {name: slot.cycles for name, slot in daemon.schedule.slots.items()}
    return EventsMoved(accepted, wakes, cycles)
