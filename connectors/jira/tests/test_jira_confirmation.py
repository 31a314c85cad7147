"""Confirmation in Jira Service Management: the customer's own close against an automation's.

People and the automation act through pycontribs' ``jira`` client, each signed in as
themselves; the connector then reads the issues (with their changelog) and the shipped
``jira-service-management.yaml`` maps them. On Cloud every v3 answer is checked against the
official OpenAPI description (the ``cloud`` fixture).
"""

from __future__ import annotations

from datetime import timedelta

from jira_harness import connected
from test_jira_sim_client import CASEY, client
from usm_bridge_jira.simulator import JiraSimulator
from usm_bridge_jira.transforms import TRANSFORMS as JIRA_TRANSFORMS

from usm_bridge.connector import RawRecord
from usm_bridge.mapping import MappingContext, apply_inbound, load_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.transforms import TRANSFORMS as CORE
from usm_bridge.model import Call, ConfirmationKind, Status

AUTOMATION = "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077"  # the automation's app account
MAPPING = load_mapping(SHIPPED_MAPPINGS_DIR / "jira-service-management.yaml")
CONTEXT = MappingContext(
    unit="facilities", instance="jira-test", transforms={**CORE, **JIRA_TRANSFORMS}
)


def _with_automation(simulator: JiraSimulator) -> None:
    simulator.site.add_user(
        AUTOMATION, "Automation for Jira", "", "automation", "sim-token-automation-0123456789",
        account_type="app",
    )  # fmt: skip


def _resolved_by_the_desk(simulator: JiraSimulator, summary: str) -> str:
    """An incident Casey reported and the desk resolved; its key."""
    with client(simulator, account=CASEY) as casey:
        made = casey.create_issue(
            project="IT", summary=summary, issuetype={"name": "[System] Incident"}
        )
    simulator.site.clock.advance(timedelta(minutes=5))
    with client(simulator) as desk:
        desk.transition_issue(made.key, "Resolve", resolution={"name": "Done"})
    simulator.site.clock.advance(timedelta(hours=1))
    return str(made.key)


def _closed_by(simulator: JiraSimulator, key: str, account: str) -> None:
    with client(simulator, account=account) as person:
        person.transition_issue(key, "Close")


def _read(simulator: JiraSimulator) -> dict[str, Call]:
    """Every issue as the connector reads it, mapped, by key."""
    with connected(simulator) as connector:
        records = [r for r in connector.read_changes(None) if isinstance(r, RawRecord)]
    return {str(r.remote_key): apply_inbound(MAPPING, r, CONTEXT) for r in records}


def test_the_changelog_names_who_moved_the_issue(simulator: JiraSimulator) -> None:
    key = _resolved_by_the_desk(simulator, "Heating off in room 4")
    _closed_by(simulator, key, CASEY)
    with client(simulator) as jira:
        histories = jira.issue(key, expand="changelog").changelog.histories
    # Newest first, as Jira lists them: Casey's close, then the desk's resolve.
    moves = [
        (
            h.author.displayName,
            [(i.field, getattr(i, "fromString", None), i.toString) for i in h.items],
        )
        for h in histories
    ]
    assert moves == [
        ("Casey Customer", [("status", "Resolved", "Closed")]),
        ("Sim Admin", [("status", "Open", "Resolved"), ("resolution", None, "Done")]),
    ]


def test_the_customer_closing_is_explicit_an_automation_implicit_an_agent_none(
    cloud: JiraSimulator,
) -> None:
    _with_automation(cloud)
    by_customer = _resolved_by_the_desk(cloud, "Heating off in room 4")
    by_automation = _resolved_by_the_desk(cloud, "Door sticks")
    by_agent = _resolved_by_the_desk(cloud, "Light flickers")
    still_resolved = _resolved_by_the_desk(cloud, "Window cracked")
    _closed_by(cloud, by_customer, CASEY)
    closed_at = cloud.site.clock.now()
    cloud.site.clock.advance(timedelta(days=3))
    _closed_by(cloud, by_automation, AUTOMATION)
    _closed_by(cloud, by_agent, cloud.site.me)

    calls = _read(cloud)
    assert set(calls) == {by_customer, by_automation, by_agent, still_resolved}
    explicit = calls[by_customer].confirmation
    assert calls[by_customer].status is Status.CLOSED and explicit is not None
    assert explicit.kind is ConfirmationKind.EXPLICIT
    assert explicit.by is not None
    assert (explicit.by.ref, explicit.by.name) == (CASEY, "Casey Customer")
    assert explicit.at is not None and abs(explicit.at - closed_at) < timedelta(seconds=1)
    implicit = calls[by_automation].confirmation
    assert implicit is not None and implicit.kind is ConfirmationKind.IMPLICIT
    assert implicit.by is None  # an automation confirms for nobody
    assert implicit.how is not None and "automation" in implicit.how
    assert calls[by_agent].status is Status.CLOSED and calls[by_agent].confirmation is None
    assert calls[still_resolved].status is Status.FULFILLED
    assert calls[still_resolved].confirmation is None


def test_an_issue_read_without_its_changelog_shows_no_confirmation(cloud: JiraSimulator) -> None:
    key = _resolved_by_the_desk(cloud, "Heating off in room 4")
    _closed_by(cloud, key, CASEY)
    with client(cloud) as jira:
        bare = jira.issue(key).raw
    assert "changelog" not in bare
    call = apply_inbound(MAPPING, RawRecord(remote_id=str(bare["id"]), data=bare), CONTEXT)
    assert call.status is Status.CLOSED and call.confirmation is None
