"""Issue 11, correctness 4 over real HTTP: a cancel written into Jira Software reads back as
cancelled, and the conformance report sees no illegal transition.

IT works incidents in ServiceNow and hands development work to a team on Jira Software (the
simulator with Jira Software's workflow: To Do, In Progress, Blocked, Done). When IT cancels
its incident, the bridge cancels the supplier call, which the shipped jira-software mapping
writes as Done with resolution Won't Do. Before status rules, that issue read back as
fulfilled, and the report showed the illegal move cancelled -> fulfilled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from usm_bridge_jira.simulator.state import SOFTWARE_STATUSES, SOFTWARE_TRANSITIONS

from e2e.e2e_env import MAPPINGS, Tools, _toml
from usm_bridge.checks import check_config
from usm_bridge.config import load_config
from usm_bridge.conformance.command import run_conformance_report
from usm_bridge.model import Call, Status, WaitingOn
from usm_bridge.runtime import open_runtime
from usm_bridge.sync.engine import SyncEngine

INSTANCES = ("it-snow", "dev-jira")


def _config_text(tools: Tools, store_url: str) -> str:
    instances = {
        "it-snow": (
            "it",
            "servicenow",
            "servicenow-incident.yaml",
            {
                "instance_url": tools.snow.base_url,
                "tables": ["incident"],
                "username": tools.snow.username,
                "password": tools.snow.password,
                "max_attempts": 2,
                "backoff_initial": 0.05,
                "backoff_max": 0.1,
            },
        ),
        "dev-jira": (
            "dev",
            "jira",
            "jira-software.yaml",
            {
                "base_url": tools.jira.base_url,
                "deployment": "cloud",
                **tools.jira.credentials(),
                "projects": ["DEV"],
                "max_attempts": 2,
                "backoff_initial": 0.05,
                "backoff_max": 0.1,
            },
        ),
    }
    lines = [
        "[store]",
        f"url = {_toml(store_url)}",
        "[units.it]",
        'title = "IT"',
        "[units.dev]",
        'title = "Development"',
        "",
    ]
    for name, (unit, kind, mapping, settings) in instances.items():
        lines += [
            f"[instances.{name}]",
            f"unit = {_toml(unit)}",
            f"kind = {_toml(kind)}",
            f"mapping = {_toml(str(MAPPINGS / mapping))}",
            "interval = 1",
            f"[instances.{name}.settings]",
            *(f"{key} = {_toml(value)}" for key, value in settings.items()),
            "",
        ]
    lines += ["[[routes]]", 'from = "it"', 'to = "dev"', 'when = { call_type = ["incident"] }']
    return "\n".join(lines) + "\n"


@pytest.fixture
def config_path(tools: Tools, store_url: str, tmp_path: Path) -> Path:
    tools.jira.site.use_workflow(SOFTWARE_STATUSES, SOFTWARE_TRANSITIONS)
    path = tmp_path / "usm-bridge.toml"
    path.write_text(_config_text(tools, store_url), encoding="utf-8")
    return path


@pytest.fixture
def dev_engine(config_path: Path) -> Iterator[SyncEngine]:
    with open_runtime(load_config(config_path)) as runtime:
        yield runtime.engine


def _settle(engine: SyncEngine, rounds: int = 3) -> None:
    for _ in range(rounds):
        for name in INSTANCES:
            summary = engine.run_cycle(name)
            assert summary.ok, summary.error


def _call(engine: SyncEngine, unit: str) -> Call:
    with engine.store.begin(readonly=True) as tx:
        [stored] = tx.list_calls(unit=unit)
    return stored.call


def test_a_cancel_is_written_as_done_wont_do_and_read_back_as_cancelled(
    tools: Tools, dev_engine: SyncEngine, config_path: Path
) -> None:
    sys_id = tools.snow.insert(
        "incident",
        {"short_description": "Export to CSV crashes", "impact": "2", "urgency": "2"},
        user="beth.anglin",
    )
    _settle(dev_engine)
    it, dev = _call(dev_engine, "it"), _call(dev_engine, "dev")
    assert (it.status, it.waiting_on) == (Status.WAITING, WaitingOn.SUPPLIER)
    assert dev.status is Status.REGISTERED
    [issue] = tools.jira_issues()
    site = tools.jira.site
    assert site.statuses[issue.status_id].name == "To Do" and issue.project == "DEV"

    # IT cancels its incident: the bridge cancels the supplier call in Jira.
    tools.snow.update("incident", sys_id, {"state": "8"}, user="beth.anglin")
    _settle(dev_engine)
    [issue] = tools.jira_issues()
    assert site.statuses[issue.status_id].name == "Done"
    assert site.resolution_name(issue) == "Won't Do"
    assert _call(dev_engine, "it").status is Status.CANCELLED
    assert _call(dev_engine, "dev").status is Status.CANCELLED
    with dev_engine.store.begin(readonly=True) as tx:
        assert tx.list_dead_letters() == []
        assert tx.list_outbox(status="pending") == []

    # The report sees every observed move as legal, in both units.
    run = run_conformance_report(load_config(config_path), format="json", live=False)
    transitions = [o for o in run.report.outcomes if o.check_id == "data.transitions"]
    assert {o.unit for o in transitions} == {"it", "dev"}
    for outcome in transitions:
        assert outcome.verdict == "pass", outcome.evidence
        assert outcome.evidence == []
    observed = [o.metrics.get("transitions_observed", 0) for o in transitions]
    assert sum(int(n) for n in observed) >= 2  # the cancels were seen, not skipped


def test_check_lists_what_the_mappings_lose_before_runtime(config_path: Path) -> None:
    lines = check_config(load_config(config_path))
    warnings = [line.strip() for line in lines if line.startswith("  warning:")]
    # jira-software: confirmed and closed are both Done, which reads back as fulfilled;
    # servicenow-incident: no separate classified or confirmed state.
    assert len(warnings) == 4, warnings
    assert any("jira-software.yaml" in w and "writing 'confirmed'" in w for w in warnings)
    assert any("servicenow-incident.yaml" in w and "writing 'classified'" in w for w in warnings)
    assert not any("cancelled" in w for w in warnings)  # the cancel round-trips
