"""``usm-bridge trace`` shows each call's process, what it waits on, and its forks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from sync.memory_tool import write_config_file

from usm_bridge.cli import cli
from usm_bridge.model import Call, ChainLinks, ForkRole, ProcessLink, SourceRef, UsmProcess
from usm_bridge.store import Store

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _store(store: Store, key: str, **fields: object) -> Call:
    source = SourceRef(instance="it-tool", remote_id=f"id-{key}", remote_key=key)
    call = Call.model_validate({"unit": "it", "title": key, "source": source, "created": NOW,
                                "updated": NOW, **fields})  # fmt: skip
    with store.begin() as tx:
        tx.upsert_call(call, actor="test")
        tx.link_identity(call.id, "it-tool", f"id-{key}", remote_key=key)
    return call


def test_trace_shows_the_process_the_wait_and_each_fork(tmp_path: Path, store_url: str) -> None:
    config = write_config_file(tmp_path, {"it-tool": "it"}, kind="memory", store=store_url)
    with Store.open(store_url) as store:
        change = _store(store, "IT-2", call_type="rfc")
        forks = [
            ProcessLink(role=ForkRole.SECONDARY, process=UsmProcess.CHANGE, ref="IT-2",
                        instance="it-tool", call=change.id, via="memory:fixes"),
            ProcessLink(role=ForkRole.SECONDARY, process=UsmProcess.IMPROVE, ref="IT-9",
                        via="memory:caused by"),
        ]  # fmt: skip
        _store(store, "IT-1", call_type="incident", status="waiting",
               waiting_on="secondary_process", waiting_process="change",
               chain=ChainLinks(forks=forks))  # fmt: skip
    runner = CliRunner()
    args = ["trace", "IT-1", "-c", str(config)]
    traced = json.loads(runner.invoke(cli, [*args, "--format", "json"]).output)
    (call,) = traced["chain"]
    assert (call["process"], call["status"], call["waiting_on"], call["waiting_process"]) == (
        "recover", "waiting", "secondary_process", "change",
    )  # fmt: skip
    assert call["forks"] == [fork.model_dump(mode="json") for fork in forks]
    text = runner.invoke(cli, args, env={"COLUMNS": "200"}).output
    assert "forks between processes (2)" in text
    rows = [line for line in text.splitlines() if "IT-2" in line or "IT-9" in line]
    assert any("change" in row and change.id in row and "memory:fixes" in row for row in rows)
    assert any("improve" in row and "unresolved" in row for row in rows)
    chain_row = next(line for line in text.splitlines() if "│ IT-1" in line and "recover" in line)
    assert "waiting (on change)" in chain_row
