"""The real engine under ``sync --once``, ``status`` and a real ``usm-bridge daemon`` process,
over a Maildir e-mail instance (the embedded default of connectors/email)."""

from __future__ import annotations

import json
import mailbox
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import pytest
from click.testing import CliRunner

from usm_bridge.attachments.streams import spool_prefix
from usm_bridge.cli import cli
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR

pytest.importorskip("usm_bridge.sync.engine")
pytest.importorskip("usm_bridge_email")

ROOT = Path(__file__).parents[2]
CONFIG = """\
[store]
url = "sqlite:///bridge.db"

[units.hr]
allowed_domains = ["example.org"]

[instances.hr-mail]
unit = "hr"
kind = "email"
mapping = "{mapping}"
interval = "{interval}"

[instances.hr-mail.settings]
address = "servicedesk@hr.example"
reference_prefix = "HR"
maildir = {{ path = "{maildir}" }}
allowed_domains = ["example.org"]

[daemon]
log_format = "json"
listen = "127.0.0.1:0"
"""


def deliver(root: Path, count: int) -> None:
    box = mailbox.Maildir(root / "Maildir", create=True)
    for i in range(count):
        message = EmailMessage()
        message["From"] = f"Ann {i} <ann{i}@example.org>"
        message["To"] = "servicedesk@hr.example"
        message["Subject"] = f"A desk for newcomer {i}"
        message["Message-ID"] = make_msgid(domain="example.org")
        message["Date"] = formatdate()
        message.set_content(f"Please prepare desk {i}.")
        box.add(bytes(message))


def setup(
    tmp_path: Path, *, mapping: str = "email-service-desk.yaml", interval: str = "1m"
) -> Path:
    shutil.copy(SHIPPED_MAPPINGS_DIR / "email-service-desk.yaml", tmp_path)
    config = tmp_path / "usm-bridge.toml"
    text = CONFIG.format(mapping=mapping, interval=interval, maildir=tmp_path / "Maildir")
    config.write_text(text, encoding="utf-8")
    deliver(tmp_path, 4)
    return config


def test_sync_once_and_status_with_the_real_engine(tmp_path: Path) -> None:
    config = setup(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["sync", "--once", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.output)
    assert entry["ok"] and entry["counters"]["read"] == 4 and entry["counters"]["stored"] == 4
    again = runner.invoke(cli, ["sync", "--once", "-c", str(config)])
    assert again.exit_code == 0 and "read 0" in again.output
    status = runner.invoke(cli, ["status", "-c", str(config), "--json"])
    (row,) = json.loads(status.output)["instances"]
    assert row["state"] == "ok" and row["consecutive_failures"] == 0
    assert row["lag_seconds"] < 60 and row["last_counters"]["read"] == 0


def test_sync_once_exits_1_when_the_engine_reports_a_failed_cycle(tmp_path: Path) -> None:
    config = setup(tmp_path, mapping="missing.yaml")
    result = CliRunner().invoke(cli, ["sync", "--once", "-c", str(config)])
    assert result.exit_code == 1
    assert "failed hr-mail" in result.output and "mapping file not found" in result.output
    status = CliRunner().invoke(cli, ["status", "-c", str(config), "--json"])
    (row,) = json.loads(status.output)["instances"]
    assert row["state"] == "failing" and "missing.yaml" in row["last_error"]


def test_the_real_daemon_syncs_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = setup(tmp_path, interval="1s")
    # Attachment spool files: one a killed process left (its process is gone), one a live
    # process is writing (this test's): the daemon's start removes the first only.
    spool = tmp_path / "attachments-spool"
    spool.mkdir()
    with subprocess.Popen([sys.executable, "-c", "pass"]) as gone:
        gone.wait(10)
    stale = spool / f"{spool_prefix(gone.pid)}x1.part"
    live = spool / f"{spool_prefix(os.getpid())}x2.part"
    stale.write_bytes(b"half a file")
    live.write_bytes(b"being written")
    args = [sys.executable, "-m", "usm_bridge", "daemon", "-c", str(config)]
    with subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, cwd=tmp_path,
    ) as proc:  # fmt: skip
        assert proc.stderr is not None
        entries = []
        url = None
        try:
            deadline = time.monotonic() + 30
            # Read until two cycles were logged: the backfill and an empty incremental one.
            while sum(e.get("event") == "cycle" for e in entries) < 2:
                assert time.monotonic() < deadline, entries
                line = proc.stderr.readline()
                assert line, f"the daemon ended early: {entries}"
                entries.append(json.loads(line))
                url = entries[-1].get("url", url)
            assert url is not None
            with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
                assert response.status == 200
            with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
                metrics = response.read().decode()
            assert 'usm_bridge_records_read_total{instance="hr-mail"} 4.0' in metrics
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
            entries += [json.loads(line) for line in proc.stderr]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    cycles = [e for e in entries if e.get("event") == "cycle"]
    assert cycles[0]["ok"] and cycles[0]["read"] == 4 and cycles[0]["stored"] == 4
    assert cycles[1]["read"] == 0
    assert entries[-1]["event"] == "daemon_stop"
    assert [e["removed"] for e in entries if e.get("event") == "spool_swept"] == [1]
    assert sorted(spool.iterdir()) == [live]
