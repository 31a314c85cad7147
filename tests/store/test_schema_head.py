"""The schema head read from the migration files' text, and opening a current store without
Alembic (``usm_bridge.store.schema_head``): the head agrees with Alembic's, anything the text
does not settle goes to Alembic, and a store behind the code is still refused with the command
to run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from store.store_revisions import head_and_previous, make_store_at, revision_of

from usm_bridge.errors import StoreSchemaError
from usm_bridge.store import SchemaPolicy, SchemaState, Store
from usm_bridge.store.schema import VERSION_TABLE
from usm_bridge.store.schema_head import VERSIONS, at_head_status, head_revision, stored_revisions


def _revision_file(folder: Path, name: str, revision: str, down: str) -> None:
    text = f'"""{name}."""\n\nrevision = {revision}\ndown_revision = {down}\n'
    (folder / name).write_text(text, encoding="utf-8")


def test_the_head_read_from_the_files_is_alembics_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(VERSIONS.parent).replace("%", "%%"))
    alembic_head = ScriptDirectory.from_config(config).get_current_head()
    assert alembic_head is not None
    assert head_revision() == alembic_head
    assert head_revision(VERSIONS) == alembic_head


def test_a_chain_of_revisions_has_its_last_as_head(tmp_path: Path) -> None:
    _revision_file(tmp_path, "0001_first.py", '"0001"', "None")
    _revision_file(tmp_path, "0002_second.py", "'0002'", '"0001"')
    (tmp_path / "0003_typed.py").write_text(
        'revision: str = "0003"\ndown_revision: str | None = "0002"\n', encoding="utf-8"
    )
    # Not revisions for Alembic either: a private module, an editor's lock file, a text file.
    _revision_file(tmp_path, "__init__.py", '"9000"', '"0003"')
    _revision_file(tmp_path, ".#0004_draft.py", '"9001"', '"0003"')
    (tmp_path / "notes.txt").write_text('revision = "9002"\n', encoding="utf-8")
    assert head_revision(tmp_path) == "0003"


@pytest.mark.parametrize(
    "files",
    [
        pytest.param([], id="no-files"),
        pytest.param(
            [("0001_a.py", '"0001"', "None"), ("0002_b.py", '"0002"', "None")], id="two-roots"
        ),
        pytest.param(
            [
                ("0001_a.py", '"0001"', "None"),
                ("0002_b.py", '"0002"', '"0001"'),
                ("0003_c.py", '"0003"', '"0001"'),
            ],
            id="two-heads",
        ),
        pytest.param(
            [
                ("0001_a.py", '"0001"', "None"),
                ("0002_b.py", '"0002"', '"0001"'),
                ("0003_c.py", '"0003"', '"0001"'),
                ("0004_merge.py", '"0004"', '("0002", "0003")'),
            ],
            id="a-merge",
        ),
        pytest.param([("0001_a.py", "REVISION", "None")], id="not-a-literal"),
        pytest.param([("0002_b.py", '"0002"', '"0001"')], id="an-unknown-parent"),
        pytest.param(
            [("0001_a.py", '"0001"', "None"), ("0001_b.py", '"0001"', "None")], id="twice"
        ),
    ],
)
def test_what_the_text_does_not_settle_is_left_to_alembic(
    tmp_path: Path, files: list[tuple[str, str, str]]
) -> None:
    for name, revision, down in files:
        _revision_file(tmp_path, name, revision, down)
    assert head_revision(tmp_path) is None


def test_a_file_without_its_revision_lines_or_a_missing_folder_is_left_to_alembic(
    tmp_path: Path,
) -> None:
    (tmp_path / "0001_a.py").write_text('"""No revision here."""\n', encoding="utf-8")
    assert head_revision(tmp_path) is None
    assert head_revision(tmp_path / "missing") is None


def test_a_current_store_opens_and_reports_its_status_without_importing_alembic(
    store_url: str,
) -> None:
    with Store.open(store_url):
        pass  # created at the head
    probe = (
        "import sys\n"
        "from usm_bridge.store import SchemaPolicy, SchemaState, Store\n"
        f"with Store.open({store_url!r}, schema=SchemaPolicy.READ) as store:\n"
        "    status = store.schema_status()\n"
        "    assert status.state is SchemaState.CURRENT and not status.pending, status\n"
        "    assert store.head_revision() == status.current, status\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'alembic')\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_store_behind_the_code_is_still_refused_naming_the_command(store_url: str) -> None:
    head, previous = head_and_previous()
    make_store_at(store_url, previous)
    with (
        Store.open(store_url, schema=SchemaPolicy.INSPECT) as store,
        store.engine.connect() as conn,
    ):
        assert stored_revisions(conn) == (previous,)
        assert at_head_status(conn) is None
    for policy in (SchemaPolicy.CREATE, SchemaPolicy.READ):
        with pytest.raises(StoreSchemaError, match=r"run 'usm-bridge db upgrade'") as refused:
            Store.open(store_url, schema=policy)
        assert f"revision {previous}" in str(refused.value) and f"needs {head}" in str(
            refused.value
        )
    assert revision_of(store_url) == previous


def test_an_empty_store_and_a_store_with_two_revisions_go_to_alembic(store_url: str) -> None:
    head, _ = head_and_previous()
    with Store.open(store_url, schema=SchemaPolicy.INSPECT) as store:
        with store.engine.connect() as conn:
            assert stored_revisions(conn) == ()  # no version table yet
            assert at_head_status(conn) is None
        assert store.schema_status().state is SchemaState.EMPTY
    with Store.open(store_url) as store:
        with store.engine.begin() as conn:
            assert at_head_status(conn) is not None
            conn.execute(sa.text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('9999')"))
        with store.engine.connect() as conn:
            assert sorted(stored_revisions(conn)) == sorted([head, "9999"])
            assert at_head_status(conn) is None  # not the one head this code knows
