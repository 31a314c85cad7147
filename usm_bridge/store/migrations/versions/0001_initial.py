"""The initial schema: calls, identities, chain links, cursors, outbox, dead letters, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

The audit log is made append-only by the database itself (triggers refusing UPDATE and DELETE,
and TRUNCATE on PostgreSQL), so that neither a bug nor a hand-typed SQL statement can rewrite
history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)
_MESSAGE = "audit_log is append-only"


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("unit", sa.String(63), nullable=False),
        sa.Column("call_type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("canonical", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("vanished_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_calls"),
        sa.CheckConstraint("version >= 1", name="ck_calls_version_positive"),
    )
    op.create_index("ix_calls_unit_status", "calls", ["unit", "status"])
    op.create_index("ix_calls_call_type", "calls", ["call_type"])
    op.create_index("ix_calls_updated_at", "calls", ["updated_at"])

    op.create_table(
        "identities",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(100), nullable=False),
        sa.Column("instance", sa.String(63), nullable=False),
        sa.Column("remote_id", sa.String(300), nullable=False),
        sa.Column("remote_key", sa.String(300), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("correlation", sa.String(200), nullable=True),
        sa.Column("pushed_hash", sa.String(64), nullable=True),
        sa.Column("pushed_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_identities"),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name="fk_identities_call_id_calls"),
        sa.UniqueConstraint("instance", "remote_id", name="uq_identities_instance_remote_id"),
        sa.UniqueConstraint("call_id", "instance", name="uq_identities_call_id_instance"),
        sa.UniqueConstraint("instance", "correlation", name="uq_identities_instance_correlation"),
    )
    op.create_index("ix_identities_instance_remote_key", "identities", ["instance", "remote_key"])

    op.create_table(
        "chain_links",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("upstream_call_id", sa.String(100), nullable=False),
        sa.Column("supplier_call_id", sa.String(100), nullable=False),
        sa.Column("route", sa.String(100), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chain_links"),
        sa.ForeignKeyConstraint(
            ["upstream_call_id"], ["calls.id"], name="fk_chain_links_upstream_call_id_calls"
        ),
        sa.ForeignKeyConstraint(
            ["supplier_call_id"], ["calls.id"], name="fk_chain_links_supplier_call_id_calls"
        ),
        sa.UniqueConstraint("supplier_call_id", name="uq_chain_links_supplier_call_id"),
        sa.CheckConstraint("upstream_call_id <> supplier_call_id", name="ck_chain_links_not_self"),
    )
    op.create_index("ix_chain_links_upstream_call_id", "chain_links", ["upstream_call_id"])

    op.create_table(
        "cursors",
        sa.Column("instance", sa.String(63), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("instance", name="pk_cursors"),
    )

    op.create_table(
        "outbox",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("target_instance", sa.String(63), nullable=False),
        sa.Column("call_id", sa.String(100), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name="fk_outbox_call_id_calls"),
        sa.UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
        sa.CheckConstraint(
            "operation IN ('create', 'update', 'comment')", name="ck_outbox_operation"
        ),
        sa.CheckConstraint("status IN ('pending', 'done', 'dead')", name="ck_outbox_status"),
        sa.CheckConstraint("attempts >= 0", name="ck_outbox_attempts"),
    )
    op.create_index(
        "ix_outbox_status_target_instance_next_attempt_at",
        "outbox",
        ["status", "target_instance", "next_attempt_at"],
    )
    op.create_index("ix_outbox_call_id", "outbox", ["call_id"])

    op.create_table(
        "dead_letters",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("instance", sa.String(63), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("call_id", sa.String(100), nullable=True),
        sa.Column("outbox_id", _ID, nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("resolved_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name="fk_dead_letters_call_id_calls"),
        sa.ForeignKeyConstraint(
            ["outbox_id"], ["outbox.id"], name="fk_dead_letters_outbox_id_outbox"
        ),
        sa.CheckConstraint("stage IN ('map', 'store', 'push')", name="ck_dead_letters_stage"),
        sa.CheckConstraint("status IN ('open', 'resolved')", name="ck_dead_letters_status"),
        sa.CheckConstraint("attempts >= 1", name="ck_dead_letters_attempts"),
    )
    op.create_index("ix_dead_letters_status_instance", "dead_letters", ["status", "instance"])

    op.create_table(
        "audit_log",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("call_id", sa.String(100), nullable=True),
        sa.Column("instance", sa.String(63), nullable=True),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name="fk_audit_log_call_id_calls"),
    )
    op.create_index("ix_audit_log_call_id_id", "audit_log", ["call_id", "id"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])

    _protect_audit_log()


def _protect_audit_log() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION usm_bridge_audit_log_refuse() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{_MESSAGE}: % refused', TG_OP
                    USING ERRCODE = 'restrict_violation';
            END
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION usm_bridge_audit_log_refuse()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION usm_bridge_audit_log_refuse()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}: {event} refused'); END"
            )


def downgrade() -> None:
    # Dropping the store is destructive by design; a downgrade exists for development only.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE audit_log")
        op.execute("DROP FUNCTION usm_bridge_audit_log_refuse()")
    else:
        op.drop_table("audit_log")
    for table in ("dead_letters", "outbox", "cursors", "chain_links", "identities", "calls"):
        op.drop_table(table)
