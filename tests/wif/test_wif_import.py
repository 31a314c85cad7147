"""``usm-bridge import wif``: documents back to the config that reproduces them, placed in a
unit and a pattern, with every hostile string kept a string."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from wif_configs import FULL, UNITS, WORKFLOWS, config_of

from usm_bridge.cli import cli
from usm_bridge.wif.command import export_wif, import_wif
from usm_bridge.wif.reader import WifDocumentError
from usm_bridge.wif.toml_text import toml_key, toml_value


def exported_files(tmp_path: Path, text: str = FULL) -> list[Path]:
    return export_wif(config_of(tmp_path / "source", text), (), tmp_path / "out")


def test_export_then_import_gives_the_same_config_back(tmp_path: Path) -> None:
    original = config_of(tmp_path / "source", FULL)
    snippet = import_wif(exported_files(tmp_path))
    # The import leaves out which patterns a unit runs and the instance: the adopter's own.
    settings = WORKFLOWS.split("[workflows.it.profiles]")[0]
    again = config_of(tmp_path / "again", UNITS + "\n" + settings + "\n" + snippet)
    assert again.workflows.model_dump() == original.workflows.model_dump()
    first = export_wif(original, (), tmp_path / "first")
    second = export_wif(again, (), tmp_path / "second")
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        # the same bytes: both configs name the same source-system instance
        assert a.read_text(encoding="utf-8") == b.read_text(encoding="utf-8"), a.name


def test_a_pattern_left_as_its_template_configures_nothing(tmp_path: Path) -> None:
    files = export_wif(config_of(tmp_path / "source", UNITS), ("hr",), tmp_path / "out")
    snippet = import_wif(files)
    assert tomllib.loads(snippet) == {}
    assert snippet.count("the pattern's own template, nothing to configure") == 8


def workflow(**members: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "format-version": "1.0.0",
        "type": "workflow",
        "context": "it",
        "slug": "printer-jam",
        "name": "Printer jam",
        "process": "recover",
        "steps": [
            {"id": "take", "process": "recover"},
            {
                "id": "clear",
                "process": "operate",
                "activities": [{"id": "a", "responsibilities": {"tech": ["R"]}}],
            },
        ],
    }
    return document | members


def write(folder: Path, document: object, name: str = "doc.workflow.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_another_tools_workflow_is_placed_by_its_processes(tmp_path: Path) -> None:
    snippet = import_wif([write(tmp_path, workflow())])
    parsed = tomllib.loads(snippet)["workflows"]["it"]
    assert list(parsed) == ["profiles", "W4"]  # recover -> operate: incident without change
    assert parsed["profiles"] == {"tech": "tech"}  # a profile no document names: its id
    assert parsed["W4"]["steps"]["clear"]["activities"]["a"]["raci"] == {"tech": ["R"]}
    config = config_of(tmp_path / "cfg", UNITS + "\n" + snippet)
    assert list(config.workflows.of("it").workflows["W4"].steps) == ["take", "clear"]


def test_steps_follow_their_sort_index(tmp_path: Path) -> None:
    document = workflow()
    document["steps"][0]["sort-index"] = 2
    document["steps"][1]["sort-index"] = 1
    document["steps"].reverse()
    document["steps"] = [{"id": "back", "process": "recover", "sort-index": 3}, *document["steps"]]
    parsed = tomllib.loads(import_wif([write(tmp_path, document)]))
    assert list(parsed["workflows"]["it"]["W4"]["steps"]) == ["clear", "take", "back"]


@pytest.mark.parametrize(
    ("members", "words"),
    [
        (
            {"steps": [{"id": "s", "process": "recover"}]},
            "at $: its process and steps (recover) fit W3, W4; add the step of the process it "
            "forks to",
        ),
        (
            {
                "process": "improve",
                "steps": [{"id": "s", "process": "change"}, {"id": "t", "process": "agree"}],
            },
            "at $: its process and steps (change -> agree) follow none of the eight workflow "
            "patterns",
        ),
        (
            {"x-usm-bridge-pattern": "W3"},
            "at $['x-usm-bridge-pattern']: W3 does not fit the document's process and steps "
            "(recover -> operate)",
        ),
        ({"x-usm-bridge-pattern": "W12"}, "at $['x-usm-bridge-pattern']: not a workflow pattern"),
        ({"steps": [{"id": "s"}]}, "at $.steps[0]: no process"),
        ({"context": "IT Ops"}, "at $.context: 'IT Ops' is not a unit name"),
        # valid documents holding what the config cannot: refused before printing it
        (
            {"name": "n" * 1001},
            "the config it gives would be refused: key workflows.it.W4.name: String should "
            "have at most 1000",
        ),
        (
            {"created-by": {"id": ""}},
            "the config it gives would be refused: key workflows.it.W4.created_by.id: String "
            "should have at least 1",
        ),
    ],
)
def test_a_document_the_bridge_cannot_place_or_hold_is_refused(
    tmp_path: Path, members: dict[str, Any], words: str
) -> None:
    path = write(tmp_path, workflow(**members))
    with pytest.raises(WifDocumentError) as refused:
        import_wif([path])
    assert f"{path}: {words}" in str(refused.value)


def test_the_unit_option_places_a_document_anywhere(tmp_path: Path) -> None:
    path = write(tmp_path, workflow(context="IT Ops"))
    assert "[workflows.facilities.W4]" in import_wif([path], unit="facilities")
    with pytest.raises(WifDocumentError, match="--unit: 'Facilities' is not a unit name"):
        import_wif([path], unit="Facilities")


def test_documents_that_contradict_each_other_are_refused(tmp_path: Path) -> None:
    one = write(tmp_path, workflow(), "one.workflow.json")
    two = write(tmp_path, workflow(slug="other"), "two.workflow.json")
    with pytest.raises(WifDocumentError, match=f"{two}: configures W4 of unit 'it', as {one} does"):
        import_wif([one, two])
    named = write(
        tmp_path, workflow(profiles=[{"id": "tech", "name": "Technician"}]), "named.workflow.json"
    )
    renamed = workflow(
        profiles=[{"id": "tech", "name": "Engineer"}], steps=[{"id": "s", "process": "operate"}]
    )
    other = write(tmp_path, renamed | {"process": "operate"}, "w5.workflow.json")
    with pytest.raises(
        WifDocumentError,
        match=f"{other}: at \\$.profiles\\[0\\].name: profile 'tech' is named 'Technician' "
        f"in {named}",
    ):
        import_wif([named, other])


def test_every_bad_file_is_named_at_once(tmp_path: Path) -> None:
    good = write(tmp_path, workflow(), "good.workflow.json")
    bad = write(tmp_path, workflow(slug="Bad Slug"), "bad.workflow.json")
    broken = tmp_path / "broken.workflow.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(WifDocumentError) as refused:
        import_wif([good, bad, broken])
    message = str(refused.value)
    assert message.startswith("2 of 3 not imported: ")
    assert f"{bad}: not a valid USM-WIF document: at $.slug" in message
    assert f"{broken}: not JSON" in message
    assert str(good) not in message


HOSTILE = 'He said "hi"\\\n[store]\nurl = "sqlite:////tmp/x"\t\x7f\x01 😀 ünï'


def test_hostile_strings_stay_strings_in_the_printed_config(tmp_path: Path) -> None:
    document = workflow(
        name=HOSTILE, description=HOSTILE, profiles=[{"id": 'te ch."x"', "name": HOSTILE}]
    )
    document["steps"][1]["activities"][0]["responsibilities"] = {'te ch."x"': ["R"]}
    document["steps"][1]["id"] = "clear.\n[daemon]"
    snippet = import_wif([write(tmp_path, document)])
    parsed = tomllib.loads(snippet)
    assert list(parsed) == ["workflows"]
    it = parsed["workflows"]["it"]
    assert it["W4"]["name"] == HOSTILE and it["W4"]["description"] == HOSTILE
    assert it["profiles"] == {'te ch."x"': HOSTILE}
    assert list(it["W4"]["steps"]) == ["take", "clear.\n[daemon]"]
    config = config_of(tmp_path / "cfg", UNITS + "\n" + snippet)
    assert config.workflows.of("it").workflows["W4"].name == HOSTILE


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"])))
def test_any_text_reads_back_as_itself(text: str) -> None:
    parsed = tomllib.loads(f"{toml_key(text)} = {toml_value(text)}\n")
    assert parsed == {text: text}


def test_the_command_prints_the_config_or_only_checks(tmp_path: Path) -> None:
    files = [str(p) for p in exported_files(tmp_path)]
    printed = CliRunner().invoke(cli, ["import", "wif", *files])
    assert printed.exit_code == 0, printed.output
    assert "[workflows.it.W3.steps.restore.activities.log]" in printed.output
    checked = CliRunner().invoke(cli, ["import", "wif", "--check", *files])
    assert checked.exit_code == 0
    lines = checked.output.splitlines()
    assert len(lines) == len(files) == 12
    assert f"ok {tmp_path}/out/it-w3-incident-with-change.workflow.json: workflow it W3" in lines


def test_the_command_refuses_with_exit_2_and_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, workflow(process="fix"))
    for args in (["import", "wif", str(path)], ["import", "wif", "--check", str(path)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(
            f"error: 1 of 1 not imported: {path}: not a valid USM-WIF document: at $.process"
        )


def test_the_help_shows_examples() -> None:
    for command in (["export", "wif"], ["import", "wif"]):
        result = CliRunner().invoke(cli, [*command, "--help"])
        assert result.exit_code == 0
        assert f"usm-bridge {' '.join(command)} " in result.output.split("Examples:")[1]
