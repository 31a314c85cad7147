"""``usm-bridge sync --once``, ``status`` and ``daemon``: exit codes and output."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from daemon_fakes import FakeClock, FakeEngine

from usm_bridge import runtime as runtime_module
from usm_bridge.cli import cli
from usm_bridge.model import Call, SourceRef
from usm_bridge.store import Store

CONFIG = """\
[store]
url = "sqlite:///bridge.db"

[units.hr]
[units.it]

[instances.hr-mail]
unit = "hr"
kind = "email"
mapping = "mail.yaml"
interval = "1m"

[instances.it-snow]
unit = "it"
kind = "servicenow"
mapping = "snow.yaml"
interval = "5m"

[instances.old-tool]
unit = "it"
kind = "servicenow"
mapping = "snow.yaml"
enabled = false
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "usm-bridge.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine(FakeClock())

    def build(config: Any, store: Any, *, stop: threading.Event, **_: Any) -> Any:
        fake.stop = stop
        instances = SimpleNamespace(connector=lambda _name: object())  # nothing watches
        return SimpleNamespace(config=config, store=store, engine=fake, instances=instances)

    monkeypatch.setattr(runtime_module, "build_runtime", build)
    return fake


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# --- sync --once --------------------------------------------------------------------------------


def test_sync_once_runs_every_enabled_instance_and_exits_0(
    config: Path, engine: FakeEngine
) -> None:
    result = invoke("sync", "--once", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert [name for name, _ in engine.calls] == ["hr-mail", "it-snow"]
    lines = result.output.splitlines()
    assert lines[0].startswith("ok") and "hr-mail" in lines[0]
    assert "read 3, stored 2, unchanged 1, echoes 0, routed 1, pushed 1, dead letters 0" in lines[0]
    assert lines[-1] == "2 cycles: 2 ok, 0 failed"
    assert engine.closed


def test_sync_once_exits_1_when_a_cycle_fails_and_says_why(
    config: Path, engine: FakeEngine
) -> None:
    engine.failing.add("it-snow")
    result = invoke("sync", "--once", "-c", str(config))
    assert result.exit_code == 1
    assert "failed it-snow" in result.output
    assert "error: remote said 503" in result.output
    assert "2 cycles: 1 ok, 1 failed" in result.output


def test_sync_once_exits_1_when_the_engine_raises(config: Path, engine: FakeEngine) -> None:
    engine.raising.add("hr-mail")
    result = invoke("sync", "--once", "-c", str(config))
    assert result.exit_code == 1
    assert "RuntimeError: the store went away" in result.output
    assert [name for name, _ in engine.calls] == ["hr-mail", "it-snow"]


def test_sync_once_instance_selection_json_and_census(config: Path, engine: FakeEngine) -> None:
    result = invoke("sync", "--once", "-c", str(config), "-i", "old-tool", "--json", "--census")
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.output)
    assert entry["instance"] == "old-tool" and entry["ok"] is True
    assert entry["counters"]["read"] == 3 and entry["census"] == 42
    assert engine.censuses and engine.censuses[0][0] == "old-tool"


def test_sync_once_unknown_instance_is_a_usage_error(config: Path, engine: FakeEngine) -> None:
    result = invoke("sync", "--once", "-c", str(config), "-i", "nope")
    assert result.exit_code == 2
    assert "no instance named 'nope'" in result.output and "hr-mail" in result.output
    assert engine.calls == []


def test_sync_without_once_explains_itself(config: Path, engine: FakeEngine) -> None:
    result = invoke("sync", "-c", str(config))
    assert result.exit_code == 2 and "pass --once" in result.output


# --- status -------------------------------------------------------------------------------------


def seed_store(config: Path) -> datetime:
    now = datetime.now(UTC)
    with Store.open(f"sqlite:///{config.parent / 'bridge.db'}") as store, store.begin() as tx:
        tx.record_run(
            "hr-mail", started=now - timedelta(seconds=31), finished=now - timedelta(seconds=30),
            counters={"read": 5, "stored": 4},
        )  # fmt: skip
        for minutes in (20, 10):
            tx.record_run(
                "it-snow", started=now - timedelta(minutes=minutes, seconds=1),
                finished=now - timedelta(minutes=minutes), counters={},
                error="ServiceNow answered 401: bad credentials",
            )  # fmt: skip
        call = Call(
            unit="hr", title="Desk for Ann", created=now, updated=now,
            source=SourceRef(instance="hr-mail", remote_id="m1"),
        )  # fmt: skip
        tx.upsert_call(call, instance="hr-mail")
        tx.enqueue("it-snow", call.id, "create", {"title": "Desk"}, "k1")
        tx.enqueue("it-snow", call.id, "comment", {"body": "hi"}, "k2")
        tx.add_dead_letter("hr-mail", "map", {"raw": 1}, "no title")
    return now


def test_status_table(config: Path) -> None:
    seeded = seed_store(config)
    result = invoke("status", "-c", str(config))
    # The run finished 30 s before the seed; a loaded machine may take seconds to answer.
    waited = int((datetime.now(UTC) - seeded).total_seconds()) + 1
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    assert "ok" in rows["hr-mail"]
    assert any(f" {30 + s}s" in rows["hr-mail"] for s in range(waited + 1)), rows["hr-mail"]
    assert "failing" in rows["it-snow"] and "401" in rows["it-snow"]
    assert "disabled" in rows["old-tool"]


