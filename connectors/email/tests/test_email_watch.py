"""The mailbox watched (issue #19): IMAP IDLE (RFC 2177) on the real Dovecot, through the fault
proxy (which records what the client says, cuts connections and can hide a capability), and a
Maildir's folders; then a daemon polling every 5 minutes that stores mail by IDLE alone.

Every wait has a deadline and asserts what happened (a wake, a call stored), never how fast."""

from __future__ import annotations

import json
import logging
import mailbox
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from email_harness import (
    ImapHarness,
    MaildirHarness,
    Wakes,
    customer_mail,
    imap_desk,
    maildir_desk,
    watching,
    write_config,
)
from email_servers import USER, DovecotServer, FaultyProxy, SmtpServer
from usm_bridge.config import load_config
from usm_bridge.connector import Connector
from usm_bridge.errors import PermanentRemoteError
from usm_bridge.runtime import open_runtime
from usm_bridge.store import Store
from usm_bridge.sync.daemon import Daemon
from usm_bridge.sync.watchers import watches_of

from usm_bridge_email import EmailConnector, maildir_watch
from usm_bridge_email.maildir_watch import watch_maildir


def idle_connector(harness: ImapHarness, **imap: Any) -> Connector:
    settings = harness.settings().imap
    assert settings is not None
    values = settings.model_dump()
    values.update(password=settings.password.get_secret_value() if settings.password else None)
    return harness.make_connector(imap={**values, **imap})


