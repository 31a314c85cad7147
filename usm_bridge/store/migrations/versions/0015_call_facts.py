"""Every call keeps its facts beside its document: ``calls.facts``.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

A conformance report judges every stored call; reading each call's whole document back through
the model cost most of a report over a million calls. The store now writes, with each document,
the call's facts: the document without its free texts, people, comments and tool attributes
(``usm_bridge.store.call_facts``), which the report reads instead.

Existing rows get theirs here, derived from their documents a batch at a time (about 90 us of
CPU a call: a million calls took 4 minutes on a loaded 2-core machine); a document that is not
JSON gets none, and the report reads (and lists) such a row from its document as before.
Downgrading drops the column.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: The members the facts leave out, as this revision wrote them (``call_facts.LEFT_OUT`` and
#: ``DERIVED`` then): a later change of that list does not change what this revision did.
_LEFT_OUT = frozenset(
    ("assignee", "attributes", "comments", "customer", "description", "requester", "process")
)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)
#: Rows derived per statement.
_BATCH = 2000

_calls = sa.table(
    "calls",
    sa.column("id", sa.String()),
    sa.column("canonical", sa.JSON()),
    sa.column("facts", sa.Text()),
)


def _facts(text: Any) -> str | None:
    """The facts of a stored document, or ``None`` when it is not a JSON object."""
    try:
        document = json.loads(text) if isinstance(text, str | bytes) else text
        if not isinstance(document, dict):
            return None
        return _ENCODER.encode({k: v for k, v in document.items() if k not in _LEFT_OUT})
    except ValueError:
        return None


def upgrade() -> None:
    op.add_column("calls", sa.Column("facts", sa.Text(), nullable=True))
    conn = op.get_bind()
    # The document as the driver stores it (text on both back ends: never decoded for us).
    select = sa.select(_calls.c.id, sa.cast(_calls.c.canonical, sa.Text)).order_by(_calls.c.id)
    update = (
        sa.update(_calls)
        .where(_calls.c.id == sa.bindparam("b_id"))
        .values(facts=sa.bindparam("b_facts"))
    )
    after: str | None = None
    while True:
        page = select if after is None else select.where(_calls.c.id > after)
        rows = conn.execute(page.limit(_BATCH)).all()
        if not rows:
            return
        derived = [{"b_id": row[0], "b_facts": _facts(row[1])} for row in rows]
        derived = [row for row in derived if row["b_facts"] is not None]
        if derived:
            conn.execute(update, derived)
        after = rows[-1][0]


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35 and later): a batch copy of the table would trip the
    # foreign keys that name the calls.
    op.drop_column("calls", "facts")
