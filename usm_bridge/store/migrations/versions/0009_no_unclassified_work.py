"""No work while unclassified: stored unclassified calls in progress or waiting go back to
``registered``, each change in the audit log.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

USM does no work on a call before it is classified, and the model now refuses an
``unclassified`` call that is ``in_progress`` or ``waiting``. A store written before that rule
may hold such calls; the code could no longer read them (every report over all calls failed).
Each one is set back to ``registered`` (what it is: received, not yet classified), with its
``waiting_on`` and ``waiting_process`` cleared and its version bumped, and an audit event
``call_status_migrated`` keeps the status it had. Nothing is deleted. The tool still says the
call is worked on: its next read becomes a dead letter asking to classify it (a classify rule
in the mapping, or a type in the tool), which is how such a record is handled from now on.

Downgrading leaves the calls as they are (``registered`` is valid before and after); the audit
events tell what they were.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_WORK = ("in_progress", "waiting")
_calls = sa.table(
    "calls",
    sa.column("id", sa.String()),
    sa.column("call_type", sa.String()),
    sa.column("status", sa.String()),
    sa.column("canonical", sa.JSON()),
    sa.column("version", sa.Integer()),
)
_audit = sa.table(
    "audit_log",
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("call_id", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("actor", sa.String()),
    sa.column("before", sa.JSON()),
    sa.column("after", sa.JSON()),
    sa.column("detail", sa.JSON()),
)


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_calls.c.id, _calls.c.status, _calls.c.canonical, _calls.c.version).where(
            _calls.c.call_type == "unclassified", _calls.c.status.in_(_WORK)
        )
    ).all()
    now = datetime.now(UTC)
    # As the store's UTCDateTime writes it: SQLite keeps the text of a naive UTC time.
    at = now.replace(tzinfo=None) if conn.dialect.name == "sqlite" else now
    for call_id, status, canonical, version in rows:
        document: dict[str, Any] = dict(canonical or {})
        before = {"status": status, "waiting_on": document.get("waiting_on")}
        document.update(status="registered", waiting_on=None, waiting_process=None)
        conn.execute(
            sa.update(_calls)
            .where(_calls.c.id == call_id)
            .values(status="registered", canonical=document, version=version + 1)
        )
        conn.execute(
            sa.insert(_audit).values(
                at=at,
                call_id=call_id,
                kind="call_status_migrated",
                actor="db upgrade 0009",
                before=before,
                after={"status": "registered", "waiting_on": None},
                detail={
                    "reason": "an unclassified call cannot be worked on (USM): classify it "
                    "in its tool or by a classify rule of its mapping"
                },
            )
        )


def downgrade() -> None:
    # Nothing to undo: "registered" is valid under both rules; the audit log keeps the past.
    pass
