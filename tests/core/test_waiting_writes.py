"""Nothing waits silently: pending writes show their last error in status and dead-letters.

``usm-bridge status`` lists each instance's waiting writes (target, record, attempts, next try,
last error), in the table and in ``--json`` (``instances[].waiting``);
``dead-letters list --status waiting`` lists them all; ``dead-letters list`` shows when each
letter was first and last seen.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from usm_bridge.cli import cli
from usm_bridge.model import Call
from usm_bridge.store import Store
from usm_bridge.sync.waiting import list_waiting

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RETRY_AT = datetime(2099, 1, 1, 12, 0, tzinfo=UTC)  # far ahead: "in ..." whatever today is
ERROR = "HTTP 503: under maintenance"


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def config(tmp_path: Path, store_url: str) -> Path:
    """Two instances; fac-acme has a failed update and an untried create waiting."""
    (tmp_path / "acme.yaml").write_text(
        "version: 1\ntool: acme\nname: acme\nfields:\n  title: {path: summary}\n",
        encoding="utf-8",
    )
    path = tmp_path / "bridge.toml"
    path.write_text(
        f'[store]\nurl = "{store_url}"\n\n[units.facilities]\n\n'
        '[instances.fac-acme]\nunit = "facilities"\nkind = "acme"\nmapping = "acme.yaml"\n\n'
        '[instances.fac-other]\nunit = "facilities"\nkind = "acme"\nmapping = "acme.yaml"\n',
        encoding="utf-8",
    )
    with Store.open(store_url) as store, store.begin() as tx:
        linked = Call(unit="facilities", title="Desk", created=T0, updated=T0)
        new = Call(unit="facilities", title="Badge", created=T0, updated=T0)
        done = Call(unit="facilities", title="Laptop", created=T0, updated=T0)
        for call in (linked, new, done):
            tx.upsert_call(call)
        tx.link_identity(linked.id, "fac-acme", "10007", remote_key="ACME-7")
        update = tx.enqueue("fac-acme", linked.id, "update", {"title": "Desk"}, "k-update").item
        tx.enqueue("fac-acme", new.id, "create", {"title": "Badge"}, "k-create")
        finished = tx.enqueue("fac-acme", done.id, "create", {"title": "Laptop"}, "k-done").item
        (claimed, _) = tx.claim_outbox(instance="fac-acme", limit=2, now=datetime.now(UTC))
        assert claimed.id == update.id
        tx.mark_outbox_failed(update.id, ERROR, retry_at=RETRY_AT)
        tx.mark_outbox_done(finished.id)
        tx.add_dead_letter("fac-acme", "map", {"remote_id": "9"}, "status 'x' is not mapped")
    return path


def test_status_json_lists_each_waiting_write_with_its_last_error(config: Path) -> None:
    result = invoke("status", "-c", str(config), "--json")
    assert result.exit_code == 0, result.output
    rows = {row["instance"]: row for row in json.loads(result.output)["instances"]}
    acme, other = rows["fac-acme"], rows["fac-other"]
    assert acme["backlog"] == 2 and other["backlog"] == 0 and other["waiting"] == []
    update, create = acme["waiting"]
    assert (update["target"], update["operation"], update["record"]) == (
        "fac-acme",
        "update",
        "ACME-7",
    )
    assert update["attempts"] == 1 and update["last_error"] == ERROR
    assert update["next_attempt_at"] == RETRY_AT.isoformat()
    # Claimed together, but the create was not pushed yet: no error, no record before it.
    assert (create["operation"], create["record"], create["last_error"]) == ("create", None, None)


def test_status_table_shows_the_waiting_writes(config: Path) -> None:
    result = invoke("status", "-c", str(config))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "waiting writes" in text and "ACME-7" in text
    assert "HTTP 503" in text and "maintenance" in text
    assert "interrupted" in text  # the claimed create: no answer recorded, never silent


def test_dead_letters_list_waiting_lists_the_pending_writes(config: Path) -> None:
    result = invoke("dead-letters", "list", "-c", str(config), "--status", "waiting", "--json")
    assert result.exit_code == 0, result.output
    items = json.loads(result.output)
    assert [(i["operation"], i["last_error"]) for i in items] == [
        ("update", ERROR),
        ("create", None),
    ]
    table = invoke("dead-letters", "list", "-c", str(config), "--status", "waiting")
    assert table.exit_code == 0, table.output
    assert "2 writes waiting" in table.output and "HTTP 503" in table.output
    other = invoke(
        "dead-letters", "list", "-c", str(config), "--status", "waiting", "--instance", "fac-other"
    )
    assert other.exit_code == 0 and "no writes waiting" in other.output


def test_waiting_writes_are_pushes_only(config: Path) -> None:
    args = ("dead-letters", "list", "-c", str(config), "--status", "waiting", "--stage", "map")
    result = invoke(*args)
    assert result.exit_code == 2
    assert "waiting writes are pushes" in result.output and "--stage" in result.output


def test_dead_letters_list_shows_first_and_last_seen(config: Path, store_url: str) -> None:
    with Store.open(store_url) as store, store.begin() as tx:
        tx.record_dead_letter("fac-acme", "store", {"remote_id": "5"}, "boom", subject="5")
    with Store.open(store_url) as store, store.begin() as tx:
        tx.record_dead_letter("fac-acme", "store", {"remote_id": "5"}, "boom again", subject="5")
    table = invoke("dead-letters", "list", "-c", str(config))
    assert table.exit_code == 0, table.output
    text = " ".join(table.output.split())
    assert "first" in text and "last" in text and "seen" in text
    listed = json.loads(invoke("dead-letters", "list", "-c", str(config), "--json").output)
    (repeated,) = [d for d in listed if d["subject"] == "5"]
    assert repeated["attempts"] == 2 and repeated["reason"] == "boom again"
    assert repeated["last_seen"] > repeated["created_at"]


def test_list_waiting_filters_by_instance_and_limits(config: Path, store_url: str) -> None:
    with Store.open(store_url) as store, store.begin(readonly=True) as tx:
        everything = list_waiting(tx)
        first = list_waiting(tx, instance="fac-acme", limit=1)
        none = list_waiting(tx, instance="fac-other")
    assert [i.operation for i in everything] == ["update", "create"]
    assert [i.id for i in first] == [everything[0].id] and none == []
    assert everything[0].why == ERROR
    assert everything[1].why == "no answer recorded (the push was interrupted)"
    assert everything[0].next_attempt_at == RETRY_AT and everything[0].since.tzinfo is not None


def test_a_write_never_tried_says_so(config: Path, store_url: str) -> None:
    with Store.open(store_url) as store:
        with store.begin() as tx:
            call = Call(unit="facilities", title="Chair", created=T0, updated=T0)
            tx.upsert_call(call)
            tx.enqueue("fac-other", call.id, "create", {"title": "Chair"}, "k-chair")
        with store.begin(readonly=True) as tx:
            (item,) = list_waiting(tx, instance="fac-other")
    assert item.attempts == 0 and item.last_error is None and item.why == "not tried yet"
