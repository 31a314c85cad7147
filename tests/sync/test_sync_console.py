"""``usm-bridge sync --once --census`` keeps the census where the daemon does; ``status`` shows it.

The commands run on a real engine over memory tools: only the engine factory is replaced (the
memory connector is no installed plugin), so the store the command opens is the one used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sync.memory_tool import (
    Clock,
    MemoryConnector,
    MemoryTool,
    write_config_file,
    write_mapping,
)
from usm_bridge import runtime as runtime_module
from usm_bridge.cli import cli
from usm_bridge.config import BridgeConfig
from usm_bridge.runtime import Runtime
from usm_bridge.store import Store


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_mapping(tmp_path / "memory.yaml")
    instances = {"hr-tool": "hr", "fac-tool": "fac"}
    path = write_config_file(tmp_path, instances, kind="memory", store="sqlite:///bridge.db")
    clock = Clock()
    tools = {name: MemoryTool(name, clock) for name in ("hr-tool", "fac-tool")}
    tools["hr-tool"].add(title="Broken lamp", kind="incident")

    build_runtime = runtime_module.build_runtime

    def build(config: BridgeConfig, store: Store, **kwargs: Any) -> Runtime:
        connectors = {name: MemoryConnector(tool) for name, tool in tools.items()}
        return build_runtime(config, store, **{**kwargs, "connectors": connectors})

    monkeypatch.setattr(runtime_module, "build_runtime", build)
    return path


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _last_census(config: Path) -> dict[str, Any]:
    url = f"sqlite:///{config.parent / 'bridge.db'}"
    with Store.open(url) as store, store.begin(readonly=True) as tx:
        return {state.instance: state.last_census for state in tx.list_instance_states()}


def _status_rows(config: Path) -> dict[str, str]:
    result = _invoke("status", "-c", str(config))
    assert result.exit_code == 0, result.output
    return {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}


def test_sync_once_with_census_records_it_and_status_shows_it(config: Path) -> None:
    result = _invoke("sync", "--once", "-c", str(config), "-i", "hr-tool", "--census")
    assert result.exit_code == 0, result.output
    census = _last_census(config)
    assert census["hr-tool"] is not None
    assert "fac-tool" not in census  # never synced
    assert "census: 0 newly vanished" in result.output

    rows = _status_rows(config)
    assert "ago" in rows["hr-tool"]
    assert "ago" not in rows["fac-tool"]

    result = _invoke("status", "-c", str(config), "--json")
    report = {row["instance"]: row for row in json.loads(result.output)["instances"]}
    assert report["hr-tool"]["last_census"] == census["hr-tool"].isoformat()
    assert report["fac-tool"]["last_census"] is None


def test_sync_once_without_census_records_none(config: Path) -> None:
    result = _invoke("sync", "--once", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert _last_census(config) == {"hr-tool": None, "fac-tool": None}
    rows = _status_rows(config)
    assert "ago" not in rows["hr-tool"] and "ago" not in rows["fac-tool"]
