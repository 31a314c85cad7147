"""Forks between processes resolved to calls: the other record's canonical id, when held.

A mapping reads a fork as the tool's own reference to another record (a ServiceNow sys_id, a
Jira issue key: :mod:`usm_bridge.mapping.forks`). The bridge knows the other record once it
has read it, possibly from another instance of the same unit (ServiceNow incidents and change
requests are two instances of unit ``it``), and possibly only later: records arrive in no
order a cycle can promise. So a fork is resolved both ways:

- :meth:`ForkResolver.resolve`, when a record is stored: each fork whose reference the bridge
  holds gets the other call's id (``ProcessLink.call``) and instance;
- :meth:`ForkResolver.backfill`, after a page: calls stored before with an unresolved fork
  naming one of the page's records get that record's call.

The other record is looked for among the instances of the same tool kind as the record's (a
Jira key means nothing to ServiceNow). A fork is a link *inside* one unit (USM.md, "Forks
between processes"): one naming a record of another unit's instance is not a fork. It stays
unresolved and is audited once as ``fork_refused``, never guessed into a chain link. A
reference held by several calls of the unit is ambiguous and stays unresolved too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from pydantic import JsonValue

from ..config import BridgeConfig
from ..model import Call, ProcessLink
from ..store import Identity, Transaction
from ..store import schema as tables
from ..store.page_state import identities_in
from ..store.page_transaction import note_audit
from ..store.schema import OPEN_FORKS
from .calls import with_changes

__all__ = ["FORK_REFUSED", "ForkRefusal", "ForkResolver"]

log = logging.getLogger(__name__)

#: The audit event of a fork that names a record of another unit.
FORK_REFUSED = "fork_refused"


@dataclass(frozen=True)
class ForkRefusal:
    """A fork naming a record of another unit: not a fork, recorded as an error."""

    ref: str
    via: str | None
    other_call_id: str
    other_unit: str
    other_instance: str

    def detail(self, call: Call) -> dict[str, JsonValue]:
        return {
            "ref": self.ref,
            "via": self.via,
            "other_call_id": self.other_call_id,
            "other_unit": self.other_unit,
            "other_instance": self.other_instance,
            "process": call.process.value if call.process else None,
            "reason": f"the link names a record of unit {self.other_unit!r}, not of "
            f"{call.unit!r}: a fork is a link inside one unit (a link between units is a "
            "route's supplier call)",
        }


class ForkResolver:
    """Resolves forks against the store (see the module docstring)."""

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config

    def _peers(self, instance: str) -> dict[str, str]:
        """The instances whose records a fork read in ``instance`` may name, with their unit."""
        own = self.config.instances.get(instance)
        if own is None:
            return {}
        return {i.name: i.unit for i in self.config.instances.values() if i.kind == own.kind}

    # -- a record as it is stored -------------------------------------------------------------

    def resolve(self, tx: Transaction, call: Call) -> tuple[Call, list[ForkRefusal]]:
        """``call`` with each fork the bridge can resolve resolved (the others unresolved), and
        the forks that name another unit's record."""
        if not call.chain.forks or call.source is None:
            return call, []
        peers = self._peers(call.source.instance)
        source = call.source
        forks: list[ProcessLink] = []
        refused: list[ForkRefusal] = []
        for fork in call.chain.forks:
            found = [
                identity
                for identity in tx.find_identities_by_reference(fork.ref)
                if identity.instance in peers
                and (fork.instance is None or identity.instance == fork.instance)
                and (identity.instance, identity.remote_id) != (source.instance, source.remote_id)
            ]
            mine = sorted(
                {(i.call_id, i.instance) for i in found if peers[i.instance] == call.unit}
            )
            if len({call_id for call_id, _ in mine}) == 1:
                call_id, instance = mine[0]
                forks.append(fork.model_copy(update={"call": call_id, "instance": instance}))
                continue
            forks.append(fork.model_copy(update={"call": None}))
            if len(mine) > 1:
                log.warning("fork %s of %s is ambiguous: %d calls hold it; left unresolved",
                            fork.ref, source.remote_key or source.remote_id, len(mine))  # fmt: skip
            elif found:
                other = found[0]
                other_unit = peers[other.instance]
                refused.append(
                    ForkRefusal(fork.ref, fork.via, other.call_id, other_unit, other.instance)
                )
        if forks == call.chain.forks:
            return call, refused
        chain = call.chain.model_copy(update={"forks": forks})
        return call.model_copy(update={"chain": chain}), refused

    @staticmethod
    def audit_refusals(tx: Transaction, call: Call, refused: Iterable[ForkRefusal]) -> None:
        """Audit each refusal once per (reference, other call): a re-read adds nothing."""
        refused = list(refused)
        if not refused:
            return
        seen = {
            (event.detail.get("ref"), event.detail.get("other_call_id"))
            for event in tx.list_audit(call_id=call.id, kind=FORK_REFUSED)
            if isinstance(event.detail, dict)
        }
        for refusal in refused:
            if (refusal.ref, refusal.other_call_id) in seen:
                continue
            seen.add((refusal.ref, refusal.other_call_id))
            note_audit(
                tx,
                FORK_REFUSED,
                call_id=call.id,
                instance=call.source.instance if call.source else None,
                detail=refusal.detail(call),
            )
            log.warning("call %s: fork to %s refused (a record of unit %s)",
                        call.id, refusal.ref, refusal.other_unit)  # fmt: skip

    # -- records that arrive after the calls naming them ---------------------------------------

    def backfill(self, tx: Transaction, instance: str, call_ids: Iterable[str]) -> int:
        """Resolve the unresolved forks of stored calls that name a record of ``call_ids``
        (calls just stored from ``instance``); how many calls changed.

        Two queries per page, not per record: the calls holding an unresolved fork, then (only
        when there are any: a backfill's pages mostly find none) the page's identities.
        """
        peers = self._peers(instance)
        if not peers:
            return 0
        unresolved = _with_unresolved_forks(tx)
        if not unresolved:
            return 0
        targets: dict[str, Identity] = {}
        for identity in identities_in(tx.connection, instance, list(call_ids)):
            targets[identity.remote_id] = identity
            if identity.remote_key:
                targets.setdefault(identity.remote_key, identity)
        if not targets:
            return 0
        changed = 0
        for call in unresolved:
            if call.source is None or call.source.instance not in peers:
                continue
            forks: list[ProcessLink] = []
            refused: list[ForkRefusal] = []
            for fork in call.chain.forks:
                target = targets.get(fork.ref) if fork.call is None else None
                if (
                    target is None
                    or target.call_id == call.id
                    or (fork.instance is not None and fork.instance != target.instance)
                ):
                    forks.append(fork)
                elif peers[instance] == call.unit:
                    forks.append(
                        fork.model_copy(update={"call": target.call_id, "instance": instance})
                    )
                else:
                    forks.append(fork)
                    refused.append(ForkRefusal(fork.ref, fork.via, target.call_id,
                                               peers[instance], instance))  # fmt: skip
            self.audit_refusals(tx, call, refused)
            if forks != call.chain.forks:
                chain = call.chain.model_copy(update={"forks": forks})
                tx.upsert_call(with_changes(call, chain=chain), instance=call.source.instance)
                changed += 1
        return changed


def _with_unresolved_forks(tx: Transaction) -> list[Call]:
    """The stored calls holding a fork not resolved yet: those the store flags ``open_forks``
    (read through the partial index of those rows alone), each checked on the model itself."""
    calls = tables.calls
    rows = tx.connection.execute(sa.select(calls.c.id).where(OPEN_FORKS))
    out = []
    for (call_id,) in rows.all():
        stored = tx.get_call(call_id)
        if stored is not None and any(fork.call is None for fork in stored.call.chain.forks):
            out.append(stored.call)
    return out
