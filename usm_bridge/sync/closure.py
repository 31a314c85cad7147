"""Every link closes: a supplier call its customer accepted is confirmed, then closed.

USM's lifecycle ends ``fulfilled -> confirmed -> closed``: the provider's work counts once the
customer confirmed it. Along a chain the customer of a supplier call is the upstream call's
unit, so the bridge confirms a delivered supplier call when that call accepts it
(:mod:`.acceptance`), and closes every chained call once it is confirmed (the top of the chain
too, whose own customer confirms it in its tool). Each cycle of an instance runs one pass over
that instance's records (:meth:`Closure.run`), also when the read brought nothing: an implicit
acceptance is a matter of time, not of news. "Now" is the engine's clock.

What the tool is given follows its mapping, through the outbox like every write (decided in
the unit of work that stores the decision, so a crash loses or repeats nothing):

- a tool with a status for ``confirmed`` (one its mapping reads back as confirmed) is written
  ``confirmed``; the call is closed in a later pass, once that write is done, so the tool sees
  both moves in order;
- a tool without one (Jira Service Management's shipped mapping writes ``confirmed`` as
  *Closed*; the memory tool of the tests) has nothing to show between the two: the call
  moves ``confirmed -> closed`` at once in the store, the tool is written ``closed``, and an
  internal note on the record says the confirmation is the bridge's record;
- a call its tool already ended (ServiceNow's requested item: *Closed Complete* is the end of
  fulfilment, read as ``closed``) keeps its status: a move back to ``confirmed`` would be
  illegal and is a write the tool would refuse. The confirmation is recorded on the call and
  an internal note says so.

Each acceptance is audited (``link_accepted``, with its kind, the customer's call and the
evidence); the status moves are audited by the store as the closure's (actor ``closure``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from ..agreements import Agreements
from ..config import BridgeConfig
from ..model import Call, Status
from ..store import OutboxStatus, Store, StoreConflictError, Transaction
from ..store.scale_queries import closure_candidates
from .acceptance import DELIVERED, Acceptance, acceptance_of
from .call_labels import call_label
from .calls import with_changes
from .router import RouteOutcome, Router

__all__ = ["ACTOR", "Closure", "Shows"]

log = logging.getLogger(__name__)

#: The audit actor of the closure's moves.
ACTOR = "closure"
#: The canonical statuses an instance's tool can show (``None``: unknown, assume all).
Shows = Callable[[str], frozenset[Status] | None]


def _key(call: Call) -> str:
    """The call as people know it: its tool's key, else its canonical id."""
    if call.source is not None:
        return call.source.remote_key or call.source.remote_id
    return call.id


