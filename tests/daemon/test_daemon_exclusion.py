"""One daemon per store, and a cycle never run twice at once, with real ``usm-bridge``
processes on SQLite and PostgreSQL: a second daemon exits 2 naming the first, or waits for it
with ``--wait`` and takes over within seconds of a SIGKILL; ``sync --once`` skips the instance
whose cycle the daemon is running."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from daemon_process import Running, reading_logs, wait_for
from test_daemon_engine import setup

from usm_bridge.cli import cli
from usm_bridge.store import SchemaPolicy, Store

pytest.importorskip("usm_bridge_email")
pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and flock")

HERE = Path(__file__).parent
MAILS = 4


@pytest.fixture
def config(tmp_path: Path, store_url: str) -> Path:
    """The mailbox instance of :mod:`test_daemon_engine` (4 new mails, a cycle a second) on a
    store of each back end, named by an absolute URL as the messages show it."""
    (tmp_path / "state").mkdir()
    path = setup(tmp_path, interval="1s")
    text = path.read_text(encoding="utf-8")
    assert text.count('url = "sqlite:///bridge.db"') == 1
    path.write_text(text.replace("sqlite:///bridge.db", store_url), encoding="utf-8")
    return path


@contextmanager
def daemon(config: Path, *options: str) -> Iterator[Running]:
    """A real ``usm-bridge daemon`` whose reads wait while ``state/hold`` exists."""
    state = config.parent / "state"
    args = [sys.executable, str(HERE / "daemon_held_main.py"), str(state),
            "daemon", "-c", str(config), *options]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    with subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env=env, cwd=config.parent,
    ) as proc, reading_logs(proc, state) as running:  # fmt: skip
        yield running


def mid_cycle(run: Running) -> None:
    """Wait until the daemon is inside its first cycle (its read held by ``state/hold``)."""
    wait_for(run.state / f"reading-{run.proc.pid}")


def holder_of(run: Running) -> str:
    return f"pid {run.proc.pid} on {socket.gethostname()} since "


def one_line(text: str) -> str:
    return " ".join(text.split())  # the console wraps long messages


def stored_calls(url: str) -> int:
    with Store.open(url, schema=SchemaPolicy.READ) as store, store.begin(readonly=True) as tx:
        return len(tx.list_calls())


def test_a_second_daemon_on_the_same_store_exits_2_naming_the_store_and_the_first(
    config: Path, store_url: str
) -> None:
    with daemon(config) as first:
        first.event("daemon_start")  # it holds the daemon lock by now
        second = subprocess.run(
            [sys.executable, "-m", "usm_bridge", "daemon", "-c", str(config)],
            capture_output=True, text=True, timeout=120, cwd=config.parent, check=False,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr
        message = one_line(second.stderr)
        assert f"error: another usm-bridge daemon is running on the store {store_url} (" in message
        assert holder_of(first) in message
        assert "stop it first, or start this one with --wait" in message
        assert '"event": "cycle"' not in second.stderr  # it never ran a cycle
        first.event("cycle", where=lambda e: e["ok"] and e["read"] == MAILS)
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(30) == 0
    assert stored_calls(store_url) == MAILS


def test_sync_once_skips_the_cycle_the_daemon_is_running(config: Path, store_url: str) -> None:
    (config.parent / "state" / "hold").touch()
    with daemon(config) as first:
        mid_cycle(first)
        runner = CliRunner()
        text = runner.invoke(cli, ["sync", "--once", "-c", str(config)])
        assert text.exit_code == 0, text.output
        lines = text.output.splitlines()
        skipped = f"skipped hr-mail: a cycle of hr-mail runs in {holder_of(first)}"
        assert lines[0].startswith(skipped)
        assert lines[-1] == "1 cycles: 0 ok, 0 failed, 1 skipped (running elsewhere)"
        as_json = runner.invoke(cli, ["sync", "--once", "-c", str(config), "--json"])
        assert as_json.exit_code == 0, as_json.output
        (entry,) = json.loads(as_json.output)
        assert entry["ok"] and entry["skipped"].startswith("a cycle of hr-mail runs in pid ")
        assert entry["counters"]["read"] == 0
        assert stored_calls(store_url) == 0  # neither sync read a mail the daemon is reading
        (config.parent / "state" / "hold").unlink()
        cycle = first.event("cycle")
        assert cycle["ok"] and cycle["read"] == cycle["stored"] == MAILS
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(30) == 0
    again = CliRunner().invoke(cli, ["sync", "--once", "-c", str(config), "--json"])
    (entry,) = json.loads(again.output)
    assert entry["skipped"] is None and entry["counters"]["read"] == 0
    assert stored_calls(store_url) == MAILS


def test_a_waiting_daemon_takes_over_within_15_s_of_a_sigkill_of_the_first(
    config: Path, store_url: str
) -> None:
    hold = config.parent / "state" / "hold"
    hold.touch()
    with daemon(config) as first:
        mid_cycle(first)  # holding the daemon lock, and the cycle and push locks of hr-mail
        with daemon(config, "--wait") as second:
            waiting = second.event("daemon_waiting")
            assert waiting["holder"].startswith(holder_of(first))
            first.proc.send_signal(signal.SIGKILL)
            assert first.proc.wait(10) == -signal.SIGKILL
            killed = time.monotonic()
            hold.unlink()
            second.event("daemon_took_over", timeout=15)
            cycle = second.event("cycle", timeout=max(15 - (time.monotonic() - killed), 0.1))
            assert cycle["ok"] and cycle["read"] == cycle["stored"] == MAILS
            second.proc.send_signal(signal.SIGTERM)
            assert second.proc.wait(30) == 0
    assert stored_calls(store_url) == MAILS


def test_a_waiting_daemon_stops_on_sigterm_without_running_a_cycle(config: Path) -> None:
    with daemon(config) as first:
        first.event("daemon_start")
        with daemon(config, "--wait") as second:
            second.event("daemon_waiting")
            second.proc.send_signal(signal.SIGTERM)
            assert second.proc.wait(30) == 0
            assert "cycle" not in [entry.get("event") for entry in second.rest()]
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(30) == 0
