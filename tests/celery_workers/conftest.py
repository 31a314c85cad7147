"""Fixtures of the Celery workers' tests: a real broker (Redis and RabbitMQ on loopback), the
three tools (the end-to-end tests' ``tools``), a config with a ``[workers]`` section, and
worker and scheduler processes started as subprocesses and killed by process group.

A broker that does not answer skips its tests with the reason, except under ``CI=true``, where
it fails them: CI must never pass without both brokers.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.conftest import tools
from e2e.e2e_env import Tools, write_config

from usm_bridge.config import BridgeConfig, load_config

__all__ = ["Processes", "delete_queues", "tools", "workers_config"]

#: Each broker on its usual loopback port; the environment may name another.
BROKERS = {
    "redis": os.environ.get("USM_BRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("USM_BRIDGE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}


def _answers(url: str) -> str | None:
    """Why the broker at ``url`` cannot be used, or ``None`` when it answers."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # whatever the transport raises: the reason is shown
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(params=sorted(BROKERS))
def broker_url(request: pytest.FixtureRequest) -> str:
    url = BROKERS[request.param]
    reason = _answers(url)
    if reason is not None:
        message = f"the {request.param} broker at {url} does not answer: {reason}"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{message} (CI=true: the broker tests are required)", pytrace=False)
        pytest.skip(message)
    return url


def workers_config(
    tools: Tools,
    path: Path,
    store_url: str,
    broker_url: str,
    *,
    extra: dict[str, dict[str, Any]] | None = None,
    time_limits: tuple[float, float] = (60.0, 90.0),
) -> BridgeConfig:
    """The end-to-end tests' config with a ``[workers]`` section on ``broker_url``, with queues
    of this test's own (tests in parallel share the brokers).

    :param extra: more settings of some instances (:func:`e2e.e2e_env.write_config`'s).
    :param time_limits: the tasks' soft and hard time limits, in seconds.
    """
    write_config(tools, path, store_url, extra=extra)
    prefix = f"t{uuid.uuid4().hex[:10]}.tool."
    soft, hard = time_limits
    with path.open("a") as file:
        file.write(
            f'\n[workers]\nbroker_url = "{broker_url}"\nqueue_prefix = "{prefix}"\n'
            f"soft_time_limit = {soft:g}\ntime_limit = {hard:g}\n"
        )
    return load_config(path)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    tests = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (tests, env.get("PYTHONPATH")) if p)
    return env


class Processes:
    """Worker and scheduler processes of one test, each in its own process group (a worker's
    pool processes die with it); every one left is killed at the end. All of them log to one
    file, and each worker also to a file of its own (``log_of``), to tell what it is doing."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.started: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(self, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "usm_bridge", *args[:1], "-c", str(self.config)]
        with (log or self.log).open("ab") as out:
            process = subprocess.Popen(
                [*command, *args[1:]],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_env(),
                start_new_session=True,
            )
        self.started.append(process)
        return process

    def worker(self) -> subprocess.Popen[bytes]:
        """A worker of one pool process, logging to its own file."""
        log = self.log.with_name(f"worker-{len(self.logs)}.log")
        process = self.start("worker", "--concurrency", "1", log=log)
        self.logs[process.pid] = log
        return process

    def in_task(self, process: subprocess.Popen[bytes]) -> bool:
        """Whether the worker has a task in hand: one it received and has not finished (its
        pool takes one at a time)."""
        text = self.logs[process.pid].read_text(errors="replace")
        events = re.findall(r"Task \S+ received|succeeded in|raised unexpected|Discarding", text)
        return bool(events) and events[-1].endswith("received")

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and its pool, and reap it."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.started:
            self.kill(process)
        with self.log.open("ab") as out:  # one log to show when a test fails
            for log in self.logs.values():
                out.write(f"\n==== {log.name}\n".encode() + log.read_bytes())


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path / "usm-bridge.toml", tmp_path / "processes.log")
    try:
        yield running
    finally:
        running.stop_all()


def delete_queues(config: BridgeConfig) -> None:
    """Remove this test's queues from the broker (both keep them otherwise: a Redis queue is a
    list and its binding a set, which outlive the test)."""
    from usm_bridge.workers.app import make_app
    from usm_bridge.workers.tasks import queue_of

    app = make_app(config)
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in config.instances:
            queue = app.amqp.queues[queue_of(config, name)]
            try:
                # Declared first: kombu's Redis transport deletes only the queues whose binding
                # this channel knows, and a fresh channel knows none.
                queue.bind(channel).declare()
                channel.queue_delete(queue.name)
            except Exception:
                continue