class Closure:
    """Confirms accepted supplier calls and closes confirmed chained calls (module docstring)."""

    def __init__(
        self,
        config: BridgeConfig,
        store: Store,
        router: Router,
        *,
        shows: Shows,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.router = router
        self.agreements = Agreements.of(config)
        self._shows = shows
        self._clock = clock

    def run(self, instance: str, *, stop: threading.Event | None = None) -> RouteOutcome:
        """One pass over ``instance``'s chained records; what it asked to write."""
        out = RouteOutcome()
        with self.store.begin(readonly=True) as tx:
            due = [
                (call_id, remote_id)
                for call_id, remote_id in closure_candidates(tx, instance)
                if self._due(tx, call_id)
            ]
        for call_id, remote_id in due:
            if stop is not None and stop.is_set():
                break
            try:
                with self.store.begin() as tx:
                    # As the ingest stage does: the chain's calls, then decide on them as they are.
                    tx.lock_chain(instance, remote_id)
                    self._settle(tx, call_id, out)
            except StoreConflictError as exc:  # another cycle changed the chain: next pass
                log.info("closing %s waits for the next cycle: %s", call_id, exc)
        return out

    # -- deciding ------------------------------------------------------------------------------

    def term_of(self, supplier: Call, upstream: Call) -> timedelta | None:
        """The agreement's implicit confirmation term for the link; the customer is the
        supplier call's ``customer_unit``, else its upstream call's unit."""
        if supplier.customer_unit is None:
            supplier = supplier.model_copy(update={"customer_unit": upstream.unit})
        return self.agreements.implicit_confirmation_after(supplier)

    def _acceptance(self, tx: Transaction, supplier: Call) -> tuple[Call, Acceptance] | None:
        link = tx.upstream_of(supplier.id)
        stored = tx.get_call(link.upstream_call_id) if link is not None else None
        if stored is None:
            return None
        upstream = stored.call
        found = acceptance_of(
            tx,
            supplier,
            upstream,
            term=self.term_of(supplier, upstream),
            now=self._clock(),
            customer_label=_key(upstream),
        )
        return None if found is None else (upstream, found)

    @staticmethod
    def _writes_pending(tx: Transaction, call: Call) -> bool:
        return bool(tx.list_outbox(call_id=call.id, status=OutboxStatus.PENDING))

    def _closable(self, tx: Transaction, call: Call) -> bool:
        """A confirmed chained call whose writes are all made (its confirmation is in its tool)."""
        return (
            call.status is Status.CONFIRMED
            and (tx.upstream_of(call.id) is not None or bool(tx.suppliers_of(call.id)))
            and not self._writes_pending(tx, call)
        )

    def _due(self, tx: Transaction, call_id: str) -> bool:
        stored = tx.get_call(call_id)
        if stored is None:
            return False
        call = stored.call
        if call.status in DELIVERED:
            # A closed supplier stays a candidate (its tool may have ended it unaccepted):
            # once its confirmation is recorded there is nothing more to look up.
            return call.confirmation is None and self._acceptance(tx, call) is not None
        return self._closable(tx, call)

    # -- acting --------------------------------------------------------------------------------

    def _settle(self, tx: Transaction, call_id: str, out: RouteOutcome) -> None:
        stored = tx.get_call(call_id)
        if stored is None:
            return
        call = stored.call
        if self._closable(tx, call):
            self._close(tx, call, out)
            return
        if call.status not in DELIVERED:
            return
        accepted = self._acceptance(tx, call)
        if accepted is not None:
            self._confirm(tx, call, *accepted, out)

    def _confirm(
        self, tx: Transaction, supplier: Call, upstream: Call, acceptance: Acceptance,
        out: RouteOutcome,
    ) -> None:  # fmt: skip
        now = self._clock()
        home = self.router.home_instance(tx, supplier)
        by = (
            acceptance.by.name or acceptance.by.email or acceptance.by.ref
            if acceptance.by
            else None
        )
        tx.append_audit(
            "link_accepted",
            call_id=supplier.id,
            instance=home,
            actor=ACTOR,
            after={"confirmation": acceptance.kind.value},
            detail={
                "kind": acceptance.kind.value,
                "customer_call_id": upstream.id,
                "customer_unit": upstream.unit,
                "by": by,
                "how": acceptance.how,
            },
        )
        confirmed = with_changes(supplier, confirmation=acceptance.confirmation(now), confirmed=now)
        who = f" by {by}" if by else ""
        said = f"Confirmed ({acceptance.kind.value}){who} for {upstream.unit}: {acceptance.how}."
        log.info("%s accepted by %s (%s)", call_label(tx, supplier.id),
                 call_label(tx, upstream.id), acceptance.kind.value)  # fmt: skip
        if supplier.status is Status.CLOSED:
            self.router.save(tx, confirmed, out, actor=ACTOR)
            self.router.note(
                tx, confirmed, f"{said} The tool had already closed this record at fulfilment: "
                "the confirmation is kept by usm-bridge.", key=f"confirmed:{now.isoformat()}",
                out=out,
            )  # fmt: skip
            return
        confirmed = with_changes(confirmed, status=Status.CONFIRMED, waiting_on=None)
        self.router.save(tx, confirmed, out, actor=ACTOR)
        shows = self._shows(home) if home is not None else None
        if shows is None or Status.CONFIRMED in shows:
            return  # closed by a later pass, once the tool holds the confirmation
        self.router.note(
            tx, confirmed, f"{said} This tool has no status for confirmed: usm-bridge keeps "
            "the confirmation and closes the record.", key=f"confirmed:{now.isoformat()}",
            out=out,
        )  # fmt: skip
        self._close(tx, confirmed, out)

    def _close(self, tx: Transaction, call: Call, out: RouteOutcome) -> None:
        closed = with_changes(call, status=Status.CLOSED, waiting_on=None, closed=self._clock())
        self.router.save(tx, closed, out, actor=ACTOR)
        log.info("%s closed after its confirmation", call_label(tx, call.id))
