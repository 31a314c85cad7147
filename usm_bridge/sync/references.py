"""A call naming a service or agreement the config does not register: told once, not accepted
silently.

USM: every call is made under an agreement, for a service of its provider. A tool's value that
the registry does not know (a misspelt service, an agreement of another unit) is still stored
(nothing a tool says is dropped), but the audit log gets one ``unknown_reference`` event per
call and value, so an admin sees it as it arrives; the conformance report lists every such call
(``data.service-agreement``). A value read again on the next cycle is not told again.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..agreements import Agreements
from ..config import RouteConfig
from ..model import Call
from ..service_routes import reference_problems
from ..store import Transaction
from ..store.page_transaction import note_audit

__all__ = ["UNKNOWN_REFERENCE", "audit_unknown_references"]

#: The audit event's kind.
UNKNOWN_REFERENCE = "unknown_reference"


def audit_unknown_references(
    tx: Transaction, call: Call, registry: Agreements, routes: Iterable[RouteConfig]
) -> int:
    """Append an event for each reference of ``call`` not yet told for its current value
    (:func:`~usm_bridge.service_routes.reference_problems`).

    :returns: how many events were appended.
    """
    problems = reference_problems(registry, call, routes)
    if not problems:
        return 0
    told = {
        (event.detail.get("field"), event.detail.get("value"))
        for event in tx.list_audit(call_id=call.id, kind=UNKNOWN_REFERENCE)
        if isinstance(event.detail, dict)
    }
    appended = 0
    for field, reason in problems:
        value = call.service if field == "service" else call.agreement
        if (field, value) in told:
            continue
        note_audit(
            tx,
            UNKNOWN_REFERENCE,
            call_id=call.id,
            instance=call.source.instance if call.source else None,
            detail={"field": field, "value": value, "reason": reason},
        )
        appended += 1
    return appended
