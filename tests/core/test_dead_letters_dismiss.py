"""``usm-bridge dead-letters dismiss`` through the real CLI: by id, by filter, audited, refused
for unknown ids and filter-less calls; ``list`` shows each letter's unit and age."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_dead_letters import cli

from usm_bridge.store import DeadLetterStatus, Store
from usm_bridge.store.schema import dead_letters

MAPPING = "version: 1\ntool: acme\nname: acme\nfields:\n  title: {path: summary, required: true}\n"


def setup(tmp_path: Path, store_url: str) -> tuple[Path, dict[str, int]]:
    """Two units, three open letters (facilities: map and push; hr: map) and one of an
    instance that left the config."""
    (tmp_path / "acme.yaml").write_text(MAPPING, encoding="utf-8")
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[store]\nurl = "{store_url}"\n\n[units.facilities]\n\n[units.hr]\n\n'
        '[instances.fac-acme]\nunit = "facilities"\nkind = "acme"\nmapping = "acme.yaml"\n\n'
        '[instances.hr-acme]\nunit = "hr"\nkind = "acme"\nmapping = "acme.yaml"\n',
        encoding="utf-8",
    )
    with Store.open(store_url) as store, store.begin() as tx:
        ids = {
            "fac-map": tx.add_dead_letter("fac-acme", "map", {"n": 1}, "bad", subject="F-1").id,
            "fac-push": tx.add_dead_letter("fac-acme", "push", {"n": 2}, "403", subject="o:1").id,
            "hr-map": tx.add_dead_letter("hr-acme", "map", {"n": 3}, "bad", subject="H-1").id,
            "gone": tx.add_dead_letter("old-acme", "map", {"n": 4}, "bad", subject="O-1").id,
        }
    return config, ids


def open_ids(store_url: str) -> list[int]:
    with Store.open(store_url) as store, store.begin(readonly=True) as tx:
        return [d.id for d in tx.list_dead_letters()]


def test_dismiss_by_id_is_audited_kept_and_leaves_the_counts(
    tmp_path: Path, store_url: str
) -> None:
    config, ids = setup(tmp_path, store_url)
    done = cli(config, "dead-letters", "dismiss", str(ids["fac-map"]), "--reason",
               "record deleted in the tool", "--by", "alice")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"dismissed {ids['fac-map']}: fac-acme map" in done.stdout
    assert "1 dismissed by alice" in done.stdout

    listed = json.loads(cli(config, "dead-letters", "list", "--json").stdout)
    assert [d["id"] for d in listed] == [ids["fac-push"], ids["hr-map"], ids["gone"]]
    shown = cli(config, "dead-letters", "list", "--status", "dismissed", "--json")
    (letter,) = json.loads(shown.stdout)
    assert letter["id"] == ids["fac-map"] and letter["status"] == "dismissed"
    assert letter["resolution"] == "dismissed by alice: record deleted in the tool"
    assert letter["payload"] == {"n": 1}  # nothing stored is lost

    status = json.loads(cli(config, "status", "--json").stdout)
    counts = {row["instance"]: row["dead_letters"] for row in status["instances"]}
    assert counts == {"fac-acme": 1, "hr-acme": 1}
    with Store.open(store_url) as store, store.begin(readonly=True) as tx:
        (event,) = tx.list_audit(kind="dead_letter_dismissed")
    assert event.actor == "alice" and event.detail is not None
    assert event.detail["reason"] == "record deleted in the tool"  # type: ignore[index]

    # A retry does not undo the decision: it is refused, naming who dismissed it and why.
    retry = cli(config, "dead-letters", "retry", "--id", str(ids["fac-map"]))
    assert retry.returncode == 1
    assert f"dead letter {ids['fac-map']} (dismissed by alice:" in retry.stderr
    assert "was dismissed and is not retried" in retry.stderr
    assert "Traceback" not in retry.stderr


def test_who_defaults_to_the_os_user(tmp_path: Path, store_url: str) -> None:
    config, ids = setup(tmp_path, store_url)
    done = cli(config, "dead-letters", "dismiss", str(ids["hr-map"]), "--reason", "dup")
    assert done.returncode == 0, done.stderr
    with Store.open(store_url) as store, store.begin(readonly=True) as tx:
        (event,) = tx.list_audit(kind="dead_letter_dismissed")
    assert event.actor == getpass.getuser()


def test_unknown_ids_are_named_and_nothing_is_dismissed(tmp_path: Path, store_url: str) -> None:
    config, ids = setup(tmp_path, store_url)
    before = open_ids(store_url)
    result = cli(config, "dead-letters", "dismiss", str(ids["hr-map"]), "998", "999",
                 "--reason", "x")  # fmt: skip
    assert result.returncode == 1
    assert "no dead letter with id 998, 999; nothing dismissed" in result.stderr
    assert "Traceback" not in result.stderr
    assert open_ids(store_url) == before
    # An id already dismissed is refused the same way, with its status.
    assert (
        cli(config, "dead-letters", "dismiss", str(ids["hr-map"]), "--reason", "x").returncode == 0
    )
    again = cli(config, "dead-letters", "dismiss", str(ids["hr-map"]), str(ids["fac-map"]),
                "--reason", "x")  # fmt: skip
    assert again.returncode == 1
    assert f"not open: dead letter {ids['hr-map']} (dismissed)" in again.stderr
    assert open_ids(store_url) == [i for i in before if i != ids["hr-map"]]


def test_a_filter_less_dismiss_needs_all(tmp_path: Path, store_url: str) -> None:
    config, ids = setup(tmp_path, store_url)
    before = open_ids(store_url)
    refusals = [
        ("--reason", "x"),  # no ids, no filter
        (str(ids["hr-map"]), "--instance", "hr-acme", "--reason", "x"),  # ids and a filter
        (str(ids["hr-map"]), "--reason", "  "),  # an empty reason
        (str(ids["hr-map"]),),  # no reason at all
    ]
    for args in refusals:
        result = cli(config, "dead-letters", "dismiss", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
    assert open_ids(store_url) == before
    everything = cli(config, "dead-letters", "dismiss", "--all", "--reason", "fresh start")
    assert everything.returncode == 0, everything.stderr
    assert "4 dismissed by" in everything.stdout
    assert open_ids(store_url) == []


def test_dismiss_by_instance_and_stage(tmp_path: Path, store_url: str) -> None:
    config, ids = setup(tmp_path, store_url)
    pushes = cli(config, "dead-letters", "dismiss", "--instance", "fac-acme", "--stage", "push",
                 "--reason", "write no longer wanted")  # fmt: skip
    assert pushes.returncode == 0, pushes.stderr
    assert "1 dismissed" in pushes.stdout
    hr = cli(config, "dead-letters", "dismiss", "--instance", "hr-acme", "--reason", "test data")
    assert "1 dismissed" in hr.stdout
    assert open_ids(store_url) == [ids["fac-map"], ids["gone"]]
    with Store.open(store_url) as store, store.begin(readonly=True) as tx:
        statuses = {d.id: d.status for d in tx.list_dead_letters(status=None)}
    assert statuses[ids["fac-push"]] is DeadLetterStatus.DISMISSED
    assert statuses[ids["hr-map"]] is DeadLetterStatus.DISMISSED


def test_list_shows_each_letters_unit_and_age(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # the table on one line per letter
    config, ids = setup(tmp_path, store_url)
    with Store.open(store_url) as store, store.engine.begin() as conn:
        # The facilities map letter first failed three days and an hour ago.
        conn.execute(
            sa.update(dead_letters)
            .where(dead_letters.c.id == ids["fac-map"])
            .values(created_at=datetime.now(UTC) - timedelta(days=3, hours=1))
        )
    result = cli(config, "dead-letters", "list")
    assert result.returncode == 0, result.stderr
    rows = {
        line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "acme" in line
    }
    header = next(line for line in result.stdout.splitlines() if " id " in line)
    assert "unit" in header and "age" in header
    cells = {key: [c.strip() for c in line.split("│")[1:-1]] for key, line in rows.items()}
    assert cells[str(ids["fac-map"])][1:3] == ["fac-acme", "facilities"]
    assert cells[str(ids["fac-map"])][6] == "3d 1h"
    assert cells[str(ids["hr-map"])][2] == "hr"
    assert cells[str(ids["gone"])][2] == "-"  # an instance no longer in the config
