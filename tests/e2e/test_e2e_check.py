"""``usm-bridge check`` online, through the real command, against the three running tools.

By default it signs in to each tool (Jira and ServiceNow simulators, HR's Maildir and SMTP
relay) and opens the store read-only: exit 0 only when all answer, exit 1 with each one's own
message (never a secret) otherwise. ``--offline`` validates the files and asks nobody.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from e2e.e2e_env import Tools, free_port, write_config
from usm_bridge.store import Store
from usm_bridge.store.revision import read_store_revision

MIGRATIONS = Path(__file__).resolve().parents[2] / "usm_bridge" / "store" / "migrations"
INSTANCES = ("hr-mail", "facilities-jira", "it-snow")


def check(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "usm_bridge", "check", "-c", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def config_for(
    tools: Tools, tmp_path: Path, store_url: str, extra: dict[str, dict[str, Any]] | None = None
) -> Path:
    path = tmp_path / "usm-bridge.toml"
    write_config(tools, path, store_url, extra=extra)
    return path


def lines_of(result: subprocess.CompletedProcess[str], mark: str) -> dict[str, str]:
    """``{subject: message}`` of each ``ok``/``failed`` line of an instance's tool or the store
    (the file checks' lines come first: "ok store: URL" of the file check is overwritten)."""
    found = {}
    for line in result.stdout.splitlines():
        head, _, message = line.partition(": ")
        if re.fullmatch(rf"{mark} (instance [\w-]+|store)", head):
            found[head.removeprefix(f"{mark} ")] = message
    return found


def test_every_tool_and_the_store_answer(tools: Tools, tmp_path: Path, store_url: str) -> None:
    config = config_for(tools, tmp_path, store_url)
    result = check(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    ok = lines_of(result, "ok")
    assert set(ok) == {*(f"instance {name}" for name in INSTANCES), "store"}, result.stdout
    assert "signed in to Jira cloud" in ok["instance facilities-jira"]
    assert f"read sc_req_item as {tools.snow.username}" == ok["instance it-snow"]
    assert ok["instance hr-mail"] == "mailbox readable"
    assert "is new: the first sync creates" in ok["store"]
    assert "every tool and the store answered" in result.stdout
    # Read-only: a store that did not exist is still not there, an empty database still empty.
    if store_url.startswith("sqlite"):
        assert not (tmp_path / "usm-bridge.db").exists()
    assert read_store_revision(store_url).current is None
    with Store.open(store_url) as store:
        head = store.schema_revision()
    again = check(config, "--json")
    assert again.returncode == 0, again.stderr
    document = json.loads(again.stdout)
    assert document["ok"] is True and document["offline"] is False
    by_subject = {item["subject"]: item for item in document["reached"]}
    assert by_subject["store"]["facts"]["revision"] == head == by_subject["store"]["facts"]["head"]
    assert by_subject["instance facilities-jira"]["facts"]["deployment"] == "cloud"
    assert all(item["ok"] for item in document["reached"]) and len(document["reached"]) == 4


def test_wrong_credentials_fail_with_the_tools_words_and_no_secret(
    tools: Tools, tmp_path: Path
) -> None:
    wrong_token, wrong_password = "not-the-token-7Qx9", "not-the-password-3Kf2"
    extra = {
        "facilities-jira": {"api_token": wrong_token},
        "it-snow": {"password": wrong_password},
    }
    config = config_for(tools, tmp_path, f"sqlite:///{tmp_path / 'store.db'}", extra)
    result = check(config)
    assert result.returncode == 1, (result.stdout, result.stderr)
    failed = lines_of(result, "failed")
    assert set(failed) == {"instance facilities-jira", "instance it-snow"}, result.stdout
    assert "401" in failed["instance facilities-jira"]
    assert "401" in failed["instance it-snow"]
    assert set(lines_of(result, "ok")) == {"instance hr-mail", "store"}
    assert "2 of 4 failed: instance facilities-jira, instance it-snow" in result.stderr
    everything = result.stdout + result.stderr
    for secret in (wrong_token, wrong_password, tools.snow.password):
        assert secret not in everything
    assert "Traceback" not in everything


def test_an_unreachable_host_fails(tools: Tools, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    extra = {"it-snow": {"instance_url": closed, "max_attempts": 1}}
    config = config_for(tools, tmp_path, f"sqlite:///{tmp_path / 'store.db'}", extra)
    result = check(config)
    assert result.returncode == 1, (result.stdout, result.stderr)
    failed = lines_of(result, "failed")
    assert list(failed) == ["instance it-snow"], result.stdout
    assert "127.0.0.1" in failed["instance it-snow"]
    assert "1 of 4 failed: instance it-snow" in result.stderr


def test_a_tool_that_never_answers_fails_by_the_deadline_and_the_others_are_reported(
    tools: Tools, tmp_path: Path
) -> None:
    # A "tarpit": the kernel accepts connections on the listening socket, nobody ever replies.
    # The connector alone would wait its read timeout (an hour here) times its attempts.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tarpit:
        tarpit.bind(("127.0.0.1", 0))
        tarpit.listen(16)
        url = f"http://127.0.0.1:{tarpit.getsockname()[1]}"
        extra = {"facilities-jira": {"base_url": url, "read_timeout": "1h"}}
        config = config_for(tools, tmp_path, f"sqlite:///{tmp_path / 'store.db'}", extra)
        result = check(config, "--timeout", "2", "--json")
    assert result.returncode == 1, (result.stdout, result.stderr)
    by_subject = {item["subject"]: item for item in json.loads(result.stdout)["reached"]}
    assert list(by_subject) == [*(f"instance {name}" for name in INSTANCES), "store"]
    hung = by_subject.pop("instance facilities-jira")
    assert hung["ok"] is False
    assert hung["detail"].startswith("no answer within 2 s: the tool"), hung
    assert all(item["ok"] for item in by_subject.values()), by_subject
    assert "1 of 4 failed: instance facilities-jira" in result.stderr


def test_a_postgresql_store_that_cannot_be_reached_fails(tools: Tools, tmp_path: Path) -> None:
    url = f"postgresql+psycopg://bridge:pw-hunter2x@127.0.0.1:{free_port()}/usm"
    result = check(config_for(tools, tmp_path, url))
    assert result.returncode == 1, (result.stdout, result.stderr)
    failed = lines_of(result, "failed")
    assert list(failed) == ["store"], result.stdout
    assert "Connection refused" in failed["store"] and "bridge:***@127.0.0.1" in failed["store"]
    assert "pw-hunter2x" not in result.stdout + result.stderr
    assert set(lines_of(result, "ok")) >= {f"instance {name}" for name in INSTANCES}


def test_a_sqlite_store_whose_folder_cannot_be_made_fails(tools: Tools, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be\n", encoding="utf-8")
    result = check(config_for(tools, tmp_path, f"sqlite:///{blocker / 'state' / 'bridge.db'}"))
    assert result.returncode == 1, (result.stdout, result.stderr)
    failed = lines_of(result, "failed")
    assert list(failed) == ["store"], result.stdout
    assert f"{blocker} is not a folder" in failed["store"]


def test_a_store_that_is_not_a_database_fails(tools: Tools, tmp_path: Path) -> None:
    garbage = tmp_path / "store.db"
    garbage.write_bytes(b"this is not SQLite\n" * 100)
    result = check(config_for(tools, tmp_path, f"sqlite:///{garbage}"))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "not a database" in lines_of(result, "failed")["store"]
    assert garbage.read_bytes() == b"this is not SQLite\n" * 100


def test_an_older_schema_fails_and_is_left_as_it_was(
    tools: Tools, tmp_path: Path, store_url: str
) -> None:
    engine = sa.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    alembic = Config()
    alembic.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        alembic.attributes["connection"] = conn
        command.upgrade(alembic, "0001")
    engine.dispose()
    result = check(config_for(tools, tmp_path, store_url))
    assert result.returncode == 1, (result.stdout, result.stderr)
    message = lines_of(result, "failed")["store"]
    assert "is at schema revision 0001 and this usm-bridge needs" in message
    assert "usm-bridge db upgrade" in message
    assert read_store_revision(store_url).current == "0001"


def test_offline_validates_the_files_and_asks_nobody(tools: Tools, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    extra = {
        "facilities-jira": {"base_url": closed, "api_token": "wrong"},
        "it-snow": {"instance_url": closed},
    }
    url = f"postgresql+psycopg://bridge@127.0.0.1:{free_port()}/usm"
    config = config_for(tools, tmp_path, url, extra)
    result = check(config, "--offline")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "(offline: no tool or store was asked)" in result.stdout
    assert not lines_of(result, "failed") and "instance" not in "".join(lines_of(result, "ok"))
    assert "is new" not in result.stdout and "schema revision" not in result.stdout
    assert tools.jira_traffic.seen == [] and tools.snow_traffic.seen == []
    document = json.loads(check(config, "--offline", "--json").stdout)
    assert document["ok"] is True and document["reached"] == []
    assert any(line.startswith("route ") for line in document["checks"])
