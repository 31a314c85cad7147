"""Where a store's schema stands against the code's, and what opening it may do about that.

A store is *empty* (no revision yet: a new SQLite file, an empty PostgreSQL database),
*current* (at the code's head), *older* (at an earlier revision this code knows) or *newer*
(at a revision this code does not know: written by a later usm-bridge). Opening a store never
upgrades an older one unless it is told to (:attr:`SchemaPolicy.UPGRADE`), so an upgrade is
something an admin does on purpose, after a backup: ``usm-bridge db upgrade``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from usm_bridge.errors import StoreSchemaError

if TYPE_CHECKING:  # Alembic is imported only where it is used: see .schema_head
    from alembic.script import ScriptDirectory

__all__ = ["Migration", "SchemaPolicy", "SchemaState", "SchemaStatus", "schema_status"]

#: What an admin runs to bring an older store forward.
UPGRADE_COMMAND = "usm-bridge db upgrade"


class SchemaPolicy(StrEnum):
    """What :meth:`usm_bridge.store.Store.open` may do to the schema it finds."""

    #: Create an empty store; refuse an older or a newer one (the default).
    CREATE = "create"
    #: Also upgrade an older store to the code's head (``db upgrade``, ``--migrate``).
    UPGRADE = "upgrade"
    #: As CREATE, except that a SQLite store file not made yet is not made: it reads as the
    #: empty store, held in memory. For commands that only read (``status``, ``report``).
    READ = "read"
    #: Change nothing and refuse nothing: for commands that report the schema (``db status``).
    INSPECT = "inspect"


class SchemaState(StrEnum):
    EMPTY = "empty"
    CURRENT = "current"
    OLDER = "older"
    NEWER = "newer"


@dataclass(frozen=True)
class Migration:
    """One Alembic revision: its id and the first line of its description."""

    revision: str
    description: str


@dataclass(frozen=True)
class SchemaStatus:
    """The store's revision, the code's head and the migrations between them, oldest first."""

    current: str | None
    head: str
    pending: tuple[Migration, ...]
    state: SchemaState

    def refusal(self, where: str) -> StoreSchemaError | None:
        """Why a command that needs the code's schema cannot run on this store (``None``
        when it can: current, or empty and about to be created)."""
        if self.state is SchemaState.NEWER:
            return StoreSchemaError(
                f"the store at {where} is at schema revision {self.current}, which this "
                f"usm-bridge (schema {self.head}) does not know: a newer usm-bridge wrote it. "
                "Run that version, or restore the backup taken before its upgrade"
            )
        if self.state is SchemaState.OLDER:
            names = ", ".join(m.revision for m in self.pending)
            return StoreSchemaError(
                f"the store at {where} is at schema revision {self.current} and this "
                f"usm-bridge needs {self.head} ({len(self.pending)} pending: {names}). Back it "
                f"up, then run '{UPGRADE_COMMAND}' (sync and daemon also take --migrate)"
            )
        return None


def schema_status(script: ScriptDirectory, current: str | None) -> SchemaStatus:
    """Compare the store's revision ``current`` with the migrations of ``script``."""
    from alembic.util import CommandError

    head = script.get_current_head()
    if head is None:  # pragma: no cover - the package always ships its migrations
        raise StoreSchemaError("usm-bridge ships no store migrations: the install is broken")
    try:
        known = current is None or script.get_revision(current) is not None
    except CommandError:
        known = False
    if not known:
        return SchemaStatus(current, head, (), SchemaState.NEWER)
    pending = tuple(
        Migration(rev.revision, (rev.doc or "").strip().splitlines()[0] if rev.doc else "")
        for rev in reversed(list(script.iterate_revisions(head, current)))
    )
    if current is None:
        state = SchemaState.EMPTY
    elif pending:
        state = SchemaState.OLDER
    else:
        state = SchemaState.CURRENT
    return SchemaStatus(current, head, pending, state)
