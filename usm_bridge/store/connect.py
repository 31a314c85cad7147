"""Store URLs and engines: parsing a store URL, and the engine for it.

SQLite (the embedded default) runs in WAL mode, so readers never wait for the writer; every
read-write unit of work starts with ``BEGIN IMMEDIATE`` (asked for with :data:`_WRITE_OPTION`)
so that two writers queue on the busy timeout instead of failing half-way when one of them
upgrades a read lock. A new SQLite store file is created owner-only.

A store URL may carry a password: it is only ever shown through :func:`safe_url`, and driver
messages (:func:`_driver_message`) quote no URL.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from usm_bridge.errors import ConfigurationError, StoreError
from usm_bridge.file_modes import STORE_MODE, create_file
from usm_bridge.store.encoded_json import store_dumps
from usm_bridge.store.pg_session import configure_pg_sessions

__all__ = ["DEFAULT_BUSY_TIMEOUT", "DEFAULT_CONNECT_TIMEOUT", "safe_url"]

log = logging.getLogger(__name__)

_EXPECTED_URL = "sqlite:///path/usm-bridge.db or postgresql+psycopg://user@host:5432/database"
#: What to install when a back end's driver is missing (the PostgreSQL driver is an extra).
_DRIVER_HINTS = {
    "postgresql": "; install the PostgreSQL driver with: pip install 'usm-bridge[postgresql]'",
}
#: How long a writer waits for another one before giving up, in seconds.
DEFAULT_BUSY_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0
#: The execution option that says whether a connection's unit of work may write.
_WRITE_OPTION = "usm_bridge_write"
#: WAL pages (4 KiB) after which a commit copies the WAL back into the database (SQLite's
#: default: 1,000). A backfill page's commit writes some hundreds: at the default every few
#: pages copied the table and index pages they share again. Measured on 10,000-record
#: backfills (two alternating runs each): ServiceNow 4.64 and 4.76 CPU s at the default, 4.40
#: and 4.27 at 20,000; Jira 6.31 and 6.10 against 6.22 and 5.97. The WAL file grows to at
#: most about 80 MiB (it is reused, and removed when the last connection closes).
WAL_AUTOCHECKPOINT = 20_000


def safe_url(url: URL) -> str:
    """The URL as it may be shown to a person: the password masked."""
    return url.render_as_string(hide_password=True)


def _parse_url(url: str | URL) -> URL:
    if isinstance(url, URL):
        parsed = url
    else:
        if not url.strip():
            raise ConfigurationError("the store URL is empty", expected=_EXPECTED_URL)
        try:
            parsed = make_url(url.strip())
        except (ArgumentError, ValueError, TypeError):
            # SQLAlchemy's message quotes the whole URL, password included: do not chain it.
            raise ConfigurationError(
                "the store URL cannot be parsed", expected=_EXPECTED_URL
            ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed
    if backend in ("postgresql", "postgres"):
        # psycopg 3 is what usm-bridge[postgresql] installs; SQLAlchemy's bare default would be
        # psycopg2.
        if "+" not in parsed.drivername:
            parsed = parsed.set(drivername="postgresql+psycopg")
        elif backend == "postgres":
            parsed = parsed.set(drivername="postgresql+" + parsed.get_driver_name())
        return parsed
    raise ConfigurationError(
        f"unsupported store back end {backend!r} in {safe_url(parsed)}", expected=_EXPECTED_URL
    )


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def _create_engine(url: URL, *, connect_timeout: float, busy_timeout: float) -> Engine:
    options: dict[str, Any] = {
        # Parameters are ticket data: keep them out of exception messages and logs.
        "hide_parameters": True,
        # Compact; NaN and Infinity refused; JsonText (encoded once already) written as it is.
        "json_serializer": store_dumps,
    }
    if url.get_backend_name() == "sqlite":
        connect_args: dict[str, Any] = {"timeout": busy_timeout}
        if _is_memory(url):
            # One shared connection, or every checkout would see its own empty database.
            connect_args["check_same_thread"] = False
            options["poolclass"] = StaticPool
        else:
            assert url.database is not None
            folder = Path(url.database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the folder {folder} for the store {safe_url(url)}: "
                    f"{exc.strerror or type(exc).__name__}"
                ) from exc
            if not _is_uri(url):
                _create_store_file(url)
        options["connect_args"] = connect_args
    else:
        connect_args = {}
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = max(1, round(connect_timeout))
        if "application_name" not in url.query:
            connect_args["application_name"] = "usm-bridge"
        options["connect_args"] = connect_args
        # A daemon outlives server restarts and idle-connection reapers.
        options["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(url, **options)
    except (NoSuchModuleError, ImportError):
        raise ConfigurationError(
            f"no database driver for {url.drivername!r} is installed"
            + _DRIVER_HINTS.get(url.get_backend_name(), ""),
            expected=_EXPECTED_URL,
        ) from None
    except (ArgumentError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"the store URL {safe_url(url)} is not usable: {type(exc).__name__}",
            expected=_EXPECTED_URL,
        ) from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, busy_timeout=busy_timeout, memory=_is_memory(url))
    elif engine.dialect.name == "postgresql":
        configure_pg_sessions(engine)
    return engine


def _not_made_yet(url: URL) -> bool:
    """A SQLite store named by a plain file path that does not exist."""
    if url.get_backend_name() != "sqlite" or _is_memory(url) or _is_uri(url):
        return False
    assert url.database is not None
    return not Path(url.database).expanduser().exists()


def _is_uri(url: URL) -> bool:
    # sqlite:///file:name?mode=ro&uri=true names the file inside a URI SQLite parses itself.
    return str(url.query.get("uri", "")).lower() in ("true", "1")


def _create_store_file(url: URL) -> None:
    """Create a new SQLite store file owner-only before SQLite does (it would use 0644); its
    -wal and -shm files then get the same mode, as SQLite copies the database file's."""
    assert url.database is not None
    path = Path(url.database)
    try:
        create_file(path, STORE_MODE)
    except OSError as exc:
        raise StoreError(
            f"cannot create the store file {path} for {safe_url(url)}: "
            f"{exc.strerror or type(exc).__name__}"
        ) from exc


