"""What ``usm-bridge demo`` needs beyond the core, and the message naming what is missing.

The demo's tools are the connectors' own simulators and a local SMTP server: the core does not
depend on them (an admin installs only the connectors a site uses), so the demo checks for them
before it starts anything and names the distributions to install, not the modules.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

__all__ = ["DEMO_NEEDS", "DemoNeed", "missing_demo_needs", "missing_needs_message"]


@dataclass(frozen=True)
class DemoNeed:
    """One distribution the demo needs, the module that shows it is installed, and its part."""

    distribution: str
    module: str
    role: str


DEMO_NEEDS = (
    DemoNeed("usm-bridge-email", "usm_bridge_email", "HR's mailbox connector"),
    DemoNeed("usm-bridge-jira", "usm_bridge_jira", "Facilities' Jira connector and simulator"),
    DemoNeed(
        "usm-bridge-servicenow",
        "usm_bridge_servicenow",
        "IT's ServiceNow connector and simulator",
    ),
    DemoNeed("aiosmtpd", "aiosmtpd", "the local mail server"),
)


def missing_demo_needs() -> list[DemoNeed]:
    """The demo's needs that this environment cannot import, in :data:`DEMO_NEEDS` order."""
    return [need for need in DEMO_NEEDS if importlib.util.find_spec(need.module) is None]


def missing_needs_message(missing: list[DemoNeed]) -> str:
    """One line naming each missing distribution, its part in the demo, and how to install."""
    parts = ", ".join(f"{need.distribution} ({need.role})" for need in missing)
    names = " ".join(need.distribution for need in missing)
    return (
        f"the demo needs {parts}, not installed here: pip install {names} "
        "(in a source checkout, 'make demo' installs everything)"
    )
