"""Whether a closed incident counts as confirmed, and in which way (``data.incident-confirmation``).

USM closes an incident only once its customer confirmed the service is resumed. A tool shows
either an explicit confirmation (the customer's own close or transition, a confirming reply)
or an implicit one (a close after N days by the tool's job or an automation): the implicit one
counts only where the call's agreement allows implicit confirmation
(:meth:`usm_bridge.agreements.Agreements.implicit_confirmation_after`). A call whose tool
recorded the canonical ``confirmed`` status or time without saying how counts as explicit: a
tool that has that status is told it by a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..agreements import Agreements
from ..call_view import CallView
from ..model import ConfirmationKind, Status
from .context import ReportContext

__all__ = ["ConfirmationVerdict", "Standing", "agreements_of", "confirmation_verdict"]


class ConfirmationVerdict(StrEnum):
    """How a closed call stands; the names are the check's metrics."""

    EXPLICIT = "explicit"
    IMPLICIT_ALLOWED = "implicit_allowed"
    IMPLICIT_NOT_ALLOWED = "implicit_not_allowed"
    NONE = "none"


@dataclass(frozen=True)
class Standing:
    """A closed call's verdict, and the finding's words when it is not confirmed."""

    kind: ConfirmationVerdict
    finding: str | None = None


def agreements_of(context: ReportContext) -> Agreements:
    """The report's registry; an empty one (no agreement allows anything) when it has none."""
    if context.agreements is not None:
        return context.agreements
    return Agreements(
        services={}, agreements={}, units=context.units, default_matrix=context.priority
    )


def confirmation_verdict(
    context: ReportContext, agreements: Agreements, call: CallView
) -> Standing:
    """The verdict for one closed call (see the module docstring)."""
    found = call.confirmation
    if found is None:
        if call.confirmed is not None or any(
            move.after is Status.CONFIRMED for move in context.transitions_of(call.id)
        ):
            return Standing(ConfirmationVerdict.EXPLICIT)
        return Standing(ConfirmationVerdict.NONE, "closed without any confirmation")
    if found.kind is ConfirmationKind.EXPLICIT:
        return Standing(ConfirmationVerdict.EXPLICIT)
    if agreements.implicit_confirmation_after(call) is not None:
        return Standing(ConfirmationVerdict.IMPLICIT_ALLOWED)
    agreement = agreements.agreement_of(call)
    if agreement is not None:
        under = f"agreement {agreement.id!r}"
    elif call.agreement is not None:
        under = f"agreement {call.agreement!r}, not registered"
    else:
        under = "no agreement"
    how = f": {found.how}" if found.how else ""
    return Standing(
        ConfirmationVerdict.IMPLICIT_NOT_ALLOWED,
        f"closed automatically where the agreement does not allow implicit confirmation "
        f"({under}){how}",
    )
