"""A Jira simulator on loopback, Cloud and Data Center flavours, faithful to the documented API.

Tests, the demo and admins trying a mapping use it instead of a real site::

    from usm_bridge_jira.simulator import JiraSimulator

    with JiraSimulator("cloud") as sim:
        sim.site.seed(10)
        settings = {"base_url": sim.base_url, "projects": ["IT"], **sim.credentials()}

or on its own: ``python -m usm_bridge_jira.simulator --port 8080 --flavour cloud
--seed-issues 50``.
"""

from __future__ import annotations

from .attachments import Attachment
from .replies import NotJson
from .server import JiraSimulator, SimFault
from .state import CLOUD_EMAIL, CLOUD_TOKEN, DC_TOKEN, Flavour, Issue, JiraSite, Reply, SimClock

__all__ = [
    "CLOUD_EMAIL",
    "CLOUD_TOKEN",
    "DC_TOKEN",
    "Attachment",
    "Flavour",
    "Issue",
    "JiraSimulator",
    "JiraSite",
    "NotJson",
    "Reply",
    "SimClock",
    "SimFault",
]
