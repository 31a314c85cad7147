"""A dead letter can be dismissed: ``dead_letters.status`` may hold ``dismissed``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

An admin who decides a letter will never go through (the record was deleted in its tool, the
write is no longer wanted) dismisses it with a reason. The letter is kept, with who dismissed it
in the audit log, but it no longer counts as open. Only the CHECK constraint on ``status``
changes. Its name differs between stores (SQLite's batch copies in earlier revisions applied the
naming convention a second time), so it is looked up rather than assumed.

Downgrading turns dismissed letters into resolved ones (their resolution text says they were
dismissed): nothing is deleted.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_INDEX = "uq_dead_letters_open_subject"
_OPEN = sa.text("status = 'open' AND subject IS NOT NULL")
_letters = sa.table("dead_letters", sa.column("status", sa.String()))


def _status_check_name(conn: sa.Connection) -> str:
    for check in sa.inspect(conn).get_check_constraints("dead_letters"):
        if "'open'" in str(check["sqltext"]) and check["name"]:
            return str(check["name"])
    raise RuntimeError("dead_letters has no CHECK constraint on status to replace")


def _replace_status_check(statuses: tuple[str, ...]) -> None:
    conn = op.get_bind()
    name = _status_check_name(conn)
    allowed = ", ".join(f"'{status}'" for status in statuses)
    # SQLite changes a CHECK constraint by copying the table; the partial unique index is made
    # again afterwards so that its WHERE clause cannot get lost in the copy.
    op.drop_index(_INDEX, table_name="dead_letters")
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_constraint(op.f(name), type_="check")
        batch.create_check_constraint(op.f(name), sa.text(f"status IN ({allowed})"))
    op.create_index(
        _INDEX,
        "dead_letters",
        ["instance", "subject", "stage"],
        unique=True,
        sqlite_where=_OPEN,
        postgresql_where=_OPEN,
    )


def upgrade() -> None:
    _replace_status_check(("open", "resolved", "dismissed"))


def downgrade() -> None:
    op.get_bind().execute(
        _letters.update().where(_letters.c.status == "dismissed").values(status="resolved")
    )
    _replace_status_check(("open", "resolved"))