def wait_until(test: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, "waited in vain"
        time.sleep(0.02)


# -- IDLE on Dovecot ---------------------------------------------------------------------------


def test_idle_wakes_on_new_mail_a_flag_change_and_an_expunge(
    dovecot_harness: ImapHarness,
) -> None:
    harness = dovecot_harness
    connector = idle_connector(harness)
    with watching(connector.watch) as (wakes, _):
        seen = wakes.beyond(0)  # idling: the first wake is for what came before it
        harness.deliver(customer_mail("Printer jams", "Again.")[1])
        seen = wakes.beyond(seen)  # EXISTS
        client = harness.client
        client.select(f'"{harness.inbox}"')
        time.sleep(0.3)  # the EXISTS (and RECENT) of the delivery are in; what follows is new
        seen = wakes.now()
        assert client.store("1", "+FLAGS", "\\Seen")[0] == "OK"
        seen = wakes.beyond(seen)  # FETCH
        time.sleep(0.3)
        seen = wakes.now()
        assert client.store("1", "+FLAGS", "\\Deleted")[0] == "OK"
        assert client.expunge()[0] == "OK"
        wakes.beyond(seen)  # FETCH, EXPUNGE


def test_idle_is_issued_again_every_idle_renew_on_the_one_connection(
    dovecot_harness: ImapHarness, dovecot_proxy: FaultyProxy
) -> None:
    connector = idle_connector(dovecot_harness, idle_renew=1)
    dovecot_proxy.record()
    started = time.monotonic()
    try:
        with watching(connector.watch):
            wait_until(lambda: dovecot_proxy.said().count(b" IDLE\r\n") >= 3)
            elapsed = time.monotonic() - started
            said = dovecot_proxy.said()
    finally:
        dovecot_proxy.record(False)
    assert said.count(b" LOGIN ") == 1  # one connection all along
    # Each IDLE ended (DONE) before the next, and none issued before the period was over:
    # the third comes two periods after the first at the earliest (a delay only adds).
    assert 2 <= said.count(b"DONE\r\n") <= said.count(b" IDLE\r\n")
    assert elapsed >= 2.0


def test_a_dropped_idle_connection_is_opened_again_and_later_mail_still_wakes(
    dovecot_harness: ImapHarness, dovecot_proxy: FaultyProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="usm_bridge_email.idle")
    connector = idle_connector(dovecot_harness)
    with watching(connector.watch) as (wakes, _):
        seen = wakes.beyond(0)
        assert dovecot_proxy.drop() == 1  # the IDLE connection, cut as a network fault does
        # Connected again: its first IDLE wakes once, for what came while nobody listened.
        seen = wakes.beyond(seen)
        dovecot_harness.deliver(customer_mail("Door stuck", "Still.")[1])
        wakes.beyond(seen)
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("idle_lost") == 1
    assert events.count("idle") == 2


def test_a_server_that_ends_the_idle_with_bye_is_connected_to_again(
    dovecot_server: DovecotServer,
    dovecot_harness: ImapHarness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="usm_bridge_email.idle")
    connector = idle_connector(dovecot_harness)
    with watching(connector.watch) as (wakes, _):
        seen = wakes.beyond(0)
        # The server ends every session of the mailbox, as at its shutdown: "* BYE".
        kick = [DOVEADM, "-c", str(dovecot_server.root / "dovecot.conf"), "kick", USER]
        subprocess.run(kick, check=True, capture_output=True, timeout=10)
        seen = wakes.beyond(seen)  # connected again
        dovecot_harness.client.shutdown()  # the person's client was kicked too
        dovecot_harness.client = dovecot_server.client()
        dovecot_harness.deliver(customer_mail("Door stuck", "Still.")[1])
        wakes.beyond(seen)
    (lost,) = [r for r in caplog.records if getattr(r, "event", None) == "idle_lost"]
    assert "* BYE" in lost.getMessage()


def test_a_server_without_idle_is_said_once_and_not_watched(
    dovecot_harness: ImapHarness, dovecot_proxy: FaultyProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="usm_bridge_email.idle")
    dovecot_proxy.hide("IDLE")
    try:
        connector = idle_connector(dovecot_harness)
        with watching(connector.watch) as (wakes, thread):
            thread.join(5)
            assert not thread.is_alive()  # returned by itself: the instance is polled only
        assert wakes.now() == 0
    finally:
        dovecot_proxy.hide()
    unsupported = [r for r in caplog.records if getattr(r, "event", None) == "idle_unsupported"]
    assert len(unsupported) == 1
    assert "does not offer IDLE" in unsupported[0].getMessage()


# -- a Maildir ---------------------------------------------------------------------------------


def test_a_maildir_watch_wakes_on_a_delivery_and_on_a_move_to_cur(tmp_path: Path) -> None:
    harness = MaildirHarness(tmp_path)

    def watch(wake: Callable[[], None], stop: threading.Event) -> None:
        watch_maildir(harness.inbox_path, wake, stop, period=0.05)

    with watching(watch) as (wakes, _):
        seen = wakes.beyond(0)  # watching: the first wake is for what came before it
        harness.deliver(customer_mail("Door stuck", "Door 3 is stuck.")[1])
        seen = wakes.beyond(seen)
        time.sleep(0.2)
        seen = wakes.now()
        (new,) = (harness.inbox_path / "new").iterdir()
        new.rename(harness.inbox_path / "cur" / f"{new.name}:2,S")  # a mail client read it
        wakes.beyond(seen)


def test_a_quiet_maildir_wakes_nothing(tmp_path: Path) -> None:
    harness = MaildirHarness(tmp_path)
    harness.deliver(customer_mail("Door stuck", "Door 3 is stuck.")[1])
    time.sleep(0.1)  # older than the file system's timestamp tick

    def watch(wake: Callable[[], None], stop: threading.Event) -> None:
        watch_maildir(harness.inbox_path, wake, stop, period=0.05)

    with watching(watch) as (wakes, _):
        wakes.beyond(0)  # watching
        time.sleep(0.5)
        assert wakes.now() == 1


def test_the_maildir_connector_watches_its_inbox(tmp_path: Path) -> None:
    harness = MaildirHarness(tmp_path)
    connector = harness.make_connector()
    assert isinstance(connector, EmailConnector) and EmailConnector.watches
    with watching(connector.watch) as (wakes, _):
        seen = wakes.beyond(0)  # watching
        harness.deliver(customer_mail("Door stuck", "Door 3 is stuck.")[1])
        wakes.beyond(seen)


# -- a daemon polling every 5 minutes ----------------------------------------------------------


#: Dovecot's admin tool, beside the server (Debian's dovecot-core).
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"


class NoSpread(random.Random):
    """The first cycle at once, and every interval exactly."""

    def uniform(self, a: float, b: float) -> float:
        return 0.0 if a <= 0.0 <= b else a


@contextmanager
def daemon_of(config_path: Path) -> Iterator[tuple[Daemon, Store]]:
    """A daemon of the config on a thread, with its watchers; stopped when the block ends."""
    config = load_config(config_path)
    stop = threading.Event()
    with open_runtime(config, stop=stop) as runtime:
        daemon = Daemon(
            config,
            runtime.engine,
            stop=stop,
            rng=NoSpread(),
            watches=watches_of(config, runtime.instances, list(config.instances)),
            watch_backoff=(0.2, 1.0),
        )
        thread = threading.Thread(target=daemon.run, daemon=True)
        thread.start()
        try:
            yield daemon, runtime.store
        finally:
            daemon.stop()
            thread.join(15)
            assert not thread.is_alive()


def calls(store: Store) -> int:
    with store.begin(readonly=True) as tx:
        return len(tx.list_calls(unit="hr"))


def proxied_desk(harness: ImapHarness, proxy: FaultyProxy, smtp: SmtpServer) -> Any:
    desk = imap_desk(harness, smtp, "hr-mail", "hr", address="servicedesk@hr.example",
                     reference_prefix="HR")  # fmt: skip
    desk.settings["imap"]["port"] = proxy.port  # so that the test can cut its connections
    return desk


def test_a_daemon_polling_every_five_minutes_stores_each_mail_by_idle_alone(
    tmp_path: Path,
    dovecot_harness: ImapHarness,
    dovecot_proxy: FaultyProxy,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    desk = proxied_desk(dovecot_harness, dovecot_proxy, smtp_server)
    path = write_config(tmp_path, desk, instance={"interval": "5m"})
    with daemon_of(path) as (daemon, store):
        wait_until(lambda: daemon.schedule.slots["hr-mail"].cycles >= 1)  # the first, at once
        wait_until(lambda: any(getattr(r, "event", None) == "idle" for r in caplog.records))
        for n in (1, 2, 3):  # a burst: one cycle or two, and each mail stored
            dovecot_harness.deliver(customer_mail(f"Printer {n} jams", "Again.")[1])
        wait_until(lambda: calls(store) == 3)
        # The IDLE connection (and the cycle's) cut: connected again, later mail still wakes.
        assert dovecot_proxy.drop() >= 1
        dovecot_harness.deliver(customer_mail("Printer 4 jams", "Again.")[1])
        wait_until(lambda: calls(store) == 4)
        assert daemon.watchers.starts == {"hr-mail": 1}  # the watcher itself never failed
        assert daemon.schedule.slots["hr-mail"].failures == 0
        settled(daemon)
    with Store.open(f"sqlite:///{tmp_path}/bridge.db") as store:
        assert calls(store) == 4  # every message delivered is one call, none twice


def settled(daemon: Daemon) -> None:
    """What a cycle does to the mailbox (its acknowledgements go to the Sent folder or outbox,
    which are not watched) wakes nothing: no wake comes once the cycles are done, so no cycle
    wakes the next, for ever."""
    slot = daemon.schedule.slots["hr-mail"]
    wait_until(lambda: not slot.running)

    def wakes() -> float | None:
        return daemon.metrics.registry.get_sample_value(
            "usm_bridge_watch_wakes_total", {"instance": "hr-mail"}
        )

    before = wakes()
    time.sleep(1.5)  # past the debounce (1 s), and for a Maildir a look at its times (1 s)
    assert wakes() == before


def test_a_daemon_polling_every_five_minutes_stores_maildir_mail_by_its_watch(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    desk = maildir_desk(tmp_path, smtp_server, "hr-mail", "hr", address="servicedesk@hr.example",
                        reference_prefix="HR")  # fmt: skip
    box = mailbox.Maildir(desk.settings["maildir"]["path"], create=True)
    path = write_config(tmp_path, desk, instance={"interval": "5m"})
    with daemon_of(path) as (daemon, store):
        wait_until(lambda: daemon.schedule.slots["hr-mail"].cycles >= 1)
        for n in (1, 2):
            box.add(customer_mail(f"Door {n} stuck", "Again.")[1])
            wait_until(lambda n=n: calls(store) == n)  # type: ignore[misc]
        settled(daemon)
        assert calls(store) == 2


def test_a_daemon_on_a_server_without_idle_polls_and_says_so_once(
    tmp_path: Path,
    dovecot_harness: ImapHarness,
    dovecot_proxy: FaultyProxy,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    desk = proxied_desk(dovecot_harness, dovecot_proxy, smtp_server)
    path = write_config(tmp_path, desk, instance={"interval": "1s"})
    dovecot_proxy.hide("IDLE")
    try:
        with daemon_of(path) as (daemon, store):
            for n in (1, 2):
                dovecot_harness.deliver(customer_mail(f"Printer {n} jams", "Again.")[1])
            wait_until(lambda: calls(store) == 2)  # by polling
            polled = daemon.schedule.slots["hr-mail"].cycles
            wait_until(lambda: daemon.schedule.slots["hr-mail"].cycles > polled)
            assert daemon.watchers.starts == {"hr-mail": 1}
    finally:
        dovecot_proxy.hide()
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("idle_unsupported") == 1
    assert "idle" not in events


def test_a_watch_turned_off_in_the_config_is_not_run(
    tmp_path: Path, dovecot_harness: ImapHarness, smtp_server: SmtpServer
) -> None:
    desk = imap_desk(dovecot_harness, smtp_server, "hr-mail", "hr", address="hr@hr.example")
    config = load_config(write_config(tmp_path, desk, instance={"watch": False}))
    with open_runtime(config) as runtime:
        assert watches_of(config, runtime.instances, ["hr-mail"]) == {}


def test_sigterm_stops_a_daemon_that_idles_at_once_with_exit_0(
    tmp_path: Path, dovecot_harness: ImapHarness, smtp_server: SmtpServer
) -> None:
    desk = imap_desk(dovecot_harness, smtp_server, "hr-mail", "hr", address="hr@hr.example")
    path = write_config(
        tmp_path, desk, instance={"interval": "5m"}, daemon={"listen": "off", "log_format": "json"}
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "usm_bridge", "daemon", "-c", str(path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while True:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert line is not None, "".join(seen)
            seen.append(line)
            if json.loads(line).get("event") == "idle":
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0, "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        reader.join(10)
        if proc.stderr is not None:
            proc.stderr.close()


def test_a_refused_sign_in_is_raised_for_the_daemon_to_log_and_retry(
    dovecot_harness: ImapHarness,
) -> None:
    # Not retried inside like a lost connection: a person must fix it, and the daemon's
    # watcher logs it (without a traceback) and starts the watch again after its backoff.
    connector = idle_connector(dovecot_harness, password="not-the-password")
    with pytest.raises(PermanentRemoteError) as raised:
        connector.watch(Wakes(), threading.Event())
    assert "login" in str(raised.value)
    assert "not-the-password" not in str(raised.value)


def test_a_maildir_watch_is_told_by_inotify_before_it_looks_again(tmp_path: Path) -> None:
    # Looking every 60 s: a wake within the wait's limit comes from inotify.
    harness = MaildirHarness(tmp_path)

    def watch(wake: Callable[[], None], stop: threading.Event) -> None:
        watch_maildir(harness.inbox_path, wake, stop, period=60)

    with watching(watch) as (wakes, _):
        seen = wakes.beyond(0)  # watching
        harness.deliver(customer_mail("Door stuck", "Door 3 is stuck.")[1])
        seen = wakes.beyond(seen)
        (new,) = (harness.inbox_path / "new").iterdir()
        new.rename(harness.inbox_path / "cur" / f"{new.name}:2,S")
        wakes.beyond(seen)


def test_without_inotify_a_maildir_is_still_watched_by_its_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="usm_bridge_email.maildir_watch")

    def no_inotify() -> None:
        raise OSError("inotify is Linux's")  # as on a BSD or a Mac

    monkeypatch.setattr(maildir_watch, "_libc", no_inotify)
    harness = MaildirHarness(tmp_path)

    def watch(wake: Callable[[], None], stop: threading.Event) -> None:
        watch_maildir(harness.inbox_path, wake, stop, period=0.05)

    with watching(watch) as (wakes, _):
        seen = wakes.beyond(0)  # watching
        harness.deliver(customer_mail("Door stuck", "Door 3 is stuck.")[1])
        wakes.beyond(seen)
    assert "inotify is not available" in caplog.text
