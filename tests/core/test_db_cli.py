"""``usm-bridge db status`` / ``db upgrade``, and which commands may change a store's schema.

Through the real CLI entry on SQLite and PostgreSQL. The store starts one revision short of the
code's head (made with Alembic's API); sync runs a real engine over memory tools (only the
connectors are swapped in: the memory connector is no installed plugin).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from store.store_revisions import head_and_previous, make_store_at, revision_of, set_revision
from sync.memory_tool import Clock, MemoryConnector, MemoryTool, write_config_file, write_mapping

from usm_bridge import runtime as runtime_module
from usm_bridge.cli import EXIT_USAGE, cli
from usm_bridge.config import BridgeConfig
from usm_bridge.runtime import Runtime
from usm_bridge.store import Store


@pytest.fixture
def config(tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_mapping(tmp_path / "memory.yaml")
    path = write_config_file(tmp_path, {"hr-tool": "hr"}, kind="memory", store=store_url)
    tool = MemoryTool("hr-tool", Clock())
    tool.add(title="Broken lamp", kind="incident")
    tool.add(title="Door sticks", kind="incident")
    monkeypatch.setattr(runtime_module, "build_runtime", _memory_runtime(tool))
    return path


def _memory_runtime(tool: MemoryTool) -> Callable[..., Runtime]:
    """``build_runtime`` with the memory connector of ``tool`` swapped in."""
    build_runtime = runtime_module.build_runtime

    def build(config: BridgeConfig, store: Store, **kwargs: Any) -> Runtime:
        connectors = {"hr-tool": MemoryConnector(tool)}
        return build_runtime(config, store, **{**kwargs, "connectors": connectors})

    return build


@pytest.fixture
def outdated(store_url: str) -> tuple[str, str]:
    """The store one revision short of the code's head: (head, the store's revision)."""
    head, previous = head_and_previous()
    make_store_at(store_url, previous)
    return head, previous


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _calls(url: str) -> int:
    with Store.open(url) as store, store.begin(readonly=True) as tx:
        return len(tx.list_calls())


def test_sync_refuses_an_older_store_naming_the_command(
    config: Path, store_url: str, outdated: tuple[str, str]
) -> None:
    head, previous = outdated
    result = _invoke("sync", "--once", "-c", str(config))
    assert result.exit_code == EXIT_USAGE, result.output
    assert "usm-bridge db upgrade" in result.output and f"revision {previous}" in result.output
    assert f"needs {head}" in result.output
    assert revision_of(store_url) == previous


def test_sync_with_migrate_upgrades_and_syncs(
    config: Path, store_url: str, outdated: tuple[str, str]
) -> None:
    head, _ = outdated
    result = _invoke("sync", "--once", "--migrate", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert revision_of(store_url) == head
    assert _calls(store_url) == 2  # both records of the tool were stored


def test_daemon_refuses_an_older_store(
    config: Path, store_url: str, outdated: tuple[str, str]
) -> None:
    _, previous = outdated
    result = _invoke("daemon", "-c", str(config), "--listen", "off")
    assert result.exit_code == EXIT_USAGE, result.output
    assert "usm-bridge db upgrade" in result.output
    assert revision_of(store_url) == previous


@pytest.mark.parametrize(
    "command",
    [("status",), ("dead-letters", "list"), ("dead-letters", "list", "--status", "waiting")],
)
def test_read_only_commands_never_migrate(
    config: Path, store_url: str, outdated: tuple[str, str], command: tuple[str, ...]
) -> None:
    _, previous = outdated
    result = _invoke(*command, "-c", str(config))
    assert result.exit_code == EXIT_USAGE, result.output
    assert "usm-bridge db upgrade" in result.output
    assert revision_of(store_url) == previous


def test_db_status_lists_the_pending_migration_and_changes_nothing(
    config: Path, store_url: str, outdated: tuple[str, str]
) -> None:
    head, previous = outdated
    result = _invoke("db", "status", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert f"schema revision: {previous}" in result.output
    assert f"this usm-bridge: {head}" in result.output
    assert "pending migrations (1):" in result.output and f"  {head}  " in result.output
    as_json = json.loads(_invoke("db", "status", "--json", "-c", str(config)).output)
    assert (as_json["revision"], as_json["head"], as_json["state"]) == (previous, head, "older")
    assert [m["revision"] for m in as_json["pending"]] == [head]
    assert revision_of(store_url) == previous


def test_db_upgrade_applies_prints_and_then_sync_runs(
    config: Path, store_url: str, outdated: tuple[str, str]
) -> None:
    head, _ = outdated
    result = _invoke("db", "upgrade", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert f"applied {head}" in result.output
    assert f"upgraded to schema revision {head}" in result.output
    assert revision_of(store_url) == head
    again = _invoke("db", "upgrade", "-c", str(config))
    assert again.exit_code == 0 and f"already at schema revision {head}" in again.output
    assert "applied" not in again.output
    synced = _invoke("sync", "--once", "-c", str(config))
    assert synced.exit_code == 0, synced.output
    assert _calls(store_url) == 2


def test_db_status_on_a_current_store(config: Path, store_url: str) -> None:
    head, _ = head_and_previous()
    assert _invoke("db", "upgrade", "-c", str(config)).exit_code == 0  # creates the new store
    result = _invoke("db", "status", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert f"schema revision: {head}" in result.output and "up to date" in result.output
    assert "pending" not in result.output


@pytest.mark.parametrize(
    "command",
    [
        ("sync", "--once"),
        ("sync", "--once", "--migrate"),
        ("status",),
        ("dead-letters", "list"),
        ("db", "status"),
        ("db", "upgrade"),
    ],
)
def test_a_store_newer_than_the_code_is_refused_by_every_command(
    config: Path, store_url: str, command: tuple[str, ...]
) -> None:
    make_store_at(store_url, head_and_previous()[0])
    set_revision(store_url, "9999")
    result = _invoke(*command, "-c", str(config))
    assert result.exit_code == EXIT_USAGE, result.output
    assert "9999" in result.output and "newer usm-bridge" in result.output
    assert revision_of(store_url) == "9999"


@pytest.mark.parametrize(
    ("command", "exit_code", "says"),
    [
        (("status",), 0, "never synced"),
        (("dead-letters", "list"), 0, "no dead letters"),
        (("dead-letters", "list", "--status", "waiting"), 0, ""),
        (("trace", "HR-1"), 1, "holds no calls yet"),
        (("report", "conformance", "--format", "json"), 0, '"units"'),
        (("db", "status"), 0, "empty store"),
    ],
)
def test_read_only_commands_make_no_store_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: tuple[str, ...],
    exit_code: int,
    says: str,
) -> None:
    """A SQLite store not made yet reads as an empty one: no file and no folder appear, and
    the first sync still makes it."""
    url = f"sqlite:///{tmp_path / 'state' / 'usm-bridge.db'}"
    monkeypatch.setattr(
        runtime_module, "build_runtime", _memory_runtime(MemoryTool("hr-tool", Clock()))
    )
    write_mapping(tmp_path / "memory.yaml")
    path = write_config_file(tmp_path, {"hr-tool": "hr"}, kind="memory", store=url)
    result = _invoke(*command, "-c", str(path))
    assert result.exit_code == exit_code, result.output
    assert says in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "state").exists()
    assert _invoke("sync", "--once", "-c", str(path)).exit_code == 0
    assert (tmp_path / "state" / "usm-bridge.db").exists()
