"""Storing a freshly mapped call: the step between the mapping and the store.

A mapping knows the tool's record, not the bridge's history: every mapped call gets a fresh
canonical id and no chain links. When the remote record is already known, the stored call's id
and chain links are kept, so re-reading a record updates its call instead of creating another.
The sync engine and ``dead-letters retry`` both go through here.
"""

from __future__ import annotations

from .model import Call
from .store import Transaction, UpsertResult

__all__ = ["store_mapped_call"]


def store_mapped_call(tx: Transaction, call: Call, *, instance: str) -> UpsertResult:
    """Upsert ``call`` under the canonical id its remote record already has, if any.

    The same as ``tx.find_call`` of the call's source followed by ``tx.upsert_call`` of the call
    with the found call's id and chain links; the store does both in fewer statements.
    """
    return tx._store_mapped_call(call, instance=instance)
