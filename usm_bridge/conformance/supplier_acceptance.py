"""``data.supplier-acceptance``: no supplier call stays ``fulfilled`` forever.

Every chain link closes (issue 16): a supplier call its customer accepted is confirmed and
closed (:mod:`usm_bridge.sync.closure`). One still ``fulfilled`` after its agreement's
implicit confirmation term has waited for its customer's acceptance longer than agreed: the
customer neither moved on nor came back to it, or the bridge could not close it. Where no
agreement agrees a term, :data:`DEFAULT_WAIT` is the measure, and the finding says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from ..agreements import Agreements
from ..call_view import CallView
from ..durations import spell_span
from ..model import Status
from .call_feeds import UnitTally
from .call_rows import with_customer_unit
from .checks import _DataCheck
from .context import ReportContext

__all__ = ["DEFAULT_WAIT", "SupplierAcceptanceCheck"]

#: How long a fulfilled supplier call may wait for its customer without an agreed term: the
#: working week plus a weekend a customer unit can take to look at delivered work.
DEFAULT_WAIT = timedelta(days=7)


def _fulfilled_since(context: ReportContext, call: CallView) -> datetime:
    """When the call last became fulfilled: its last observed move there, else the tool's
    fulfilment time, else its last update."""
    moves = [m.at for m in context.transitions_of(call.id) if m.after is Status.FULFILLED]
    return moves[-1] if moves else call.fulfilled or call.updated


class SupplierAcceptanceCheck(_DataCheck):
    """Fulfilled supplier calls wait for their customer's acceptance no longer than their
    agreement's implicit confirmation term (else :data:`DEFAULT_WAIT`)."""

    id = "data.supplier-acceptance"
    title = "Fulfilled supplier calls are accepted in time"
    clean = "no fulfilled supplier call waits beyond its term"
    items = "fulfilled supplier calls"
    severity = "medium"

    def _terms(self, context: ReportContext, call: CallView) -> tuple[timedelta, str]:
        """The term for ``call`` and where it comes from, in words."""
        customer = call.customer_unit
        if customer is None:
            link = context.link_of(call.id)
            upstream = context.call(link.upstream_call_id) if link is not None else None
            customer = upstream.unit if upstream is not None else None
        with_customer = with_customer_unit(call, customer)
        agreements = context.agreements or Agreements(
            services={}, agreements={}, units=context.units, default_matrix=context.priority
        )
        term = agreements.implicit_confirmation_after(with_customer)
        agreement = agreements.agreement_of(with_customer)
        if term is not None and agreement is not None:
            return term, f"agreement {agreement.id}'s implicit confirmation term"
        return DEFAULT_WAIT, "the default (no agreement with an implicit confirmation term)"

    def tests(self, context: ReportContext, call: CallView) -> bool:
        return call.status is Status.FULFILLED and context.link_of(call.id) is not None

    def findings(
        self, context: ReportContext, calls: list[CallView]
    ) -> Iterator[tuple[CallView, str]]:
        for call in calls:
            if self.tests(context, call):
                found = self._finding(context, call)
                if found:
                    yield call, found

    def judge_calls(self, context: ReportContext, calls: list[CallView], tally: UnitTally) -> bool:
        # findings() and the population in one pass: tests() asked once per call, its cheap
        # half first (few calls are fulfilled).
        keep, fulfilled, tested = self.keeper(context, tally), Status.FULFILLED, 0
        for call in calls:
            if call.status is not fulfilled or context.link_of(call.id) is None:
                continue
            tested += 1
            found = self._finding(context, call)
            if found:
                keep(call, found)
        tally.population += tested
        return True

    def _finding(self, context: ReportContext, call: CallView) -> str:
        """What is wrong with a call :meth:`tests` accepts ("" nothing)."""
        term, source = self._terms(context, call)
        since = _fulfilled_since(context, call)
        waited = context.now - since
        if waited <= term:
            return ""
        return (
            f"fulfilled since {since:%Y-%m-%d %H:%M} UTC, {spell_span(waited)} without its "
            f"customer's acceptance; {source} is {spell_span(term)}"
        )

    def summary(self, found: int, total: int) -> str:
        return f"{found} fulfilled supplier call(s) waiting beyond their term"
