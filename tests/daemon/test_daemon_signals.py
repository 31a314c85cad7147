"""SIGTERM and SIGINT on a real ``usm-bridge daemon`` process; /healthz and /metrics on it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from daemon_process import Running, reading_logs, wait_for

HERE = Path(__file__).parent
CONFIG = """\
[store]
url = "sqlite:///bridge.db"

[units.hr]

[instances.a]
unit = "hr"
kind = "email"
mapping = "m.yaml"
interval = 1

[instances.b]
unit = "hr"
kind = "email"
mapping = "m.yaml"
interval = 1
"""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@contextmanager
def daemon_process(tmp_path: Path, mode: str) -> Iterator[Running]:
    (tmp_path / "usm-bridge.toml").write_text(CONFIG, encoding="utf-8")
    state = tmp_path / "state"
    state.mkdir()
    args = [
        sys.executable, str(HERE / "daemon_fake_main.py"), str(state), mode,
        "daemon", "-c", str(tmp_path / "usm-bridge.toml"),
        "--listen", "127.0.0.1:0", "--log-format", "json",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    with subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env=env, cwd=tmp_path,
    ) as proc, reading_logs(proc, state) as running:  # fmt: skip
        yield running


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_after_the_write_in_flight_commits(tmp_path: Path, sig: int) -> None:
    with daemon_process(tmp_path, "graceful") as run:
        url = run.event("listening")["url"]
        status, body = get(url + "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        wait_for(run.state / "inflight")
        in_flight = (run.state / "inflight").read_text()
        time.sleep(0.1)  # well inside the cycle (0.4 s of writes)
        run.proc.send_signal(sig)
        assert run.proc.wait(15) == 0
        entries = run.rest()
    committed = (run.state / "committed").read_text().split()
    assert in_flight in committed  # the write in flight finished and committed
    assert (run.state / "closed").exists()  # the engine was closed
    cycles = [e for e in entries if e.get("event") == "cycle"]
    assert len(cycles) == len(committed)  # every cycle that ran was booked and logged
    assert all(c["ok"] and c["read"] == 1 for c in cycles)
    events = [e.get("event") for e in entries]
    assert "daemon_stopping" in events or "daemon_stop" in events
    assert events[-1] == "daemon_stop"


def test_metrics_are_served_by_the_running_daemon(tmp_path: Path) -> None:
    with daemon_process(tmp_path, "graceful") as run:
        url = run.event("listening")["url"]
        assert url.startswith("http://127.0.0.1:")
        run.event("cycle")
        status, body = get(url + "/metrics")
        assert status == 200
        text = body.decode()
        assert 'usm_bridge_cycles_total{instance="a",outcome="ok"}' in text or (
            'usm_bridge_cycles_total{instance="b",outcome="ok"}' in text
        )
        assert 'usm_bridge_outbox_backlog{instance="a"} 0.0' in text
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(15) == 0


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    with daemon_process(tmp_path, "stubborn") as run:
        run.event("listening")
        wait_for(run.state / "inflight")
        run.proc.send_signal(signal.SIGTERM)
        run.event("daemon_stopping")
        started = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(10) == 128 + signal.SIGTERM
        assert time.monotonic() - started < 5
    assert not (run.state / "committed").exists()  # it really did not wait for the cycle
