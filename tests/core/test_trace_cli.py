"""``usm-bridge trace``: references that name no call or several, and a store it must not
change.

The whole trace on the real chain is in ``tests/e2e/test_e2e_trace.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from store.store_revisions import head_and_previous, make_store_at, revision_of
from sync.memory_tool import write_config_file

from usm_bridge.cli import EXIT_FAILURE, EXIT_USAGE, cli
from usm_bridge.model import Call, SourceRef
from usm_bridge.store import SchemaPolicy, SchemaState, Store

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, ["trace", *args], catch_exceptions=False)


@pytest.fixture
def config(tmp_path: Path, store_url: str) -> Path:
    """Two Jira sites whose projects share a key: each has an issue IT-1."""
    return write_config_file(
        tmp_path, {"fac-jira": "fac", "ops-jira": "ops"}, kind="memory", store=store_url
    )


def _store_issue(store: Store, instance: str, unit: str, remote_id: str, key: str) -> str:
    source = SourceRef(instance=instance, remote_id=remote_id, remote_key=key)
    call = Call(unit=unit, title=f"{key} at {instance}", source=source, created=NOW, updated=NOW)
    with store.begin() as tx:
        tx.upsert_call(call, actor="test")
        tx.link_identity(call.id, instance, remote_id, remote_key=key)
    return call.id


@pytest.fixture
def two_it_1(config: Path, store_url: str) -> tuple[str, str]:
    with Store.open(store_url) as store:
        return (
            _store_issue(store, "fac-jira", "fac", "10001", "IT-1"),
            _store_issue(store, "ops-jira", "ops", "20001", "IT-1"),
        )


def test_a_reference_two_instances_share_lists_both_and_exits_2(
    config: Path, two_it_1: tuple[str, str]
) -> None:
    fac, ops = two_it_1
    result = _invoke("IT-1", "-c", str(config))
    assert result.exit_code == EXIT_USAGE, result.output
    assert "'IT-1' names 2 calls" in result.output and "--instance" in result.output
    assert f"IT-1 at fac-jira (unit fac, call {fac})" in result.output
    assert f"IT-1 at ops-jira (unit ops, call {ops})" in result.output


def test_instance_narrows_an_ambiguous_reference(config: Path, two_it_1: tuple[str, str]) -> None:
    _, ops = two_it_1
    result = _invoke("IT-1", "--instance", "ops-jira", "--format", "json", "-c", str(config))
    assert result.exit_code == 0, result.output
    traced = json.loads(result.output)
    assert traced["call_id"] == ops
    assert [(c["unit"], c["reference"]) for c in traced["chain"]] == [("ops", "IT-1")]
    # A record id finds the call as its key does.
    by_id = json.loads(_invoke("10001", "--format", "json", "-c", str(config)).output)
    assert by_id["call_id"] == two_it_1[0]


def test_an_unknown_reference_exits_1_naming_it(config: Path, two_it_1: tuple[str, str]) -> None:
    result = _invoke("IT-404", "-c", str(config))
    assert result.exit_code == EXIT_FAILURE, result.output
    assert "no call has the reference 'IT-404'" in result.output
    assert "Traceback" not in result.output
    narrowed = _invoke("IT-1", "--instance", "nowhere", "-c", str(config))
    assert narrowed.exit_code == EXIT_USAGE
    assert "--instance 'nowhere' is not in the config" in narrowed.output


def test_an_older_store_is_refused_and_left_as_it_is(config: Path, store_url: str) -> None:
    head, previous = head_and_previous()
    make_store_at(store_url, previous)
    result = _invoke("IT-1", "-c", str(config))
    assert result.exit_code == EXIT_USAGE, result.output
    assert "usm-bridge db upgrade" in result.output and f"needs {head}" in result.output
    assert revision_of(store_url) == previous


def test_a_store_no_sync_has_made_is_not_created(config: Path, store_url: str) -> None:
    result = _invoke("IT-1", "-c", str(config))
    assert result.exit_code == EXIT_FAILURE, result.output
    assert "holds no calls yet" in result.output
    with Store.open(store_url, schema=SchemaPolicy.INSPECT) as store:
        assert store.schema_status().state is SchemaState.EMPTY
