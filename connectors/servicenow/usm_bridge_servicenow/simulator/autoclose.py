"""The instance's incident auto-close: resolved incidents close after N days without an update.

ServiceNow's base system closes a resolved incident automatically once it has not been updated
for ``glide.ui.autoclose.time`` days (the "incident autoclose" business rule, run by a
scheduled job; ServiceNow's "Configure incidents to close automatically" and KB0552820: any
update resets the count). The job runs as the ``system`` user, so the closing update's
``sys_updated_by`` is ``system``; the base script records the resolver as ``closed_by`` and
adds the comment "Incident automatically closed after N days in the Resolved state.". That is
what tells an automatic close from the caller's own (``closed_by`` is then the caller).

The simulator runs the job whenever it is asked anything (and on :meth:`run`), against its own
clock, so a test moves the clock on instead of sleeping.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .server import ServiceNowSimulator

__all__ = ["SYSTEM_USER", "AutoClose"]

#: Who a scheduled job's updates are by.
SYSTEM_USER: Final = "system"
_RESOLVED, _CLOSED = "6", "7"
_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"


class AutoClose:
    """The auto-close job of one simulated instance.

    :param days: ``glide.ui.autoclose.time``; ``None`` or 0 switches auto-close off (the
        simulator's default, so that nothing closes behind a test's back).
    """

    def __init__(self, days: float | None = None) -> None:
        self.days = days

    def comment(self) -> str:
        shown = f"{self.days:g}" if self.days is not None else "0"
        return f"Incident automatically closed after {shown} days in the Resolved state."

    def run(self, sim: ServiceNowSimulator) -> list[str]:
        """Close every incident resolved and not updated for ``days``; their sys_ids."""
        if not self.days or self.days <= 0:
            return []
        cutoff = (sim.clock.now() - timedelta(days=self.days)).strftime(_TIME_FORMAT)
        closed: list[str] = []
        with sim.lock:
            records = sim.table("incident").records
            due = [
                sys_id
                for sys_id, record in records.items()
                if record.get("state") == _RESOLVED and record.get("sys_updated_on", "") <= cutoff
            ]
            for sys_id in due:
                resolver = records[sys_id].get("resolved_by", "")
                sim.update(
                    "incident",
                    sys_id,
                    {"state": _CLOSED, "comments": self.comment()},
                    user=SYSTEM_USER,
                )
                # The base script's own line: the closer is the resolver, not the system user.
                records[sys_id]["closed_by"] = resolver
                closed.append(sys_id)
        return closed
