"""Whether a store is at the code's schema head, settled without importing Alembic.

Importing Alembic and loading its script directory (which imports every migration module) took
about 0.4 s of every command that opens a store, most of what a short command such as
``usm-bridge status`` costs. Nearly every open finds the store at the head, so that case is
answered here from the text of the migration files (their ``revision`` and ``down_revision``
lines) and one read of the store's version table. Anything else (an empty store, an older or a
newer one, several revisions in the table, a migration folder this reading cannot follow, such
as a merge) is left to Alembic, which stays the authority (:mod:`.upgrades`);
``tests/store/test_schema_head.py`` checks that both agree on the head.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .schema import VERSION_TABLE
from .upgrades import SchemaState, SchemaStatus

__all__ = ["VERSIONS", "at_head_status", "head_revision", "stored_revisions"]

#: The folder of the shipped migrations (Alembic's ``versions``).
VERSIONS = Path(__file__).parent / "migrations" / "versions"

#: The files Alembic loads as revisions: ``*.py``, except private modules and editor locks.
_REVISION_FILE = re.compile(r"^(?!\.#)(?!_).*\.py$")
#: A module-level ``revision = ...`` or ``down_revision = ...`` (a type annotation allowed).
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.*?)\s*$", re.MULTILINE)
#: The values this reading follows: one quoted revision id, or ``None`` (the first revision).
_SINGLE = re.compile(r"""^(?:None|"([^"\\]+)"|'([^'\\]+)')$""")


def _single(value: str) -> tuple[bool, str | None]:
    """``(understood, revision)`` of one assignment's right-hand side."""
    match = _SINGLE.match(value)
    if match is None:
        return False, None  # a tuple (a merge), a name, a call: Alembic's to read
    return True, match[1] or match[2]


@cache
def head_revision(folder: Path = VERSIONS) -> str | None:
    """The one revision in ``folder`` that no other names as its ``down_revision``, read from
    the files' text; ``None`` when the text does not settle it (no files, a file without both
    lines or with a value other than one id or ``None``, a merge, several heads), and the
    caller then asks Alembic. Cached: the shipped migrations do not change in a process.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    try:
        names = sorted(entry.name for entry in folder.iterdir() if entry.is_file())
    except OSError:
        return None
    for name in names:
        if not _REVISION_FILE.match(name):
            continue
        try:
            text = (folder / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        found = dict(_ASSIGNMENT.findall(text))
        if "revision" not in found or "down_revision" not in found:
            return None
        ok, revision = _single(found["revision"])
        ok_parent, parent = _single(found["down_revision"])
        if not (ok and ok_parent) or revision is None or revision in revisions:
            return None
        revisions.add(revision)
        if parent is not None:
            parents.add(parent)
    heads = revisions - parents
    if len(heads) != 1 or not parents <= revisions:
        return None
    return heads.pop()


def stored_revisions(conn: Connection) -> tuple[str, ...]:
    """The revisions in the store's version table (none when the table does not exist yet)."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return ()
    rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608 - a constant
    return tuple(str(row[0]) for row in rows)


def at_head_status(conn: Connection) -> SchemaStatus | None:
    """The store's status when it is at the code's head (nothing pending), read without Alembic;
    ``None`` when it is not, or when that cannot be told so cheaply: then ask Alembic."""
    head = head_revision()
    if head is None or stored_revisions(conn) != (head,):
        return None
    return SchemaStatus(head, head, (), SchemaState.CURRENT)
