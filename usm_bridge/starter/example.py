"""The enterprise the starter config describes: HR on a mailbox, Facilities on Jira Service
Management, IT on ServiceNow, and the routes HR -> Facilities -> IT.

The values are plausible examples; every secret is an environment reference, so the file can
be checked (``usm-bridge check --offline``) once those variables are set, and the mapping files
are the shipped ones, which ``init`` copies into :data:`MAPPINGS_FOLDER` beside the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["EXAMPLE_ROUTES", "EXAMPLE_UNITS", "MAPPINGS_FOLDER", "ExampleRoute", "ExampleUnit"]

#: The folder, beside the config, that ``init`` copies the shipped mappings into and that the
#: starter's ``mapping`` paths name.
MAPPINGS_FOLDER = "mappings"


@dataclass(frozen=True)
class ExampleUnit:
    """One unit of the example with its one connector instance."""

    name: str
    title: str
    about: str
    kind: str
    instance: str
    #: The name of a shipped mapping file (found in :data:`MAPPINGS_FOLDER`).
    mapping: str
    settings: dict[str, Any]
    allowed_domains: list[str] = field(default_factory=list)

    @property
    def mapping_path(self) -> str:
        return f"{MAPPINGS_FOLDER}/{self.mapping}"


@dataclass(frozen=True)
class ExampleRoute:
    """A route of the example, with the reason it exists."""

    from_unit: str
    to_unit: str
    when: dict[str, Any]
    about: str


EXAMPLE_UNITS = (
    ExampleUnit(
        name="hr",
        title="Human Resources",
        about="HR: the shared mailbox hr@example.com, read over IMAP, answered through SMTP.",
        kind="email",
        instance="hr-mail",
        mapping="email-service-desk.yaml",
        allowed_domains=["example.com"],
        settings={
            "address": "hr@example.com",
            "reference_prefix": "HR",
            "allowed_domains": ["example.com"],
            "agents": ["hilda@example.com"],
            "trusted_authserv_ids": ["mx.example.com"],
            "imap": {
                "host": "imap.example.com",
                "username": "hr@example.com",
                "password": "${HR_MAIL_PASSWORD}",
            },
            "smtp": {
                "host": "smtp.example.com",
                "username": "hr@example.com",
                "password": "${HR_MAIL_PASSWORD}",
            },
        },
    ),
    ExampleUnit(
        name="facilities",
        title="Facilities",
        about="Facilities: Jira Service Management (Cloud), service-desk project FAC.",
        kind="jira",
        instance="facilities-jira",
        mapping="jira-service-management.yaml",
        settings={
            "base_url": "https://example.atlassian.net",
            "deployment": "cloud",
            "email": "usm-bridge@example.com",
            "api_token": "${FACILITIES_JIRA_API_TOKEN}",
            "projects": ["FAC"],
        },
    ),
    ExampleUnit(
        name="it",
        title="IT",
        about=(
            "IT: ServiceNow requested items (the supplier calls Facilities opens). For "
            'incidents, use tables = ["incident"] and the mapping servicenow-incident.yaml.'
        ),
        kind="servicenow",
        instance="it-servicenow",
        mapping="servicenow-sc-req-item.yaml",
        settings={
            "instance_url": "https://example.service-now.com",
            "tables": ["sc_req_item"],
            "username": "usm.bridge",
            "password": "${IT_SERVICENOW_PASSWORD}",
        },
    ),
)

EXAMPLE_ROUTES = (
    ExampleRoute(
        from_unit="hr",
        to_unit="facilities",
        when={"call_type": ["service_request"]},
        about="Service requests mailed to HR (an onboarding, a move) go to Facilities.",
    ),
    ExampleRoute(
        from_unit="facilities",
        to_unit="it",
        when={"call_type": ["service_request"], "attributes.jira.labels": "needs-it"},
        about=(
            'A Facilities request an agent labels "needs-it" in Jira goes on to IT, as a '
            "requested item."
        ),
    ),
)
