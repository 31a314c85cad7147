"""Calls with an unresolved fork are flagged: ``calls.open_forks``, ``ix_calls_open_forks``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

After each page it stores, the ingest stage resolves the forks of stored calls that name one of
the page's records (``usm_bridge.sync.forks``). It found those calls by a text match over every
call's JSON document: a scan of the whole calls table per page, which in a store of a million
calls made each page of a backfill read gigabytes. The store now keeps, on the call's row,
whether the call holds a fork not resolved to a call yet (written with the document), and a
partial index holds only those rows.

Existing rows are flagged once here: the same text match finds the candidates, and each
candidate's document is then read to confirm it (the text match alone may also match a
description quoting such JSON). Downgrading drops the index and the column.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_calls = sa.table(
    "calls",
    sa.column("id", sa.String()),
    sa.column("canonical", sa.JSON()),
    sa.column("open_forks", sa.Boolean()),
)


def _has_open_fork(canonical: Any) -> bool:
    document = json.loads(canonical) if isinstance(canonical, str) else canonical
    chain = document.get("chain") if isinstance(document, dict) else None
    forks = chain.get("forks") if isinstance(chain, dict) else None
    return isinstance(forks, list) and any(
        isinstance(fork, dict) and fork.get("call") is None for fork in forks
    )


def upgrade() -> None:
    op.add_column(
        "calls",
        sa.Column("open_forks", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    conn = op.get_bind()
    text = sa.cast(_calls.c.canonical, sa.Text)
    # Spaced as the store wrote JSON before, or compact as it writes it now (and as a store
    # restored from an export may hold it).
    candidates = conn.execute(
        sa.select(_calls.c.id, _calls.c.canonical).where(
            sa.or_(text.contains('"role": "'), text.contains('"role":"')),
            sa.or_(text.contains('"call": null'), text.contains('"call":null')),
        )
    ).all()
    flagged = [call_id for call_id, canonical in candidates if _has_open_fork(canonical)]
    for start in range(0, len(flagged), 500):
        conn.execute(
            sa.update(_calls)
            .where(_calls.c.id.in_(flagged[start : start + 500]))
            .values(open_forks=True)
        )
    where = sa.text("open_forks")
    op.create_index(
        "ix_calls_open_forks", "calls", ["id"], sqlite_where=where, postgresql_where=where
    )


def downgrade() -> None:
    op.drop_index("ix_calls_open_forks", table_name="calls")
    # A plain DROP COLUMN (SQLite 3.35 and later): a batch copy of the table would trip the
    # foreign keys that name the calls.
    op.drop_column("calls", "open_forks")
