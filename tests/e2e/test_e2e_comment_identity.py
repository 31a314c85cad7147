"""Issue 11, correctness 2 and 3 over the simulators: comments are known by proof, never by
their words, and every copy names its author and unit.

A Facilities agent comments through pycontribs' ``jira`` client (the vendor client people's
scripts use); an IT agent comments in ServiceNow as herself. Repeating the same words is a new
comment each time, in either direction; the bridge's copies never come back as comments.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jira import JIRA
from usm_bridge_jira.simulator import CLOUD_EMAIL, CLOUD_TOKEN
from usm_bridge_jira.transforms import adf_to_text

from e2e.e2e_env import Tools, assert_quiet, onboard, settle
from usm_bridge.sync.engine import SyncEngine

DESK = "Desk 4.12 is ready."
LAPTOP = "The laptop is imaged."
#: The first line of each copy: who wrote it as their tool names them, and their unit's title.
BY_FACILITIES = "Sim Admin (Facilities) wrote:"
BY_IT = "beth.anglin (IT) wrote:"


@pytest.fixture
def agent(tools: Tools) -> Iterator[JIRA]:
    """A Facilities agent's session in pycontribs' Jira client (REST API v2, plain text)."""
    client = JIRA(
        server=tools.jira.base_url,
        basic_auth=(CLOUD_EMAIL, CLOUD_TOKEN),
        get_server_info=False,
    )
    try:
        yield client
    finally:
        client.close()


def _jira_comments(tools: Tools) -> list[str]:
    (issue,) = tools.jira_issues()
    return [adf_to_text(c.body).strip() for c in issue.comments]


def _snow_comments(tools: Tools) -> list[str]:
    (item,) = tools.snow_items()
    return tools.snow_comments(item["sys_id"])


def test_repeated_words_travel_as_new_comments_both_ways_and_copies_name_their_authors(
    tools: Tools, engine: SyncEngine, agent: JIRA
) -> None:
    onboard(tools, engine)
    (issue,) = tools.jira_issues()

    # -- the same words twice in Jira, through the vendor client: two comments in ServiceNow -
    agent.add_comment(str(issue.id), DESK)
    settle(engine)
    assert _snow_comments(tools) == [f"{BY_FACILITIES}\n{DESK}"]
    agent.add_comment(str(issue.id), DESK)
    settle(engine)
    assert _snow_comments(tools) == [f"{BY_FACILITIES}\n{DESK}"] * 2
    assert _jira_comments(tools) == [DESK, DESK]  # no copy came back into Jira

    # -- the same words twice in ServiceNow in one cycle: two comments in Jira, cycles OK ----
    (item,) = tools.snow_items()
    for _ in range(2):
        tools.snow.update("sc_req_item", item["sys_id"], {"comments": LAPTOP}, user="beth.anglin")
    settle(engine)  # every cycle OK: no UNIQUE constraint, no dead letter
    assert _jira_comments(tools) == [DESK, DESK, f"{BY_IT}\n{LAPTOP}", f"{BY_IT}\n{LAPTOP}"]
    assert _snow_comments(tools) == [f"{BY_FACILITIES}\n{DESK}"] * 2 + [LAPTOP] * 2
    with engine.store.begin(readonly=True) as tx:
        assert tx.list_dead_letters() == []
        assert tx.list_outbox(status="pending") == []
    assert_quiet(tools, engine)
