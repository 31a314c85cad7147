"""A cycle that stored news wakes the event-driven instances that hold its unit's supplier
calls (their closure pass judges acceptance by the customer's call, and no event of their own
tool will come): which ones, by the routes."""

from __future__ import annotations

from pathlib import Path

from usm_bridge.config import load_config
from usm_bridge.sync.chain_hints import supplier_instances

CONFIG = """
[units.hr]
[units.fac]
[units.it]

[services.desks]
provider = "fac"
[services.laptops]
provider = "it"

[instances.hr-mail]
unit = "hr"
kind = "memory"
mapping = "m.yaml"
[instances.fac-jira]
unit = "fac"
kind = "memory"
mapping = "m.yaml"
[instances.it-requests]
unit = "it"
kind = "memory"
mapping = "m.yaml"
[instances.it-incidents]
unit = "it"
kind = "memory"
mapping = "m.yaml"

[[routes]]
from = "hr"
to = "fac"
when = { call_type = ["service_request"] }
[[routes]]
from = "fac"
to = "it"
when = { call_type = ["service_request"] }
target = "it-requests"
"""
BY_SERVICE = """
[[routes]]
from = "hr"
to = "by-service"
when = { call_type = ["incident"] }
targets = { it = "it-incidents" }
"""


def _suppliers(tmp_path: Path, text: str, event_driven: set[str]) -> dict[str, set[str]]:
    path = tmp_path / "usm-bridge.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    found = supplier_instances(config, list(config.instances), event_driven)
    return {name: set(targets) for name, targets in found.items()}


def test_each_instance_wakes_the_event_driven_instances_its_routes_supply_from(
    tmp_path: Path,
) -> None:
    every = {"hr-mail", "fac-jira", "it-requests", "it-incidents"}
    assert _suppliers(tmp_path, CONFIG, every) == {
        "hr-mail": {"fac-jira"},
        "fac-jira": {"it-requests"},  # the route's target, not IT's other instance
        "it-requests": set(),
        "it-incidents": set(),
    }
    # A polled supplier is left to its polls: only event-driven ones are woken.
    assert _suppliers(tmp_path, CONFIG, {"it-requests"})["hr-mail"] == set()
    assert _suppliers(tmp_path, CONFIG, {"it-requests"})["fac-jira"] == {"it-requests"}


def test_a_by_service_route_wakes_each_providers_receiving_instance(tmp_path: Path) -> None:
    every = {"hr-mail", "fac-jira", "it-requests", "it-incidents"}
    found = _suppliers(tmp_path, CONFIG + BY_SERVICE, every)
    assert found["hr-mail"] == {"fac-jira", "it-incidents"}
