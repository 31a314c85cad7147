"""Tool-specific transforms travel with their connector distribution: a mapping that names one
whose connector is not installed is told which distribution to install, at check time and,
should it get that far, for the one record at run time."""

from __future__ import annotations

import pytest

from usm_bridge.connector import RawRecord
from usm_bridge.errors import MappingError, MappingFileError
from usm_bridge.mapping import MappingContext, apply_inbound, check_mapping, load_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.transforms import PROVIDERS, TRANSFORMS, missing_transform
from usm_bridge.plugins import PluginHost

MAPPINGS = SHIPPED_MAPPINGS_DIR


@pytest.mark.parametrize(
    ("blocked", "mapping", "transform", "distribution"),
    [
        ("jira", "jira-software.yaml", "adf_to_text", "usm-bridge-jira"),
        ("servicenow", "servicenow-incident.yaml", "servicenow_datetime", "usm-bridge-servicenow"),
        ("email", "email-service-desk.yaml", "rfc2822_datetime", "usm-bridge-email"),
    ],
)
def test_check_names_the_transform_and_the_distribution_to_install(
    blocked: str, mapping: str, transform: str, distribution: str
) -> None:
    host = PluginHost(blocked=[blocked])
    with pytest.raises(MappingFileError) as raised:
        check_mapping(MAPPINGS / mapping, host.transforms())
    message = str(raised.value)
    assert f"transform {transform!r} is provided by {distribution}" in message
    assert f"pip install {distribution}" in message
    assert mapping in message  # with file and line


def test_an_unknown_transform_is_still_an_unknown_transform() -> None:
    assert "no plugin provides it" in missing_transform("made_up")
    assert "pip install" not in missing_transform("made_up")


def test_at_run_time_the_record_is_dead_lettered_with_the_same_advice() -> None:
    mapping = load_mapping(MAPPINGS / "jira-software.yaml")
    context = MappingContext(unit="dev", instance="jira", transforms=TRANSFORMS)  # core only
    record = RawRecord(
        remote_id="1",
        data={"fields": {"summary": "x", "description": {"type": "doc", "content": []}}},
    )
    with pytest.raises(MappingError) as raised:
        apply_inbound(mapping, record, context)
    assert "field description: transform 'adf_to_text' is provided by usm-bridge-jira" in str(
        raised.value
    )


def test_the_core_provides_no_tool_transform_and_every_provider_is_one_distribution() -> None:
    assert not set(PROVIDERS) & set(TRANSFORMS)
    installed = PluginHost().transforms()
    assert set(PROVIDERS) <= set(installed)  # every listed transform exists in its connector
    assert set(PROVIDERS.values()) == {
        "usm-bridge-jira",
        "usm-bridge-servicenow",
        "usm-bridge-email",
    }
