"""Replaying a real ServiceNow incident event log into the simulator.

The log (``data/servicenow-incident-event-log.csv``, UCI data set 498, CC BY 4.0; see
``data/ATTRIBUTION.md``) holds one row per update of an incident. Played in the order the
instance made the changes (``sys_updated_at``, file order among equal times), the first row of
an incident creates it and the others update it, with the real states, waiting reasons and
impact / urgency / priority mix, so reads meet what a real service desk produces: bursts of
changes within one minute, records reopened, reasons a default mapping does not foresee.

The log is history, so rows are stored as they were (no business rules; the log's own times as
``sys_created_on`` / ``sys_updated_on``). Its states use the older labels; they become the
current codes: "Active" is 2 In Progress, each "Awaiting ..." is 3 On Hold with its reason
("Awaiting Evidence" is not a default reason: it is added as the instance's own choice 6).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Final

from .server import TIME_FORMAT, ServiceNowSimulator
from .tables import TABLES

__all__ = ["DATA_FILE", "EventLogReplay", "load_events"]

DATA_FILE: Final = "servicenow-incident-event-log.csv"
_STATES: Final = {
    "New": ("1", ""),
    "Active": ("2", ""),
    "Awaiting User Info": ("3", "1"),
    "Awaiting Problem": ("3", "3"),
    "Awaiting Vendor": ("3", "4"),
    "Awaiting Evidence": ("3", "6"),
    "Resolved": ("6", ""),
    "Closed": ("7", ""),
}
_REFERENCES: Final = {
    "caller_id": "sys_user",
    "opened_by": "sys_user",
    "assigned_to": "sys_user",
    "resolved_by": "sys_user",
    "assignment_group": "sys_user_group",
    "location": "cmn_location",
    "cmdb_ci": "cmdb_ci",
}
_PLAIN: Final = (
    "category",
    "subcategory",
    "u_symptom",
    "contact_type",
    "notify",
    "vendor",
    "reassignment_count",
    "reopen_count",
    "sys_mod_count",
)
_FLAGS: Final = ("active", "made_sla", "knowledge", "u_priority_confirmation")


def load_events(path: Path | str | None = None) -> list[dict[str, str]]:
    """The log's rows in the order the instance made them."""
    if path is None:
        source = resources.files("usm_bridge_servicenow") / "data" / DATA_FILE
        text = source.read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    return sorted(rows, key=lambda row: _when(row["sys_updated_at"]))  # stable: file order kept


def _when(text: str) -> str:
    """``29-02-2016 01:16`` as ``2016-02-29 01:16:00``; empty for ``?``."""
    text = text.strip()
    if not text or text == "?":
        return ""
    for fmt in ("%d-%m-%Y %H:%M", "%d-%m-%Y %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).strftime(TIME_FORMAT)
        except ValueError:
            continue
    return ""


def _code(text: str) -> str:
    """``2 - Medium`` -> ``2``."""
    return text.split(" - ", 1)[0].strip() if text and text != "?" else ""


def _sys_id(*parts: str) -> str:
    return hashlib.md5("/".join(parts).encode(), usedforsecurity=False).hexdigest()


class EventLogReplay:
    """Plays the log's events into a simulator, all at once or a number at a time."""

    def __init__(self, sim: ServiceNowSimulator, events: list[dict[str, str]] | None = None):
        self.sim = sim
        self.events = events if events is not None else load_events()
        self.position = 0
        self._ids: dict[str, str] = {}
        with sim.lock:
            known = {
                r["value"]
                for r in sim.tables["sys_choice"].records.values()
                if r["name"] == "incident" and r["element"] == "hold_reason"
            }
        if "6" not in known:
            sim.add_choice("incident", "hold_reason", "6", "Awaiting Evidence", 9)

    def __len__(self) -> int:
        return len(self.events)

    @property
    def done(self) -> bool:
        """Whether every event was played."""
        return self.position >= len(self.events)

    def play(self, count: int | None = None) -> list[str]:
        """Play the next ``count`` events (all that are left when ``None``).

        :returns: the sys_ids of the incidents they created or changed, in order.
        """
        end = len(self.events) if count is None else min(len(self.events), self.position + count)
        touched = []
        for row in self.events[self.position : end]:
            touched.append(self._apply(row))
        self.position = end
        return touched

    def __iter__(self) -> Iterator[str]:
        while not self.done:
            yield from self.play(1)

    def incident_id(self, number: str) -> str | None:
        """The sys_id of the incident with ``number``, once created."""
        return self._ids.get(number)

    def _reference(self, table: str, name: str) -> str:
        if not name or name == "?":
            return ""
        sys_id = _sys_id(table, name)
        if self.sim.get(table, sys_id) is None:
            record = {**TABLES[table].defaults, "sys_id": sys_id, "name": name}
            if table == "sys_user":
                record["user_name"] = name.lower().replace(" ", ".")
            self.sim.put_raw(table, record)
        return sys_id

    def _apply(self, row: dict[str, str]) -> str:
        number = row["number"]
        sys_id = self._ids.setdefault(number, _sys_id("incident", number))
        current = self.sim.get("incident", sys_id)
        record = dict(current) if current is not None else dict(TABLES["incident"].defaults)
        state, hold = _STATES.get(row["incident_state"], ("2", ""))
        record.update(
            sys_id=sys_id,
            number=number,
            sys_class_name="incident",
            state=state,
            hold_reason=hold,
            impact=_code(row["impact"]),
            urgency=_code(row["urgency"]),
            priority=_code(row["priority"]),
            opened_at=_when(row["opened_at"]),
            sys_created_on=_when(row["sys_created_at"]) or _when(row["opened_at"]),
            sys_created_by=row["sys_created_by"],
            sys_updated_on=_when(row["sys_updated_at"]),
            sys_updated_by=row["sys_updated_by"],
            short_description=f"{row['category']} / {row['subcategory']}",
            close_code=row["closed_code"]
            if state in {"6", "7"} and row["closed_code"] != "?"
            else "",
            resolved_at=_when(row["resolved_at"]) if state in {"6", "7"} else "",
            closed_at=_when(row["closed_at"]) if state == "7" else "",
        )
        for name in _PLAIN:
            value = row.get(name, "")
            record[name] = "" if value == "?" else value
        for name in _FLAGS:
            record[name] = "true" if row.get(name, "").upper() == "TRUE" else "false"
        for name, table in _REFERENCES.items():
            record[name] = self._reference(table, row.get(name, ""))
        for name, table in (("problem_id", "problem"), ("rfc", "change_request")):
            value = row.get(name, "?")
            record[name] = "" if value == "?" else self._task_reference(table, value)
        self.sim.put_raw("incident", record)
        return sys_id

    def _task_reference(self, table: str, label: str) -> str:
        sys_id = _sys_id(table, label)
        if self.sim.get(table, sys_id) is None:
            spec = TABLES[table]
            self.sim.put_raw(
                table,
                {
                    **spec.defaults,
                    "sys_id": sys_id,
                    "number": label,
                    "short_description": label,
                    "sys_class_name": table,
                },
            )
        return sys_id
