"""One rule-matching function (``usm_bridge.mapping.classify``) for everything that asks which
rule of a mapping file holds: classification, the conformance report's verdicts on the tool's
types, and ``usm-bridge mapping apply``, which shows the rule that matched."""

from __future__ import annotations

import json
from typing import Any

import pytest
from shipped_transforms import TOOL_PLUGINS

from usm_bridge.conformance.checks import MappingValuesCheck
from usm_bridge.connector import RawRecord, VocabularyValue
from usm_bridge.hookspecs import hookimpl
from usm_bridge.mapping import (
    classify_record,
    first_rule,
    load_mapping,
    loads_mapping,
    match_condition,
    matched_rule,
)
from usm_bridge.mapping import plugin as mapping_plugin
from usm_bridge.mapping.cli import apply_file
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.spec import Condition
from usm_bridge.model import Call, CallType
from usm_bridge.plugins import PluginHost

MAPPINGS = SHIPPED_MAPPINGS_DIR
JSM = load_mapping(MAPPINGS / "jira-service-management.yaml")
EMPTY = frozenset({"", "?"})


@pytest.mark.parametrize(
    ("condition", "data", "holds"),
    [
        ({"path": "a", "equals": 1}, {"a": "1"}, True),  # raw values compare as text
        ({"path": "a", "equals": "x"}, {"a": "y"}, False),
        ({"path": "a.b", "in": ["x", "y"]}, {"a": {"b": "y"}}, True),
        ({"path": "a", "matches": "^[0-9]+$"}, {"a": "12"}, True),
        ({"path": "a", "matches": "^x"}, {}, False),  # absent never matches a pattern
        ({"path": "a", "exists": True}, {"a": "?"}, False),  # an empty value is absent
        ({"path": "a", "exists": False}, {"a": []}, True),
        ({"path": "a", "exists": True}, {"a": [1]}, True),
    ],
)
def test_a_condition_holds_as_the_file_says(
    condition: dict[str, Any], data: dict[str, Any], holds: bool
) -> None:
    assert match_condition(Condition.model_validate(condition), data, EMPTY) is holds


def test_the_first_rule_whose_conditions_all_hold_wins() -> None:
    mapping = loads_mapping(
        """\
version: 1
tool: x
fields:
  title: {path: t}
classify:
  rules:
    - {type: rfc, when: [{path: kind, equals: change}, {path: ci, exists: true}]}
    - {type: incident, when: {path: kind, in: [change, fault]}}
  default: service_request
"""
    )
    records = [{"kind": "change", "ci": "db1"}, {"kind": "change"}, {"kind": "other"}]
    found = [matched_rule(mapping, RawRecord(remote_id="1", data=r)) for r in records]
    types = [classify_record(mapping, RawRecord(remote_id="1", data=r)) for r in records]
    assert found == [0, 1, None]
    assert types == [CallType.RFC, CallType.INCIDENT, CallType.SERVICE_REQUEST]
    rule = first_rule(mapping.spec.classify.rules, records[1], EMPTY)
    assert rule is mapping.spec.classify.rules[1]


def test_the_report_judges_the_tools_types_by_the_rules_the_engine_applies() -> None:
    """The JSM mapping classifies by pattern (``matches``). The report used to look only at
    ``equals`` and ``in`` values, so it said every JSM work type "matches no classification
    rule (stays unclassified)" although the engine classifies them: a wrong verdict."""
    types = [
        VocabularyValue(value="[System] Incident", scope="IT"),
        VocabularyValue(value="Service request", scope="IT"),
        VocabularyValue(value="[System] Change", scope="IT"),
        VocabularyValue(value="Task", scope="IT"),
    ]
    metrics: dict[str, float | int | str] = {}
    evidence = MappingValuesCheck._types(JSM, types, metrics)
    assert [e.detail for e in evidence] == [
        "type 'Task' in IT matches no classification rule (stays unclassified)"
    ]
    assert metrics["type_values"] == "3/4 named by a rule"
    # And the verdict agrees with classification itself, type by type.
    for value in types:
        record = RawRecord(remote_id="1", data={"fields": {"issuetype": {"name": value.value}}})
        classified = classify_record(JSM, record) is not CallType.UNCLASSIFIED
        assert classified is (value.value != "Task")


def _issue(issue_type: str) -> str:
    return json.dumps(
        {
            "id": "10001",
            "fields": {
                "summary": "Printer jams",
                "status": {"name": "Open"},
                "issuetype": {"name": issue_type},
                "created": "2031-01-01T09:00:00.000+0000",
                "updated": "2031-01-01T10:00:00.000+0000",
            },
        }
    )


class Keywords:
    @hookimpl
    def usm_bridge_classify_call(self, call: Call, record: RawRecord) -> CallType | None:
        return CallType.RFC if "Printer" in call.title else None


@pytest.mark.parametrize(
    ("issue_type", "plugins", "expected"),
    [
        ("[System] Incident", (), "classify.rules[0] (incident)"),
        ("[System] Change", (), "classify.rules[3] (rfc)"),
        ("Custom", (), "classify.default (unclassified)"),
        ("Custom", (Keywords(),), "a plugin (rfc); the file's classify.default (unclassified)"),
    ],
)
def test_mapping_apply_shows_the_rule_that_matched(
    issue_type: str, plugins: tuple[object, ...], expected: str
) -> None:
    host = PluginHost(load_entrypoints=False, plugins=[mapping_plugin, *TOOL_PLUGINS, *plugins])
    result = apply_file(MAPPINGS / "jira-service-management.yaml", _issue(issue_type), host=host)
    assert result["classified_by"] == expected
