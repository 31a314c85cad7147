"""Dead letters: listed, retried after a mapping fix, and never lost when a retry fails again."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from usm_bridge.connector import RawRecord
from usm_bridge.model import Call
from usm_bridge.store import Store

MAPPING = """\
version: 1
tool: acme
name: acme-tickets
fields:
  title: {path: summary, required: true}
  status:
    path: state
    values: {open: registered, busy: in_progress}
"""

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RECORD = RawRecord(
    remote_id="A-7",
    updated=T0,
    data={"summary": "Desk for the new hire", "state": "parked"},
)


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "usm_bridge", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )


def setup(tmp_path: Path, store_url: str) -> tuple[Path, Path]:
    mapping = tmp_path / "acme.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[store]\nurl = "{store_url}"\n\n[units.facilities]\n\n'
        '[instances.fac-acme]\nunit = "facilities"\nkind = "acme"\nmapping = "acme.yaml"\n',
        encoding="utf-8",
    )
    with Store.open(store_url) as store, store.begin() as tx:
        tx.add_dead_letter(
            "fac-acme", "map", RECORD.model_dump(mode="json"), "status 'parked' is not mapped"
        )
        upstream = Call(unit="facilities", title="Onboarding", created=T0, updated=T0)
        tx.upsert_call(upstream)
        item = tx.enqueue("fac-acme", upstream.id, "comment", {"body": "hi"}, "k-1")
        tx.mark_outbox_dead(item.item.id, "HTTP 400: field 'body' is required")
    return config, mapping


def test_retry_after_a_mapping_fix_stores_the_call(tmp_path: Path, store_url: str) -> None:
    config, mapping = setup(tmp_path, store_url)

    listed = cli(config, "dead-letters", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)
    assert [(d["stage"], d["status"]) for d in letters] == [("map", "open"), ("push", "open")]
    assert letters[0]["payload"]["data"]["summary"] == "Desk for the new hire"

    # The mapping still does not know 'parked': the letter fails again and stays, counted.
    again = cli(config, "dead-letters", "retry", "--instance", "fac-acme")
    assert again.returncode == 1, again.stderr
    assert "failed again" in again.stdout and "parked" in again.stdout
    assert "outbox item" in again.stdout  # the push letter was requeued meanwhile
    with Store.open(store_url) as store, store.begin(readonly=True) as tx:
        (still,) = tx.list_dead_letters()
        assert still.attempts == 2 and still.payload == RECORD.model_dump(mode="json")
        assert [c.call.title for c in tx.list_calls()] == ["Onboarding"]

    # The admin fixes the mapping; the retry maps and stores the call and closes the letter.
    fixed_mapping = MAPPING.replace("busy: in_progress", "busy: in_progress, parked: waiting")
    fixed_mapping += "  waiting_on: {path: hold, values: {x: customer}, default: supplier}\n"
    # A waiting call must be classified (USM): the fix says what acme's tickets are.
    fixed_mapping += "classify:\n  default: service_request\n"
    mapping.write_text(fixed_mapping, encoding="utf-8")
    fixed = cli(config, "dead-letters", "retry")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "1 resolved, 0 failed again" in fixed.stdout
    with Store.open(store_url) as store, store.begin(readonly=True) as tx:
        assert tx.list_dead_letters() == []
        stored = tx.find_call("fac-acme", "A-7")
        assert stored is not None
        assert stored.call.title == "Desk for the new hire"
        assert stored.call.status.value == "waiting"
        assert stored.call.waiting_on is not None and stored.call.waiting_on.value == "supplier"
    assert "no dead letters" in cli(config, "dead-letters", "list").stdout
    resolved = json.loads(cli(config, "dead-letters", "list", "--status", "all", "--json").stdout)
    assert {d["status"] for d in resolved} == {"resolved"}


def test_retry_of_an_unknown_id_is_a_clear_error(tmp_path: Path, store_url: str) -> None:
    config, _ = setup(tmp_path, store_url)
    result = cli(config, "dead-letters", "retry", "--id", "999")
    assert result.returncode == 1
    assert "no open dead letter with id 999" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_accepts_a_valid_config(tmp_path: Path, store_url: str) -> None:
    config, _ = setup(tmp_path, store_url)
    result = cli(config, "check")
    assert result.returncode == 0, result.stderr
    assert "instance fac-acme (acme, unit facilities): mapping" in result.stdout
    assert "1 units, 1 instances, 0 routes: valid" in result.stdout


def test_check_reports_a_mapping_for_another_tool(tmp_path: Path, store_url: str) -> None:
    config, mapping = setup(tmp_path, store_url)
    mapping.write_text(MAPPING.replace("tool: acme", "tool: jira"), encoding="utf-8")
    result = cli(config, "check")
    assert result.returncode == 2
    assert "acme.yaml" in result.stderr and "jira" in result.stderr
