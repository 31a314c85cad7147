"""Watchers (issue #19): a connector's ``watch`` on a thread of its own wakes its instance's cycle
through :meth:`Daemon.hint`; a watcher that fails is logged and started again after a backoff;
one that returns (the tool cannot be watched) is not; none stops the daemon or its polling.

A real :class:`Daemon` on the real clock, an engine that counts its cycles, watches that are
plain functions the test drives."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sync.memory_tool import Clock, MemoryConnector, MemoryTool
from test_daemon_events_http import CountingEngine, NoSpread

from usm_bridge.config import BridgeConfig, DaemonConfig, InstanceConfig
from usm_bridge.model import Unit
from usm_bridge.plugins import PluginHost
from usm_bridge.sync.daemon import Daemon
from usm_bridge.sync.instances import InstanceRegistry
from usm_bridge.sync.watchers import Watch, Watchers, watches_of

Wake = Callable[[], None]


def config(interval: float = 300.0, **watch: bool) -> BridgeConfig:
    names = watch or {"mail": True}
    return BridgeConfig(
        units={"u": Unit(name="u")},
        instances={
            name: InstanceConfig(
                name=name,
                unit="u",
                kind="memory",
                mapping=Path("m.yaml"),
                interval=interval,
                watch=on,
            )
            for name, on in names.items()
        },
        # Shorter than a config may say (1 s at least): the tests wait for every wake.
        daemon=DaemonConfig(listen="off").model_copy(update={"event_debounce": 0.05}),
    )


class Remote:
    """A watch the test drives: ``change()`` makes the running watch call its wake."""

    def __init__(self) -> None:
        self.changes = threading.Semaphore(0)
        self.running = threading.Event()
        self.stopped = threading.Event()

    def watch(self, wake: Wake, stop: threading.Event) -> None:
        self.running.set()
        while not stop.is_set():
            if self.changes.acquire(timeout=0.05):
                wake()
        self.stopped.set()

    def change(self) -> None:
        self.changes.release()


@pytest.fixture
def running() -> Iterator[Callable[..., Daemon]]:
    """Starts daemons in threads; every one is stopped and joined at the end."""
    started: list[tuple[Daemon, threading.Thread]] = []

    def start(cfg: BridgeConfig, engine: CountingEngine, **kw: object) -> Daemon:
        daemon = Daemon(cfg, engine, rng=NoSpread(), **kw)  # type: ignore[arg-type]
        thread = threading.Thread(target=daemon.run, daemon=True)
        thread.start()
        started.append((daemon, thread))
        return daemon

    yield start
    for daemon, thread in started:
        daemon.stop()
        thread.join(10)
        assert not thread.is_alive()


def metric(daemon: Daemon, name: str) -> float | None:
    return daemon.metrics.registry.get_sample_value(name, {"instance": "mail"})


def wait_until(test: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, "waited in vain"
        time.sleep(0.01)


def test_each_change_seen_wakes_the_cycle_of_an_instance_polled_every_five_minutes(
    running: Callable[..., Daemon],
) -> None:
    engine, remote = CountingEngine(), Remote()
    daemon = running(config(), engine, watches={"mail": remote.watch})
    engine.wait_for("mail", 1)  # the first cycle, at once
    assert remote.running.wait(5)
    for n in range(2, 5):
        remote.change()
        engine.wait_for("mail", n)
    assert engine.count("mail") == 4
    assert metric(daemon, "usm_bridge_watch_wakes_total") == 3
    assert metric(daemon, "usm_bridge_watch_failures_total") == 0


def test_the_watchers_stop_with_the_daemon(running: Callable[..., Daemon]) -> None:
    engine, remote = CountingEngine(), Remote()
    daemon = running(config(), engine, watches={"mail": remote.watch})
    assert remote.running.wait(5)
    daemon.stop()
    assert remote.stopped.wait(5)


def test_a_failing_watcher_is_logged_and_started_again_while_polling_goes_on(
    running: Callable[..., Daemon], caplog: pytest.LogCaptureFixture
) -> None:
    engine, remote = CountingEngine(), Remote()
    failures = [RuntimeError("the watch broke"), OSError("and again")]

    def flaky(wake: Wake, stop: threading.Event) -> None:
        if failures:
            raise failures.pop(0)
        remote.watch(wake, stop)

    caplog.set_level(logging.INFO, logger="usm_bridge.sync.watchers")
    daemon = running(config(interval=1.0), engine, watches={"mail": flaky},
                     watch_backoff=(0.05, 0.1))  # fmt: skip
    assert remote.running.wait(5)
    assert daemon.watchers.starts == {"mail": 3}
    assert metric(daemon, "usm_bridge_watch_failures_total") == 2
    crashes = [r for r in caplog.records if getattr(r, "event", None) == "watch_crash"]
    assert [r.error for r in crashes] == [  # type: ignore[attr-defined]
        "RuntimeError: the watch broke",
        "OSError: and again",
    ]
    before = engine.count("mail")
    remote.change()
    engine.wait_for("mail", before + 1)
    engine.wait_for("mail", 3)  # polling every second, beside the watcher


def test_a_watcher_that_returns_is_not_started_again(
    running: Callable[..., Daemon], caplog: pytest.LogCaptureFixture
) -> None:
    engine = CountingEngine()
    calls: list[int] = []

    def cannot(wake: Wake, stop: threading.Event) -> None:
        calls.append(1)  # a tool that cannot be watched says why, and returns

    caplog.set_level(logging.INFO, logger="usm_bridge.sync.watchers")
    daemon = running(config(interval=1.0), engine, watches={"mail": cannot},
                     watch_backoff=(0.01, 0.01))  # fmt: skip
    engine.wait_for("mail", 2)  # polled all the same
    assert calls == [1]
    assert daemon.watchers.starts == {"mail": 1}
    ends = [r for r in caplog.records if getattr(r, "event", None) == "watch_end"]
    assert len(ends) == 1


def test_a_watch_of_an_instance_the_daemon_does_not_run_is_left_out() -> None:
    engine, remote = CountingEngine(), Remote()
    daemon = Daemon(
        config(), engine,  # type: ignore[arg-type]
        rng=NoSpread(), watches={"mail": remote.watch, "other": remote.watch},
    )  # fmt: skip
    assert daemon.watchers.names == ["mail"]


def test_join_names_a_watcher_that_overstays(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    def deaf(wake: Wake, stop: threading.Event) -> None:
        release.wait(10)  # does not look at stop

    watchers = Watchers({"mail": deaf}, lambda _name: None)
    watchers.start()
    watchers.stop()
    try:
        assert watchers.join(timeout=0.1) == ["mail"]
        assert any(getattr(r, "event", None) == "watch_late" for r in caplog.records)
    finally:
        release.set()
    assert watchers.join(timeout=5) == []


class Watching(MemoryConnector):
    watches = True

    def watch(self, wake: Wake, stop: threading.Event) -> None:
        stop.wait()


def test_watches_of_takes_connectors_that_watch_and_instances_that_let_them() -> None:
    cfg = config(mail=True, off=False, plain=True)
    clock = Clock()
    connectors = {
        "mail": Watching(MemoryTool("mail", clock)),
        "off": Watching(MemoryTool("off", clock)),
        "plain": MemoryConnector(MemoryTool("plain", clock)),
    }
    registry = InstanceRegistry(cfg, PluginHost(load_entrypoints=False), connectors=connectors)
    found: dict[str, Watch] = watches_of(cfg, registry, ["mail", "off", "plain", "unknown"])
    assert list(found) == ["mail"]
    assert MemoryConnector.watches is False
