"""Alembic environment: runs the migrations on the connection the store hands over.

There is no ``alembic.ini`` and no URL here: the store builds the Alembic configuration in code
and passes an open connection (already inside its transaction) as
``config.attributes["connection"]``, so a password never travels through Alembic's
configuration and a second process opening the same store waits for the first to finish.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from usm_bridge.store.schema import VERSION_TABLE, in_dialect, metadata


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "usm-bridge migrations run through usm_bridge.store.Store (usm-bridge db upgrade), "
            "not the alembic CLI"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=in_dialect(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


_run()