def test_status_json(config: Path) -> None:
    seed_store(config)
    result = invoke("status", "-c", str(config), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["history"] is True
    rows = {row["instance"]: row for row in report["instances"]}
    hr, snow, old = rows["hr-mail"], rows["it-snow"], rows["old-tool"]
    assert hr["state"] == "ok" and 29 <= hr["lag_seconds"] <= 60
    assert hr["dead_letters"] == 1 and hr["backlog"] == 0
    assert hr["last_counters"] == {"read": 5, "stored": 4}
    assert snow["state"] == "failing" and snow["consecutive_failures"] == 2
    assert snow["backlog"] == 2 and snow["last_success"] is None
    assert snow["last_error"] == "ServiceNow answered 401: bad credentials"
    assert old["state"] == "disabled" and old["enabled"] is False


def test_status_before_any_cycle_and_of_one_instance(config: Path) -> None:
    result = invoke("status", "-c", str(config), "--json", "-i", "hr-mail")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)["instances"]
    assert row["state"] == "never synced" and row["lag_seconds"] is None


def test_status_of_a_missing_config_is_exit_2(tmp_path: Path) -> None:
    result = invoke("status", "-c", str(tmp_path / "none.toml"))
    assert result.exit_code == 2 and "usm-bridge init" in result.output


def test_status_and_db_upgrade_run_without_the_tools_secrets_which_sync_still_asks_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: FakeEngine
) -> None:
    monkeypatch.delenv("SNOW_PASSWORD", raising=False)
    path = tmp_path / "usm-bridge.toml"
    path.write_text(
        CONFIG + '\n[instances.it-snow.settings]\npassword = "${SNOW_PASSWORD}"\n'
        'token = { file = "/nonexistent/token" }\n',
        encoding="utf-8",
    )
    upgraded = invoke("db", "upgrade", "-c", str(path))
    assert upgraded.exit_code == 0, upgraded.output
    assert "upgraded to schema revision" in upgraded.output
    status = invoke("status", "-c", str(path), "--json")
    assert status.exit_code == 0, status.output
    assert {row["instance"] for row in json.loads(status.output)["instances"]} == {
        "hr-mail", "it-snow", "old-tool",
    }  # fmt: skip
    synced = invoke("sync", "--once", "-c", str(path))  # talks to the tools: refused, named
    assert synced.exit_code == 2
    assert "environment variable SNOW_PASSWORD is not set" in synced.output
    assert engine.calls == []


# --- daemon -------------------------------------------------------------------------------------


def test_daemon_help_teaches(config: Path) -> None:
    result = invoke("daemon", "--help")
    assert result.exit_code == 0
    for words in ("/healthz", "/metrics", "SIGTERM", "backoff", "--log-format", "--listen"):
        assert words in result.output, words


def test_daemon_rejects_a_bad_listen_address(config: Path, engine: FakeEngine) -> None:
    result = invoke("daemon", "-c", str(config), "--listen", "nowhere")
    assert result.exit_code == 2 and "HOST:PORT" in result.output


def test_daemon_config_section_and_the_old_top_level_log_format(tmp_path: Path) -> None:
    from usm_bridge.config import load_config
    from usm_bridge.errors import ConfigurationError

    path = tmp_path / "c.toml"
    path.write_text(
        CONFIG + '\n[daemon]\nlisten = "127.0.0.1:9100"\ncensus_interval = "1d"\nmax_workers = 2\n',
        encoding="utf-8",
    )
    daemon = load_config(path).daemon
    assert (daemon.address, daemon.census_interval, daemon.max_workers, daemon.log_format) == (
        ("127.0.0.1", 9100), 86400.0, 2, "text",
    )  # fmt: skip
    path.write_text('log_format = "json"\n' + CONFIG, encoding="utf-8")
    assert load_config(path).daemon.log_format == "json"
    path.write_text(
        'log_format = "json"\n' + CONFIG + '[daemon]\nlog_format = "text"\n', encoding="utf-8"
    )
    with pytest.raises(ConfigurationError, match="keep the one in"):
        load_config(path)
    path.write_text(CONFIG + '[daemon]\nlisten = "everywhere"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"daemon\.listen"):
        load_config(path)


def test_worker_and_scheduler_choose_their_instances_as_sync_does(
    config: Path, tmp_path: Path
) -> None:
    result = invoke("worker", "-c", str(config), "-i", "nope")
    assert result.exit_code == 2
    assert "no instance named 'nope'" in result.output and "hr-mail" in result.output
    disabled = tmp_path / "disabled.toml"
    disabled.write_text(
        CONFIG.replace('interval = "1m"', "enabled = false").replace(
            'interval = "5m"', "enabled = false"
        ),
        encoding="utf-8",
    )
    for command in ("worker", "scheduler"):
        result = invoke(command, "-c", str(disabled))
        assert result.exit_code == 2, result.output
        assert "no enabled connector instance" in result.output
