"""One open dead letter per (instance, subject, stage), with when it was last seen.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

Before this revision every failed re-read of the same record added another dead letter, so a
record that kept failing grew one row per cycle. ``dead_letters.subject`` names what failed (the
remote record's id for ``map`` and ``store``, ``outbox:<id>`` for ``push``); a unique partial
index allows one *open* letter per (instance, subject, stage), and a repeat updates that letter's
attempts, reason, payload and ``last_seen`` instead. ``created_at`` stays the first sighting.

Existing rows get their subject from what they already hold (the payload's ``remote_id``, the
outbox id). Open duplicates collapse into the oldest one, which takes the newest payload and
reason, the sum of the attempts and the latest sighting; the others are resolved (not deleted:
nothing stored is lost) with a resolution naming the letter they were merged into.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)
_INDEX = "uq_dead_letters_open_subject"
_OPEN = sa.text("status = 'open' AND subject IS NOT NULL")

# The table as this revision sees it (not the runtime one, which later revisions may change).
_letters = sa.table(
    "dead_letters",
    sa.column("id", _ID),
    sa.column("instance", sa.String()),
    sa.column("stage", sa.String()),
    sa.column("payload", sa.JSON()),
    sa.column("reason", sa.Text()),
    sa.column("attempts", sa.Integer()),
    sa.column("status", sa.String()),
    sa.column("outbox_id", _ID),
    sa.column("resolution", sa.Text()),
    sa.column("updated_at", _TS),
    sa.column("resolved_at", _TS),
    sa.column("subject", sa.String()),
    sa.column("last_seen", _TS),
)


def _subject(stage: str, payload: Any, outbox_id: int | None) -> str | None:
    # What the sync engine (map, store) and Transaction.mark_outbox_dead (push) pass.
    if stage == "push":
        return None if outbox_id is None else f"outbox:{outbox_id}"
    if isinstance(payload, dict) and isinstance(payload.get("remote_id"), str):
        return str(payload["remote_id"])[:300]
    return None


def _backfill(conn: sa.Connection) -> None:
    rows = conn.execute(
        sa.select(_letters.c.id, _letters.c.stage, _letters.c.payload, _letters.c.outbox_id)
    ).all()
    for letter_id, stage, payload, outbox_id in rows:
        subject = _subject(stage, payload, outbox_id)
        if subject is not None:
            conn.execute(
                _letters.update().where(_letters.c.id == letter_id).values(subject=subject)
            )
    conn.execute(_letters.update().values(last_seen=_letters.c.updated_at))


def _collapse(conn: sa.Connection) -> None:
    letters = _letters.c
    rows = conn.execute(
        sa.select(
            letters.id,
            letters.instance,
            letters.stage,
            letters.subject,
            letters.payload,
            letters.reason,
            letters.attempts,
            letters.last_seen,
        )
        .where(letters.status == "open", letters.subject.is_not(None))
        .order_by(letters.id)
    ).all()
    groups: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for row in rows:
        groups[(row.instance, row.stage, row.subject)].append(row)
    now = datetime.now(UTC)
    if conn.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # the runtime type stores naive UTC text on SQLite
    for group in groups.values():
        if len(group) < 2:
            continue
        keeper, newest = group[0], group[-1]
        conn.execute(
            _letters.update()
            .where(letters.id == keeper.id)
            .values(
                payload=newest.payload,
                reason=newest.reason,
                attempts=sum(row.attempts for row in group),
                last_seen=max(row.last_seen for row in group),
            )
        )
        conn.execute(
            _letters.update()
            .where(letters.id.in_([row.id for row in group[1:]]))
            .values(
                status="resolved",
                resolution=f"merged into dead letter {keeper.id} (one open letter per record)",
                resolved_at=now,
                updated_at=now,
            )
        )


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("subject", sa.String(300), nullable=True))
    op.add_column("dead_letters", sa.Column("last_seen", _TS, nullable=True))
    conn = op.get_bind()
    _backfill(conn)
    _collapse(conn)
    # Every row has a last sighting now; SQLite makes the column NOT NULL by copying the table.
    with op.batch_alter_table("dead_letters") as batch:
        batch.alter_column("last_seen", existing_type=_TS, nullable=False)
    op.create_index(
        _INDEX,
        "dead_letters",
        ["instance", "subject", "stage"],
        unique=True,
        sqlite_where=_OPEN,
        postgresql_where=_OPEN,
    )


def downgrade() -> None:
    # The collapsed duplicates stay resolved: they were real, merged sightings of one letter.
    op.drop_index(_INDEX, table_name="dead_letters")
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("last_seen")
        batch.drop_column("subject")
