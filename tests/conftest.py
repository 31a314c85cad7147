"""Fixtures shared by the whole suite: a PostgreSQL server, and store URLs for both back ends.

``postgres_url`` (session)
    The URL of a database on a PostgreSQL server the tests may use, found in this order:

    1. ``USM_BRIDGE_TEST_POSTGRES_URL`` if set (it must answer);
    2. the server on 127.0.0.1:5432 with trust authentication, as user ``postgres`` or the
       current user, database ``test`` (or ``postgres``), unless
       ``USM_BRIDGE_TEST_POSTGRES_PRIVATE=1`` asks for step 3 straight away;
    3. a private server started from the installed ``initdb`` / ``pg_ctl`` in a temporary
       directory on a free loopback port (as root, run as the ``postgres`` user through
       ``runuser``), stopped and removed at the end of the session.

    When none of these works the tests that need PostgreSQL are skipped with the reason, except
    when ``CI=true``: there they fail, because CI must never pass without the PostgreSQL run.

``fresh_postgres_url`` (function)
    A new, empty database on that server, dropped after the test, so tests never see each
    other's data.

``store_url`` (function, parametrised ``sqlite`` / ``postgresql``)
    A store URL on each back end, so one test suite runs against both. The PostgreSQL variant
    carries the ``postgres`` marker; the SQLite one never needs a server.

``store`` (function)
    An opened (migrated) :class:`usm_bridge.store.Store` on ``store_url``, closed afterwards.

``second_store_url`` (function)
    Another empty store URL on the back end of ``store_url``, for side-by-side tests.

``pg_store`` (function)
    The same on ``fresh_postgres_url`` only, for what SQLite never meets (chain locks, conflicts).

Every test that uses a PostgreSQL fixture is marked ``postgres`` automatically, so
``-m "not postgres"`` deselects them.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:
    from usm_bridge.store import Store

_ENV_URL = "USM_BRIDGE_TEST_POSTGRES_URL"
_ENV_PRIVATE = "USM_BRIDGE_TEST_POSTGRES_PRIVATE"
_POSTGRES_FIXTURES = frozenset({"postgres_url", "fresh_postgres_url"})


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _unavailable(reason: str) -> NoReturn:
    message = f"PostgreSQL is not available: {reason}"
    if _in_ci():
        pytest.fail(f"{message} (CI=true: the PostgreSQL suite is required)", pytrace=False)
    pytest.skip(message)


def _conninfo(url: URL) -> str:
    """libpq connection string for a SQLAlchemy URL (psycopg does not read dialect URLs)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _answers(url: URL) -> str | None:
    """None if the server at ``url`` accepts a connection, else the reason it did not."""
    try:
        with psycopg.connect(_conninfo(url), connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def _pg_url(user: str, port: int, database: str, host: str = "127.0.0.1") -> URL:
    return URL.create("postgresql+psycopg", username=user, host=host, port=port, database=database)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _PrivateServer:
    """A throw-away PostgreSQL cluster, the way pytest-postgresql runs one."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="usm-bridge-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = _free_port()
        self.prefix: list[str] = []
        self.started = False

    def start(self) -> URL:
        initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
        if not (initdb and pg_ctl):
            raise RuntimeError("initdb and pg_ctl are not on PATH")
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root.
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' user") from None
            runuser = shutil.which("runuser")
            if not runuser:
                raise RuntimeError("running as root and runuser is not available")
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
            self.prefix = [runuser, "-u", "postgres", "--"]
        self._run(
            initdb,
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        try:
            self._run(
                pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60",
                "start",
            )  # fmt: skip
        except RuntimeError as exc:
            tail = self.log.read_text(errors="replace")[-800:] if self.log.exists() else ""
            raise RuntimeError(f"{exc}; server log: {tail}") from None
        self.started = True
        return _pg_url("postgres", self.port, "postgres")

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self.prefix, *command], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()[-800:]
            raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}): {output}")

    def stop(self) -> None:
        try:
            if self.started:
                pg_ctl = shutil.which("pg_ctl") or "pg_ctl"
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self._run(pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def _local_server() -> tuple[URL | None, list[str]]:
    """A database on 127.0.0.1:5432 that answers, and why the candidates that did not failed."""
    users = list(dict.fromkeys(["postgres", getpass.getuser()]))
    reasons: list[str] = []
    for database in ("test", "postgres"):
        for user in users:
            url = _pg_url(user, 5432, database)
            reason = _answers(url)
            if reason is None:
                return url, reasons
            reasons.append(f"{user}@127.0.0.1:5432/{database}: {reason}")
    return None, reasons


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a usable PostgreSQL database (see the module docstring for how it is found)."""
    configured = os.environ.get(_ENV_URL)
    if configured:
        url = make_url(configured)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        reason = _answers(url)
        if reason is not None:
            _unavailable(f"{_ENV_URL} does not answer: {reason}")
        yield url.render_as_string(hide_password=False)
        return

    if os.environ.get(_ENV_PRIVATE, "").strip().lower() in ("1", "true", "yes"):
        url_found, reasons = None, [f"{_ENV_PRIVATE} is set: not looking for a local server"]
    else:
        url_found, reasons = _local_server()
    if url_found is not None:
        yield url_found.render_as_string(hide_password=False)
        return

    server = _PrivateServer()
    try:
        try:
            url_found = server.start()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            reasons.append(f"private server: {exc}")
            _unavailable("; ".join(reasons))
        reason = _answers(url_found)
        if reason is not None:
            _unavailable(f"the private server started but does not answer: {reason}")
        yield url_found.render_as_string(hide_password=False)
    finally:
        server.stop()


@contextlib.contextmanager
def _new_database(postgres_url: str) -> Iterator[str]:
    """A new empty database on the server of ``postgres_url``, dropped afterwards."""
    server = make_url(postgres_url)
    name = f"usm_test_{uuid.uuid4().hex[:16]}"
    admin = _conninfo(server)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            # FORCE: a test that leaked a connection must not leave its database behind.
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A new empty database for this test only, dropped afterwards."""
    with _new_database(postgres_url) as url:
        yield url


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty store, on SQLite (a file in tmp_path) and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'usm-bridge.db'}"
    # Requested lazily so that the SQLite variant never needs (or waits for) a server.
    return str(request.getfixturevalue("fresh_postgres_url"))


def _opened_store(url: str) -> Iterator[Store]:
    from usm_bridge.store import Store

    opened = Store.open(url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An opened, migrated store on each back end; closed after the test."""
    yield from _opened_store(store_url)


@pytest.fixture
def second_store_url(
    store_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """Another empty store on the back end of ``store_url``: side-by-side tests run the same
    thing two ways and compare the stores."""
    if store_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'second.db'}"
        return
    with _new_database(str(request.getfixturevalue("postgres_url"))) as url:
        yield url


@pytest.fixture
def pg_store(fresh_postgres_url: str) -> Iterator[Store]:
    """An opened, migrated store on PostgreSQL only; closed after the test."""
    yield from _opened_store(fresh_postgres_url)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)
