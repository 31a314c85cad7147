"""What a read in a child process learns (the deployment, the field list) is handed back to
the parent's connector (``read_state``/``adopt_read_state``, ``usm_bridge.sync.child_read``):
its pushes then ask Jira for neither again."""

from __future__ import annotations

import pickle

from jira_harness import connector_for, served
from usm_bridge_jira.simulator import JiraSimulator


def test_what_the_read_learned_spares_the_parent_its_requests(cloud: JiraSimulator) -> None:
    reader = connector_for(cloud, deployment="auto")
    list(reader.read_changes(None))
    reader._field_map()  # what a read of custom fields would have asked
    # Crosses the pipe as the child sends it.
    state = pickle.loads(pickle.dumps(reader.read_state()))  # noqa: S301 - our own bytes
    reader.close()

    parent = connector_for(cloud, deployment="auto")
    parent.adopt_read_state(state)
    with served(cloud) as seen:
        assert parent.deployment == "cloud"
        fields = parent._field_map()
    assert seen == []
    assert "summary" in fields

    # Without it, the parent asks for both itself.
    fresh = connector_for(cloud, deployment="auto")
    with served(cloud) as seen:
        fresh._field_map()
    assert [request.path for request in seen] == ["serverInfo", "field"]
    for connector in (parent, fresh):
        connector.close()


def test_state_of_another_shape_is_ignored(cloud: JiraSimulator) -> None:
    parent = connector_for(cloud, deployment="auto")
    parent.adopt_read_state("not a state")
    parent.adopt_read_state(("mainframe", None, None))
    assert parent._deployment is None and parent._fields is None
    parent.close()
