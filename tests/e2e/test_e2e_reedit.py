"""A re-edit is never skipped, end to end: Jira showing ``updated`` in whole seconds.

Some Jira flavours and proxies stamp ``updated`` to the second. A Facilities agent comments on
the issue, the bridge reads it, and the agent comments again within that same second: the
bridge reads the second comment too (its cursor compares content, not (id, updated)), carries
both to the call, and further cycles stay quiet.
"""

from __future__ import annotations

from datetime import UTC, datetime

from e2e.e2e_env import Tools, adf, assert_quiet, calls_by_unit, onboard, only, settle
from usm_bridge.sync.engine import SyncEngine

FIRST = "The desk is ordered; delivery on Friday."
SECOND = "Correction: delivery on Thursday."


def _facilities_comments(engine: SyncEngine) -> list[str]:
    return [c.body for c in only(calls_by_unit(engine.store)["facilities"]).comments]


def test_a_second_comment_within_the_same_second_reaches_the_bridge(
    tools: Tools, engine: SyncEngine
) -> None:
    onboard(tools, engine)
    assert_quiet(tools, engine)
    site = tools.jira.site
    site.second_precision = True
    # Frozen from here: every write moves the clock by a millisecond, within one second.
    site.clock.set(datetime.now(UTC).replace(microsecond=0))
    (issue,) = tools.jira_issues()

    tools.jira_as_person("POST", f"issue/{issue.id}/comment", {"body": adf(FIRST)})
    first = engine.run_cycle("facilities-jira")
    stamp = tools.jira_as_person("GET", f"issue/{issue.id}").json()["fields"]["updated"]
    tools.jira_as_person("POST", f"issue/{issue.id}/comment", {"body": adf(SECOND)})
    second = engine.run_cycle("facilities-jira")
    again = tools.jira_as_person("GET", f"issue/{issue.id}").json()["fields"]["updated"]

    assert stamp == again  # the real case: both comments leave the same `updated`
    assert (
        first.ok and first.read == 1 and any(FIRST in text for text in _facilities_comments(engine))
    )
    assert second.ok and second.read == 1
    texts = _facilities_comments(engine)
    assert any(SECOND in text for text in texts) and any(FIRST in text for text in texts)
    settle(engine)
    assert_quiet(tools, engine)
