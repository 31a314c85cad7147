"""A ServiceNow instance on loopback, faithful to the Table API the connector uses.

``python -m usm_bridge_servicenow.simulator --port 8080 --seed-records 50 --replay`` runs one on
its own and prints its base URL and the credentials it accepts; tests start one in-process::

    with ServiceNowSimulator() as sim:
        sim.insert("incident", {"short_description": "Printer on fire"})
        ...  # point a client at sim.base_url with sim.username / sim.password
"""

from __future__ import annotations

from .ratelimit import RateLimitRule
from .replay import EventLogReplay, load_events
from .server import ServiceNowSimulator, SimClock, SimFault, SimulatorError

__all__ = [
    "EventLogReplay",
    "RateLimitRule",
    "ServiceNowSimulator",
    "SimClock",
    "SimFault",
    "SimulatorError",
    "load_events",
]
