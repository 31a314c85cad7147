"""A broker that dies under the workers: Redis SIGKILLed while workers are in the middle of
cycles, down for a few seconds, then back empty (as compose.yaml runs it: nothing on disk).

What Redis held is gone with it: the cycles waiting in the queues and the ones handed out and
not yet acknowledged. That loses no work, because a cycle carries no data (everything is in the
store and the tools) and the scheduler enqueues each instance's cycle again on its interval;
the workers and the scheduler must ride the outage out (reconnect, not exit) and the chain
must converge with nothing lost or duplicated. The broker is a private ``redis-server`` on a
port of this test's own, so that killing it disturbs no other test.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.chain_checks import check_invariants, mail_first_onboardings, people_work
from e2e.e2e_env import Tools

from celery_workers.conftest import Processes, workers_config
from celery_workers.test_worker_kills import (
    _a_busy_worker,
    _finished_rounds,
    finish_and_converge,
)
from usm_bridge.store import Store

SEED = 20261207
#: The steps of :func:`e2e.chain_checks.people_work` at which the broker goes down: the two at
#: which new onboarding mail arrives (of the kill tests' 20 steps, the rest come after).
OUTAGE_STEPS = (2, 5)
STEPS = 20
WORKERS = 2


class PrivateRedis:
    """A ``redis-server`` of this test's own that keeps nothing on disk, restartable on its port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "the private redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian's redis-server)")
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()


@pytest.mark.postgres
def test_workers_and_scheduler_ride_out_a_broker_lost_mid_task(
    tools: Tools,
    fresh_postgres_url: str,
    private_redis: PrivateRedis,
    processes: Processes,
    tmp_path: Path,
) -> None:
    store_url = fresh_postgres_url
    config = workers_config(tools, processes.config, store_url, private_redis.url)
    instances = list(config.instances)
    Store.open(store_url).close()
    log = tmp_path / "processes.log"
    rng = random.Random(SEED)
    mail_first_onboardings(tools)
    noted: set[str] = set()
    try:
        workers = [processes.worker() for _ in range(WORKERS)]
        scheduler = processes.start("scheduler")
        _finished_rounds(store_url, instances, 1, log)
        for step in OUTAGE_STEPS:
            people_work(tools, step, noted, kills=STEPS)
            _a_busy_worker(processes, workers, rng, log)
            time.sleep(rng.uniform(0.0, 0.3))  # somewhere in a task
            private_redis.kill()
            time.sleep(rng.uniform(2.0, 4.0))  # the scheduler's sends fail meanwhile
            for process in (*workers, scheduler):
                assert process.poll() is None, f"exited during the outage: {log.read_text()}"
            private_redis.start()  # back, empty
            _finished_rounds(store_url, instances, 2, log)
        for process in (*workers, scheduler):
            assert process.poll() is None, log.read_text()[-4000:]

        # -- people finish the work; the bridge converges and then finds nothing to do -------
        finish_and_converge(tools, store_url, instances, noted, log)
    finally:
        processes.stop_all()
    text = log.read_text(errors="replace")
    assert "could not enqueue" in text, "no send failed: was the broker ever down?"
    # A task that did its work is not failed for a push it could not send.
    assert "raised unexpected" not in text, text[-4000:]
    check_invariants(tools, store_url)
