"""Safe defaults on disk: a new SQLite store and its WAL files are the owner's alone (0600),
whatever the umask; a missing PostgreSQL driver names the extra that installs it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from usm_bridge.errors import StoreError
from usm_bridge.file_modes import LOG_MODE, open_log
from usm_bridge.model import Call
from usm_bridge.store import Store


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 0: a file then gets exactly the mode it is created with, nothing is masked away."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def store_one_call(store: Store, call: Call) -> None:
    with store.begin() as tx:
        tx.upsert_call(call, instance="hr-jira", actor="sync")


@pytest.mark.usefixtures("open_umask")
def test_a_new_store_and_its_wal_files_are_owner_only(tmp_path: Path, make_call) -> None:
    path = tmp_path / "state" / "usm-bridge.db"
    with Store.open(f"sqlite:///{path}") as store:
        store_one_call(store, make_call())
        wal = path.with_name(path.name + "-wal")
        shm = path.with_name(path.name + "-shm")
        assert wal.exists() and shm.exists()  # WAL mode, and the write went through it
        assert {p.name: mode_of(p) for p in (path, wal, shm)} == {
            "usm-bridge.db": 0o600,
            "usm-bridge.db-wal": 0o600,
            "usm-bridge.db-shm": 0o600,
        }
        with store.begin(readonly=True) as tx:
            assert len(tx.list_calls(unit="hr")) == 1
    assert mode_of(path) == 0o600


@pytest.mark.usefixtures("open_umask")
def test_an_existing_store_keeps_the_mode_its_administrator_gave_it(
    tmp_path: Path, make_call
) -> None:
    path = tmp_path / "usm-bridge.db"
    with Store.open(f"sqlite:///{path}") as store:
        store_one_call(store, make_call())
    path.chmod(0o640)  # e.g. a backup job in the owner's group reads it
    with Store.open(f"sqlite:///{path}") as store:
        with store.begin(readonly=True) as tx:
            assert len(tx.list_calls(unit="hr")) == 1
        assert mode_of(path) == 0o640
        assert mode_of(path.with_name(path.name + "-wal")) == 0o640  # SQLite copies it


def test_a_stricter_umask_narrows_the_store_mode_further(tmp_path: Path, make_call) -> None:
    path = tmp_path / "usm-bridge.db"
    previous = os.umask(0o277)
    try:
        with Store.open(f"sqlite:///{path}") as store:
            store_one_call(store, make_call())
    finally:
        os.umask(previous)
    assert mode_of(path) == 0o400  # 0600 with the owner's write bit masked too


def test_a_store_path_that_is_a_folder_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "usm-bridge.db"
    path.mkdir()
    with pytest.raises(StoreError, match=r"cannot create the store file .*usm-bridge\.db"):
        Store.open(f"sqlite:///{path}")


@pytest.mark.usefixtures("open_umask")
def test_log_files_are_created_0640_and_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "usm-bridge.log"
    with open_log(path) as stream:
        stream.write("first\n")
    assert mode_of(path) == LOG_MODE == 0o640
    with open_log(path) as stream:
        stream.write("second\n")
    assert path.read_text(encoding="utf-8") == "first\nsecond\n"


def test_a_postgresql_store_without_the_driver_names_the_extra(tmp_path: Path) -> None:
    # The driver is missing as it is from a plain `pip install usm-bridge`: importing it fails.
    shadow = tmp_path / "shadow" / "psycopg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n"
    )
    config = tmp_path / "usm-bridge.toml"
    config.write_text(
        '[store]\nurl = "postgresql://bridge:pw-SECRET@127.0.0.1:1/usm"\n[units.hr]\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "usm_bridge", "status", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(shadow.parent)},
        check=False,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "no database driver for 'postgresql+psycopg' is installed" in result.stderr
    assert "pip install 'usm-bridge[postgresql]'" in result.stderr
    assert "pw-SECRET" not in result.stderr + result.stdout
