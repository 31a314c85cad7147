"""``usm-bridge export wif``: one document per pattern a unit runs, workflows where the config
gives steps, templates elsewhere, and the same bytes for the same config."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from wif_configs import FULL, UNITS, config_of, export, write_config

from usm_bridge.cli import cli
from usm_bridge.config import BridgeConfig
from usm_bridge.errors import ConfigurationError
from usm_bridge.lifecycle import WORKFLOW_PATTERNS, WorkflowPattern
from usm_bridge.wif.command import export_wif
from usm_bridge.wif.export import source_system_instance


def test_each_unit_gets_one_document_per_pattern_it_runs(tmp_path: Path) -> None:
    docs = export(config_of(tmp_path, FULL), tmp_path / "out")
    assert sorted(docs) == sorted(
        [
            "it-w2-rfc.workflow-template.json",
            "it-w3-incident-with-change.workflow.json",
            "it-w4-incident-without-change.workflow-template.json",
            "it-w5-ask-it.workflow-template.json",
            "hr-w1-wish.workflow-template.json",
            "hr-w2-rfc.workflow-template.json",
            "hr-w3-incident-with-change.workflow-template.json",
            "hr-w4-incident-without-change.workflow-template.json",
            "hr-w5-service-request.workflow-template.json",
            "hr-w6-risk-to-agreement.workflow-template.json",
            "hr-w7-risk-to-change.workflow-template.json",
            "hr-w8-risk-to-operations.workflow-template.json",
        ]
    )
    for name, doc in docs.items():
        assert doc["context"] == name.split("-")[0]
        assert doc["type"] == (
            "workflow" if name.endswith(".workflow.json") else "workflow-template"
        )
        assert doc["format-version"] == "1.0.0"
        assert doc["source-system-type"] == "usm-bridge:bridge"
        assert doc["source-system-instance"] == "acme-test"


def test_unit_option_exports_only_that_unit(tmp_path: Path) -> None:
    docs = export(config_of(tmp_path, FULL), tmp_path / "out", "hr")
    assert len(docs) == 8 and all(name.startswith("hr-") for name in docs)


@pytest.mark.parametrize("pattern", WORKFLOW_PATTERNS, ids=lambda p: p.id)
def test_a_template_walks_its_patterns_processes_in_order(
    tmp_path: Path, pattern: WorkflowPattern
) -> None:
    docs = export(config_of(tmp_path, UNITS), tmp_path / "out", "hr")
    (doc,) = [d for d in docs.values() if d["x-usm-bridge-pattern"] == pattern.id]
    assert doc["type"] == "workflow-template"
    assert doc["process"] == pattern.processes[0].value
    assert [step["process"] for step in doc["steps"]] == [p.value for p in pattern.processes]
    assert [step["sort-index"] for step in doc["steps"]] == list(
        range(1, len(pattern.processes) + 1)
    )
    assert all(step["activities"] == [] for step in doc["steps"])


def test_the_patterns_that_part_at_a_fork_are_dynamic(tmp_path: Path) -> None:
    docs = export(config_of(tmp_path, UNITS), tmp_path / "out", "hr")
    by_pattern = {d["x-usm-bridge-pattern"]: d["dynamicity"] for d in docs.values()}
    assert by_pattern == {
        "W1": "static",
        "W2": "static",
        "W3": "dynamic",  # an incident forks to change ...
        "W4": "dynamic",  # ... or to operate
        "W5": "static",
        "W6": "dynamic",  # a risk forks to agree, change or operate
        "W7": "dynamic",
        "W8": "dynamic",
    }


def test_a_configured_workflow_carries_its_steps_activities_raci_and_profiles(
    tmp_path: Path,
) -> None:
    doc = export(config_of(tmp_path, FULL), tmp_path / "out", "it")[
        "it-w3-incident-with-change.workflow.json"
    ]
    assert doc["name"] == "Outage fixed by a change"
    assert doc["dynamicity"] == "dynamic"
    assert doc["created-at"] == "2026-01-05T09:30:00.250+01:00"
    assert doc["modified-at"] == "2026-02-01T10:00:00.000+00:00"
    assert doc["created-by"] == {"id": "u17", "name": "Ines Tan", "email": "ines@example.org"}
    assert "modified-by" not in doc
    assert [(s["id"], s["sort-index"], s["process"], s["name"]) for s in doc["steps"]] == [
        ("restore", 1, "recover", "Recover"),
        ("fix", 2, "change", "Implement the change"),
        ("confirm", 3, "recover", "Recover"),
    ]
    restore = doc["steps"][0]
    assert restore["description"] == "Register, classify, find the cause"
    assert restore["activities"] == [
        {
            "id": "log",
            "sort-index": 1,
            "description": "Log the incident and link it to the service",
            "responsibilities": {"operator": ["R"], "change-manager": ["A", "I"]},
        },
        {
            "id": "classify",
            "sort-index": 2,
            "responsibilities": {"operator": ["R", "A"], "quality lead": ["C"]},
        },
    ]
    assert doc["profiles"] == [
        {"id": "operator", "name": "IT service desk operator"},
        {"id": "change-manager", "name": "Change manager"},
        {"id": "quality lead", "name": "Quality lead"},
    ]


def test_configured_header_values_are_kept_even_when_empty(tmp_path: Path) -> None:
    doc = export(config_of(tmp_path, FULL), tmp_path / "out", "it")[
        "it-w5-ask-it.workflow-template.json"
    ]
    assert (doc["slug"], doc["dynamicity"], doc["description"]) == ("ask-it", "dynamic", "")
    assert doc["name"] == "Service request"  # not configured: the pattern's


def test_an_unchanged_config_exports_the_same_bytes(tmp_path: Path) -> None:
    config = config_of(tmp_path, FULL)
    first = export_wif(config, (), tmp_path / "one")
    second = export_wif(config_of(tmp_path, FULL), (), tmp_path / "two")
    assert len(first) == len(second) == 12
    for a, b in zip(first, second, strict=True):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()


def test_times_are_written_only_where_the_config_gives_them(tmp_path: Path) -> None:
    docs = export(config_of(tmp_path, FULL), tmp_path / "out")
    dated = sorted(
        name for name, doc in docs.items() if "created-at" in doc or "modified-at" in doc
    )
    assert dated == ["it-w3-incident-with-change.workflow.json"]


def test_the_workflow_version_follows_the_content_not_the_provenance(tmp_path: Path) -> None:
    def version_of(text: str, folder: str) -> str:
        docs = export(config_of(tmp_path / folder, text), tmp_path / folder / "out", "it")
        return str(docs["it-w3-incident-with-change.workflow.json"]["workflow-version"])

    base = version_of(FULL, "base")
    other_dates = FULL.replace("2026-02-01T10:00:00.000", "2026-03-01T10:00:00.000")
    other_instance = FULL.replace('"acme-test"', '"acme-prod"')
    other_step = FULL.replace('"Raise the RFC"', '"Raise the RFC in the change tool"')
    assert version_of(other_dates, "dates") == base
    assert version_of(other_instance, "instance") == base
    assert version_of(other_step, "step") != base
    assert len(base) == 64 and int(base, 16) >= 0


def test_the_default_instance_is_a_uuid_of_the_config_files_path(tmp_path: Path) -> None:
    one = config_of(tmp_path / "a", UNITS)
    again = config_of(tmp_path / "a", UNITS)
    other = config_of(tmp_path / "b", UNITS)
    assert source_system_instance(one) == source_system_instance(again)
    assert source_system_instance(one) != source_system_instance(other)
    assert uuid.UUID(source_system_instance(one)).version == 5


def test_a_config_without_a_file_must_name_its_instance() -> None:
    config = BridgeConfig.model_validate({"units": {"it": {"name": "it"}}})
    with pytest.raises(ConfigurationError, match="source_system_instance"):
        source_system_instance(config)


def test_the_command_writes_and_names_each_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, FULL)
    out = tmp_path / "wif" / "it"
    result = CliRunner().invoke(
        cli, ["export", "wif", "-c", str(path), "--unit", "it", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 4
    assert sorted(line.removeprefix(f"wrote {out}/") for line in lines) == sorted(
        p.name for p in out.iterdir()
    )


def test_the_command_refuses_an_unknown_unit_and_an_unwritable_folder(tmp_path: Path) -> None:
    path = write_config(tmp_path, FULL)
    unknown = CliRunner().invoke(cli, ["export", "wif", "-c", str(path), "--unit", "ops"])
    assert unknown.exit_code == 2
    assert "--unit: unit 'ops' is not defined" in unknown.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    unwritable = CliRunner().invoke(
        cli, ["export", "wif", "-c", str(path), "--out", str(blocker / "sub")]
    )
    assert unwritable.exit_code == 2
    assert "cannot write" in unwritable.stderr and "Traceback" not in unwritable.output


def test_a_unit_or_pattern_named_twice_is_written_once(tmp_path: Path) -> None:
    config = config_of(tmp_path, UNITS + '[workflows.it]\npatterns = ["W3", "W5", "W3"]\n')
    written = export_wif(config, ("it", "it"), tmp_path / "out")
    assert [p.name for p in written] == [
        "it-w3-incident-with-change.workflow-template.json",
        "it-w5-service-request.workflow-template.json",
    ]