def _configure_sqlite(engine: Engine, *, busy_timeout: float, memory: bool) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module, which would only BEGIN before
        # DML (not before reads) and so give no consistent snapshot to a unit of work.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            if not memory:
                mode = _wal_mode(cursor, busy_timeout)
                if str(mode).lower() != "wal":
                    log.warning("SQLite refused WAL mode (journal mode is %s)", mode)
                else:
                    # In WAL mode NORMAL never corrupts and loses nothing on a process crash;
                    # a power cut may undo the last commits, in order, cursor included, so the
                    # bridge re-reads and re-pushes idempotently. FULL would fsync every commit.
                    cursor.execute("PRAGMA synchronous = NORMAL")
                    cursor.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _wal_mode(cursor: Any, busy_timeout: float) -> str:
    """Put the database in WAL mode and return the journal mode it is in.

    WAL is a property of the file: once set, later connections find it and change nothing. The
    first switch needs the file to itself, and SQLite answers "database is locked" at once,
    without its busy handler, when another connection opened the new file at the same moment
    (processes starting together on a fresh store): so the switch is tried again, briefly, for
    as long as a busy write would be waited for.
    """
    mode = str(cursor.execute("PRAGMA journal_mode").fetchone()[0])
    if mode.lower() == "wal":
        return mode
    deadline = time.monotonic() + busy_timeout
    pause = 0.005
    while True:
        try:
            return str(cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _driver_message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    source = orig if isinstance(orig, BaseException) else exc
    lines = [line.strip() for line in str(source).strip().splitlines() if line.strip()]
    text = "; ".join(lines[:3]) if lines else type(source).__name__
    return text[:500]
