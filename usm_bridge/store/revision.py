"""The store's schema revision against the code's, read without changing anything.

``usm-bridge check`` asks this: it must never create a store, a folder or a table, and never
migrate. :meth:`Store.open` is not used because it creates a new store's schema.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

from ..errors import StoreError
from .connect import (
    DEFAULT_BUSY_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    _create_engine,
    _is_memory,
    _parse_url,
    safe_url,
)
from .store import _MIGRATIONS, Store
from .upgrades import SchemaState, SchemaStatus, schema_status

__all__ = ["StoreRevision", "read_store_revision"]


@dataclass(frozen=True)
class StoreRevision:
    """Where the store's schema stands; ``current`` is ``None`` before any migration."""

    url: str
    #: The revision against the code's: state, pending migrations, and the refusal a command
    #: needing the code's schema gives (:meth:`SchemaStatus.refusal`).
    status: SchemaStatus
    #: The SQLite file the first sync would create, when there is none yet.
    missing_file: Path | None = None

    @property
    def current(self) -> str | None:
        return self.status.current

    @property
    def head(self) -> str:
        return self.status.head

    @property
    def state(self) -> SchemaState:
        return self.status.state


def read_store_revision(
    url: str | URL, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
) -> StoreRevision:
    """Connect to the store at ``url`` and read its Alembic revision; write nothing.

    A SQLite file that does not exist yet is fine when its folder can be created and written
    (the first sync creates both): it is reported ``empty`` with ``missing_file`` set.

    :raises ConfigurationError: the URL is malformed or names an unsupported back end.
    :raises StoreError: the database cannot be reached or read, or the SQLite file could not
        be created or written.
    """
    parsed = _parse_url(url)
    shown = safe_url(parsed)
    if parsed.get_backend_name() == "sqlite" and not _is_memory(parsed):
        path = Path(str(parsed.database)).expanduser()
        if not path.exists():
            _check_creatable(path, shown)
            from alembic.script import ScriptDirectory  # only here: see .schema_head

            status = schema_status(ScriptDirectory(str(_MIGRATIONS)), None)
            return StoreRevision(shown, status, missing_file=path)
        if not path.is_file():
            raise StoreError(f"the store {shown} is not a file")
        # WAL mode writes next to the file: the folder must be writable too.
        for target in (path, path.parent):
            if not os.access(target, os.R_OK | os.W_OK):
                raise StoreError(f"cannot open the store {shown}: {target} is not writable")
    engine = _create_engine(
        parsed, connect_timeout=connect_timeout, busy_timeout=DEFAULT_BUSY_TIMEOUT
    )
    with Store(engine, parsed) as store:
        status = store.schema_status()
    return StoreRevision(shown, status)


def _check_creatable(path: Path, shown: str) -> None:
    """The first sync creates the file and any missing folder: the nearest existing ancestor
    must be a folder this process may write into."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise StoreError(f"cannot create the store {shown}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create the store {shown}: the folder {ancestor} is not writable")
