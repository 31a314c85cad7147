"""With ``log_format = "json"``, every line a worker writes is one JSON object, Celery's and
its process pool's lines too: a pool process that dies is reported by billiard's own logger,
which Celery would give a handler printing ``[2026-12-07 20:40:01,512: ERROR/MainProcess]
Process 'ForkPoolWorker-1' ... exited with ...`` among the JSON (a CI run's compose test broke
on such a line when the pool process got SIGTERM before its parent)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from celery_workers.conftest import delete_queues
from usm_bridge.config import load_config

MAPPINGS = Path(__file__).resolve().parents[2] / "usm_bridge" / "data" / "mappings"
WAIT = 30.0


def _config(folder: Path, broker: str) -> Path:
    for sub in ("mail/cur", "mail/new", "mail/tmp"):
        (folder / sub).mkdir(parents=True)
    config = folder / "usm-bridge.toml"
    config.write_text(
        f"""
[store]
url = "sqlite:///{folder / "state.db"}"

[units.hr]

[instances.hr-mail]
unit = "hr"
kind = "email"
mapping = "{MAPPINGS / "email-service-desk.yaml"}"

[instances.hr-mail.settings]
address = "servicedesk@hr.example"
maildir = {{ path = "{folder / "mail"}" }}

[daemon]
log_format = "json"

[workers]
broker_url = "{broker}"
queue_prefix = "t{os.getpid()}x{time.monotonic_ns()}.tool."
""",
        encoding="utf-8",
    )
    return config


def _lines(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if line.strip()]


def _wait_for(log: Path, what: str, worker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT
    while not any(what in line for line in _lines(log)):
        assert worker.poll() is None, f"the worker exited {worker.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {what!r} within {WAIT:g} s:\n{log.read_text()}"
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


def test_a_dead_pool_process_is_reported_in_a_json_line_and_every_line_is_json(
    tmp_path: Path, broker_url: str
) -> None:
    config = _config(tmp_path, broker_url)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "usm_bridge", "worker", "-c", str(config), "-n", "1"],
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )
    try:
        _wait_for(log, " ready.", worker)
        (pool,) = _children(worker.pid)
        os.kill(pool, signal.SIGKILL)
        _wait_for(log, "exited with", worker)
        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(timeout=WAIT) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        delete_queues(load_config(config))
    records: list[dict[str, Any]] = []
    for number, line in enumerate(_lines(log), 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"line {number} of the worker's log is not JSON: {line!r}")
    (died,) = [r for r in records if "exited with" in r.get("msg", "")]
    assert died["level"] == "error" and f"pid:{pool}" in died["msg"], died
    assert "signal 9" in died["msg"], died
    assert any(r["msg"].endswith(" ready.") for r in records), records
