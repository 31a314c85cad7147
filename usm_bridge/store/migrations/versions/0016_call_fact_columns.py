"""The members the data checks read, as columns of the call's row.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

A conformance report over a million calls still built a model object per call from its facts
(revision 0015), most of its CPU. The members the data checks and the registry's answers read
(priority, impact, urgency, service, agreement, customer unit, waiting, title, source, the
tool's times, upstream, confirmation, forks) become columns of ``calls``, written with the
document by the store (``usm_bridge.store.call_facts.fact_columns``), so that a report can ask
the database for the calls grouped by what a check judges.

Existing rows get theirs here, derived from their facts (``calls.facts``) a batch at a time. A
row without facts gets none. A member that the model would refuse (not text, or longer than
its column) is left NULL rather than stopping the upgrade: the report reads such a call as
unreadable anyway, from its facts. Downgrading drops the columns.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

#: Rows derived per statement.
_BATCH = 2000
#: The title's characters a column keeps (what a finding's evidence shows).
_TITLE_CHARS = 200
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)

#: Each column this revision adds, with its type; frozen here as this revision made them.
_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("priority", sa.String(100)),
    ("impact", sa.String(16)),
    ("urgency", sa.String(16)),
    ("service", sa.String(300)),
    ("agreement", sa.String(300)),
    ("customer_unit", sa.String(63)),
    ("waiting_on", sa.String(32)),
    ("waiting_process", sa.String(32)),
    ("title", sa.String(200)),
    ("source_instance", sa.String(63)),
    ("source_remote_id", sa.String(300)),
    ("source_remote_key", sa.String(300)),
    ("source_url", sa.Text()),
    ("tool_created", sa.String(40)),
    ("tool_updated", sa.String(40)),
    ("tool_fulfilled", sa.String(40)),
    ("tool_confirmed", sa.String(40)),
    ("tool_closed", sa.String(40)),
    ("upstream", sa.Text()),
    ("confirmation_kind", sa.String(32)),
    ("confirmation_at", sa.String(40)),
    ("confirmation_how", sa.String(300)),
    ("forks", sa.Text()),
)

_calls = sa.table(
    "calls",
    sa.column("id", sa.String()),
    sa.column("facts", sa.Text()),
    *(sa.column(name, kind) for name, kind in _COLUMNS),
)


#: Each text column's length (``None``: unbounded).
_LENGTHS = {name: getattr(kind, "length", None) for name, kind in _COLUMNS}


def _member(document: Any, key: str) -> Any:
    return document.get(key) if isinstance(document, dict) else None


def _text(value: Any, column: str) -> str | None:
    """``value`` when it is text that fits ``column``, else ``None`` (see the docstring)."""
    length = _LENGTHS[column]
    if not isinstance(value, str) or (length is not None and len(value) > length):
        return None
    return value


def _columns(facts: Any) -> dict[str, Any] | None:
    """The columns of a row whose facts are ``facts`` (text); ``None`` without facts."""
    try:
        document = json.loads(facts) if isinstance(facts, str) else None
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    source = _member(document, "source")
    chain = _member(document, "chain")
    confirmation = _member(document, "confirmation")
    title = _member(document, "title")
    forks = _member(chain, "forks")
    try:
        forks_text = _ENCODER.encode(forks) if forks else None
    except ValueError:
        forks_text = None
    found = {
        "priority": document.get("priority"),
        "impact": document.get("impact"),
        "urgency": document.get("urgency"),
        "service": document.get("service"),
        "agreement": document.get("agreement"),
        "customer_unit": document.get("customer_unit"),
        "waiting_on": document.get("waiting_on"),
        "waiting_process": document.get("waiting_process"),
        "title": title[:_TITLE_CHARS] if isinstance(title, str) else None,
        "source_instance": _member(source, "instance"),
        "source_remote_id": _member(source, "remote_id"),
        "source_remote_key": _member(source, "remote_key"),
        "source_url": _member(source, "url"),
        "tool_created": document.get("created"),
        "tool_updated": document.get("updated"),
        "tool_fulfilled": document.get("fulfilled"),
        "tool_confirmed": document.get("confirmed"),
        "tool_closed": document.get("closed"),
        "upstream": _member(chain, "upstream"),
        "confirmation_kind": _member(confirmation, "kind"),
        "confirmation_at": _member(confirmation, "at"),
        "confirmation_how": _member(confirmation, "how"),
        "forks": forks_text,
    }
    return {f"b_{name}": _text(value, name) for name, value in found.items()}


def upgrade() -> None:
    for name, kind in _COLUMNS:
        op.add_column("calls", sa.Column(name, kind, nullable=True))
    conn = op.get_bind()
    select = sa.select(_calls.c.id, _calls.c.facts).order_by(_calls.c.id)
    update = (
        sa.update(_calls)
        .where(_calls.c.id == sa.bindparam("b_id"))
        .values({name: sa.bindparam(f"b_{name}") for name, _ in _COLUMNS})
    )
    after: str | None = None
    while True:
        page = select if after is None else select.where(_calls.c.id > after)
        rows = conn.execute(page.limit(_BATCH)).all()
        if not rows:
            return
        derived = []
        for call_id, facts in rows:
            columns = _columns(facts)
            if columns is not None:
                derived.append({"b_id": call_id, **columns})
        if derived:
            conn.execute(update, derived)
        after = rows[-1][0]


def downgrade() -> None:
    # Plain DROP COLUMNs (SQLite 3.35 and later): a batch copy of the table would trip the
    # foreign keys that name the calls.
    for name, _ in reversed(_COLUMNS):
        op.drop_column("calls", name)
