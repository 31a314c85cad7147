"""A confirmation, once stored, is history: a later read that no longer shows it keeps it.

Tools show a confirmation on the change that closed the call, and a later change may hide it:
in ServiceNow's event log the closing row names the auto-close job, and a work note added a
week later names the agent who added it; a tool whose mapping reads no confirmation at all
never shows one the bridge recorded. Either way the customer's acceptance happened and stays
true while the call stays fulfilled, confirmed or closed (the bridge may record a confirmation
before the tool moves on); a reopen (any earlier status) ends it, because the customer then
said the service is not resumed after all.
"""

from __future__ import annotations

from ..model import Call, Status
from .calls import with_values_of

__all__ = ["keep_confirmation"]

_DONE = frozenset({Status.FULFILLED, Status.CONFIRMED, Status.CLOSED})


def keep_confirmation(read: Call, stored: Call) -> Call:
    """The call as read, with the stored confirmation where the read shows none and nothing
    undid it (see the module docstring)."""
    if read.confirmation is not None or stored.confirmation is None:
        return read
    if read.status not in _DONE:
        return read  # reopened: the acceptance no longer holds
    return with_values_of(read, {"confirmation": stored.confirmation})
