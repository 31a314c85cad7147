"""Fixtures of the Jira connector's tests: simulators on loopback, validated against the spec."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jira_harness import V3Recorder, start_simulator
from usm_bridge_jira.simulator import JiraSimulator


@pytest.fixture
def cloud() -> Iterator[JiraSimulator]:
    """A Jira Cloud simulator; every v3 response it served is checked against the spec."""
    simulator, recorder = start_simulator("cloud")
    try:
        yield simulator
    finally:
        simulator.stop()
    recorder.validate()


@pytest.fixture
def datacenter() -> Iterator[JiraSimulator]:
    """A Jira Data Center simulator."""
    simulator, _ = start_simulator("datacenter")
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture(params=["cloud", "datacenter"])
def simulator(request: pytest.FixtureRequest) -> Iterator[JiraSimulator]:
    """Each flavour in turn."""
    simulator, recorder = start_simulator(request.param)
    try:
        yield simulator
    finally:
        simulator.stop()
    recorder.validate()


__all__ = ["V3Recorder"]
