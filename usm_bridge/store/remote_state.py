"""Remote states: the last known content of each remote record, as an outbound draft.

The base of the sync engine's three-way merge (:mod:`usm_bridge.sync.merge`): what the tool
held when the bridge last read the record, updated with every write the bridge made since.
These functions work inside a unit of work (:class:`~usm_bridge.store.Transaction`).
"""

from __future__ import annotations

import sqlalchemy as sa

from usm_bridge.connector import RemoteDraft
from usm_bridge.model import utcnow
from usm_bridge.store.schema import remote_states
from usm_bridge.store.store import Transaction

__all__ = ["get_remote_state", "set_remote_state"]

_of_record = (
    remote_states.c.instance == sa.bindparam("b_instance"),
    remote_states.c.remote_id == sa.bindparam("b_remote_id"),
)
_SELECT_DRAFT = sa.select(remote_states.c.draft).where(*_of_record)
_UPDATE_STATE = sa.update(remote_states).where(*_of_record)
_INSERT_STATE = sa.insert(remote_states)


def get_remote_state(tx: Transaction, instance: str, remote_id: str) -> RemoteDraft | None:
    """The draft the record is known to hold, or ``None`` when the bridge knows none."""
    row = tx.connection.execute(
        _SELECT_DRAFT, {"b_instance": instance, "b_remote_id": remote_id}
    ).first()
    return None if row is None else RemoteDraft.model_validate(row.draft)


def set_remote_state(tx: Transaction, instance: str, remote_id: str, draft: RemoteDraft) -> None:
    """Record ``draft`` as what the record holds now (insert or replace)."""
    values = {"draft": draft.model_dump(mode="json"), "updated_at": utcnow()}
    updated = tx.connection.execute(
        _UPDATE_STATE, {"b_instance": instance, "b_remote_id": remote_id, **values}
    )
    if updated.rowcount == 0:
        tx.connection.execute(
            _INSERT_STATE, {"instance": instance, "remote_id": remote_id, **values}
        )
