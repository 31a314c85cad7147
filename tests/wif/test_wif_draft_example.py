"""The draft's own example (tests/wif/data, see its README for source and licence) is a valid
document, imports as W1 of its context, and the config printed for it loads."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest
from wif_configs import write_config

from usm_bridge.config import load_config
from usm_bridge.wif.placing import adopt
from usm_bridge.wif.reader import WifDocumentError, parse_document, read_document
from usm_bridge.wif.schema_check import schema
from usm_bridge.wif.to_config import config_snippet

EXAMPLE = Path(__file__).parent / "data" / "draft-example.workflow.json"


def test_the_example_passes_the_schema_as_a_workflow() -> None:
    document = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema())
    assert list(validator.iter_errors(document)) == []
    read = read_document(EXAMPLE)
    assert (read.type, read.slug, read.context, read.process) == (
        "workflow",
        "new-laptop",
        "it-infra",
        "agree",
    )
    # must-ignore: the Activity example's "name" is not an Activity member, and is dropped
    assert "name" not in read.steps[0].activities[0].model_dump()


def test_the_examples_string_sort_index_is_refused_by_the_drafts_text() -> None:
    document = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    document["steps"][0]["sort-index"] = "3"  # as the draft's Step example writes it
    with pytest.raises(WifDocumentError) as refused:
        parse_document(json.dumps(document), source="example.workflow.json", kind="workflow")
    assert str(refused.value) == (
        "example.workflow.json: not a valid USM-WIF document: "
        "at $.steps[0]['sort-index']: must be an integer"
    )


def test_the_example_imports_as_the_wish_pattern_of_its_context(tmp_path: Path) -> None:
    adopted = adopt(str(EXAMPLE), read_document(EXAMPLE))
    assert (adopted.unit, adopted.pattern.id) == ("it-infra", "W1")
    snippet = config_snippet([adopted])
    workflow = tomllib.loads(snippet)["workflows"]["it-infra"]
    assert workflow["profiles"] == {"operator": "Service desk agent"}
    assert workflow["W1"]["slug"] == "new-laptop"
    assert workflow["W1"]["steps"]["1"]["activities"]["1"]["raci"] == {"operator": ["R"]}
    config = load_config(write_config(tmp_path, "[units.it-infra]\n\n" + snippet))
    (step,) = config.workflows.of("it-infra").workflows["W1"].steps.values()
    assert step.name == "Take the request in"
