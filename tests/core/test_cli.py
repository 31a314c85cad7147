"""The command line: clean exit codes and one clear message, never a traceback for a mistake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from usm_bridge.cli import cli
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "usm_bridge", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int = 2) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout


def test_help_teaches_where_to_start() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "check", "connectors", "mapping", "schema", "dead-letters"):
        assert command in result.output


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "usm-bridge" in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = run("frobnicate")
    assert_clean_failure(result)
    assert "No such command" in result.stderr


def test_init_writes_a_valid_starter_and_refuses_to_overwrite(tmp_path: Path) -> None:
    result = run("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "usm-bridge.toml").exists()
    assert "next: edit it" in result.stdout
    again = run("init", cwd=tmp_path)
    assert_clean_failure(again)
    assert "file exists; pass --force" in again.stderr
    assert run("init", "--force", cwd=tmp_path).returncode == 0


def test_check_without_config_points_to_init(tmp_path: Path) -> None:
    result = run("check", cwd=tmp_path)
    assert_clean_failure(result)
    assert "usm-bridge.toml" in result.stderr and "usm-bridge init" in result.stderr


def test_check_reports_a_broken_config_with_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[units.hr]\n\n[instances.x]\nunit = "hr"\nkind = "acme"\n', encoding="utf-8")
    result = run("check", "--config", str(path))
    assert_clean_failure(result)
    assert f"{path}:3: key instances.x.mapping" in result.stderr
    assert "Field required" in result.stderr


def test_check_reports_a_connector_kind_that_is_not_installed(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(
        '[units.hr]\n\n[instances.x]\nunit = "hr"\nkind = "nosuchtool"\nmapping = "m.yaml"\n',
        encoding="utf-8",
    )
    result = run("check", "--config", str(path))
    assert_clean_failure(result)
    assert ":5: key instances.x.kind" in result.stderr
    assert "no connector of kind 'nosuchtool' is installed" in result.stderr
    assert "acme" in result.stderr  # lists what is installed


def test_check_hides_secrets_of_invalid_connector_settings(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(
        '[store]\nurl = "postgresql+psycopg://u:pw-123@db/x"\n[units.hr]\n\n'
        '[instances.x]\nunit = "hr"\nkind = "acme"\nmapping = "m.yaml"\n'
        '[instances.x.settings]\nbase_url = "${TOKEN}"\nsurprise = "${TOKEN}"\n',
        encoding="utf-8",
    )
    result = run("check", "--config", str(path), env={"TOKEN": "tok-SECRET", "PATH": "/usr/bin"})
    assert_clean_failure(result)
    assert ":11: key instances.x.settings.surprise" in result.stderr
    assert "tok-SECRET" not in result.stderr + result.stdout
    assert "pw-123" not in result.stderr + result.stdout


def test_schema_exports_valid_json_schema(tmp_path: Path) -> None:
    result = run("schema")
    assert result.returncode == 0
    document = json.loads(result.stdout)
    assert document["$schema"].endswith("2020-12/schema")
    call = document["$defs"]["Call"]
    assert {"unit", "title", "created", "updated"} <= set(call["required"])
    assert document["$defs"]["CallType"]["enum"] == [
        "wish",
        "rfc",
        "service_request",
        "incident",
        "risk",
        "unclassified",
    ]
    out = tmp_path / "call.json"
    assert run("schema", "--model", "call", "-o", str(out)).returncode == 0
    assert json.loads(out.read_text())["title"] == "Call"


def test_schema_validates_a_dumped_call() -> None:
    from datetime import UTC, datetime

    import jsonschema

    from usm_bridge.model import Call
    from usm_bridge.schema import json_schema

    t = datetime(2026, 1, 1, tzinfo=UTC)
    call = Call(
        unit="it",
        title="x",
        call_type="incident",
        created=t,
        updated=t,
        status="waiting",
        waiting_on="customer",
    )
    jsonschema.validate(call.model_dump(mode="json"), json_schema("call"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {**call.model_dump(mode="json"), "call_type": "bug"}, json_schema("call")
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\ntool: x\nfields:\n  title: {path: a, requird: true}\n", ":4: key "),
        ("version: 1\ntool: x\nfields:\n  title: {path: a\n", "line 4"),
        ("version: 1\ntool: x\nfields:\n  title: {path: a, transform: nope}\n", "nope"),
        ("version: 2\ntool: x\nfields:\n  title: {path: a}\n", ":1: key version"),
    ],
    ids=["unknown-key", "yaml-syntax", "unknown-transform", "wrong-version"],
)
def test_mapping_check_reports_broken_files_cleanly(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    result = run("mapping", "check", str(path))
    assert_clean_failure(result)
    assert "broken.yaml" in result.stderr and expected in result.stderr, result.stderr


def test_mapping_check_and_apply_on_a_shipped_mapping(tmp_path: Path) -> None:
    shipped = SHIPPED_MAPPINGS_DIR / "servicenow-incident.yaml"
    checked = run("mapping", "check", str(shipped))
    assert checked.returncode == 0, checked.stderr
    record = tmp_path / "incident.json"
    record.write_text(
        json.dumps(
            {
                "sys_id": "a" * 32,
                "number": "INC0010001",
                "short_description": "<script>alert(1)</script> printer",
                "state": "3",
                "hold_reason": "4",
                "impact": "1",
                "urgency": "2",
                "priority": "2",
                "opened_at": "2026-03-01 09:00:00",
                "sys_updated_on": "2026-03-01 10:00:00",
            }
        ),
        encoding="utf-8",
    )
    applied = run("mapping", "apply", str(shipped), str(record), "--unit", "it", "--outbound")
    assert applied.returncode == 0, applied.stderr
    result = json.loads(applied.stdout)
    call = result["call"]
    assert call["title"] == "<script>alert(1)</script> printer"  # kept verbatim, never run
    assert (call["call_type"], call["status"], call["waiting_on"]) == (
        "incident",
        "waiting",
        "supplier",
    )
    assert (call["impact"], call["urgency"], call["priority"]) == ("high", "medium", "high")
    assert result["draft"]["status"] == "3"


def test_mapping_apply_of_an_unmappable_record_names_field_and_value(tmp_path: Path) -> None:
    shipped = SHIPPED_MAPPINGS_DIR / "servicenow-incident.yaml"
    record = tmp_path / "bad.json"
    record.write_text('{"sys_id": "1", "short_description": "x", "state": "42"}', "utf-8")
    result = run("mapping", "apply", str(shipped), str(record))
    assert_clean_failure(result, code=1)
    assert "state" in result.stderr and "42" in result.stderr
    not_json = tmp_path / "broken.json"
    not_json.write_text("{nope", "utf-8")
    result = run("mapping", "apply", str(shipped), str(not_json))
    assert_clean_failure(result)
    assert "broken.json:1" in result.stderr and "not valid JSON" in result.stderr
