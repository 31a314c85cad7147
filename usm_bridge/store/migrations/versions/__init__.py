"""Alembic revisions of the store, oldest first (Alembic skips this file)."""
