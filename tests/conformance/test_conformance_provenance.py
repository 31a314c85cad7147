"""Provenance, the manifest of written files, and the sign-off block."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from conformance_enterprise import Enterprise

from usm_bridge.cli import cli
from usm_bridge.conformance.manifest import verify_manifest
from usm_bridge.conformance.provenance import mask_argv
from usm_bridge.conformance.report import published_schema
from usm_bridge.errors import ConfigurationError


@pytest.mark.parametrize(
    ("argv", "masked"),
    [
        (["--password", "hunter2", "-o", "r.html"], ["--password", "***", "-o", "r.html"]),
        (["--api-token=abc", "--period", "2026-03"], ["--api-token=***", "--period", "2026-03"]),
        (
            ["--client-secret", "s", "--key-file", "k"],
            ["--client-secret", "***", "--key-file", "***"],
        ),
        (["--prepared-by", "Ana", "--record"], ["--prepared-by", "Ana", "--record"]),
    ],
)
def test_secret_like_option_values_are_masked(argv: list[str], masked: list[str]) -> None:
    assert mask_argv(argv) == masked


def _invoke(enterprise: Enterprise, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["report", "conformance", "-c", str(enterprise.config_path), "--offline", *args]
    )
    return result.exit_code, result.stderr


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def written(enterprise: Enterprise, tmp_path: Path) -> Path:
    """The report as JSON in out/, its exports in out/x/, and the manifest beside it."""
    out = tmp_path / "out"
    code, err = _invoke(
        enterprise, "-f", "json", "-o", str(out / "report.json"), "--period", "2026-03",
        "--exceptions", str(out / "x" / "exceptions.csv"),
        "--exceptions", str(out / "x" / "exceptions.xlsx"),
        "--prepared-by", "Ana Auditor <qa>",
    )  # fmt: skip
    assert code == 0, err
    assert f"wrote {out / 'report.json.sha256'}: SHA-256 of each" in err.replace("\n", "")
    return out


def test_the_report_records_what_produced_it(enterprise: Enterprise, written: Path) -> None:
    data = json.loads((written / "report.json").read_text())
    jsonschema.Draft202012Validator(json.loads(published_schema())).validate(data)
    prov = data["provenance"]
    assert prov["bridge_version"] == version("usm-bridge")
    plugins = {p["name"]: p for p in prov["plugins"]}
    for name, entry in (("usm-bridge-jira", "jira"), ("usm-bridge-servicenow", "servicenow")):
        assert plugins[name]["version"] == version(name) and entry in plugins[name]["plugins"]
    assert "usm-bridge" not in plugins  # its version is bridge_version
    assert prov["config"]["sha256"] == prov["config_digest"] == _sha256(enterprise.config_path)
    mappings = {m["instance"]: m for m in prov["mappings"]}
    assert set(mappings) == set(enterprise.config.instances)
    for name, instance in enterprise.config.instances.items():
        assert mappings[name]["path"] == str(instance.mapping)
        assert mappings[name]["sha256"] == _sha256(instance.mapping)
    assert prov["exceptions_register"] is None
    assert prov["command"][1:] == [
        "--config", str(enterprise.config_path), "--format", "json",
        "--output", str(written / "report.json"), "--period", "2026-03", "--offline",
        "--exceptions", str(written / "x" / "exceptions.csv"),
        "--exceptions", str(written / "x" / "exceptions.xlsx"),
        "--prepared-by", "Ana Auditor <qa>",
    ]  # fmt: skip
    assert prov["command"][0].endswith("report conformance")
    assert data["sign_off"] == {"prepared_by": "Ana Auditor <qa>"}
    assert data["generated_at"] and data["period"]["label"] == "2026-03"


def test_the_manifest_lists_every_file_written_and_catches_a_change(written: Path) -> None:
    manifest = written / "report.json.sha256"
    lines = manifest.read_text().splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == [
        "report.json", "x/exceptions.csv", "x/exceptions.xlsx",
    ]  # fmt: skip
    for line in lines:
        digest, name = line.split("  ", 1)
        assert digest == _sha256(written / name)
    assert verify_manifest(manifest) == dict.fromkeys(
        ("report.json", "x/exceptions.csv", "x/exceptions.xlsx"), True
    )
    with (written / "x" / "exceptions.csv").open("a") as handle:
        handle.write("forged,row\n")
    (written / "x" / "exceptions.xlsx").unlink()
    assert verify_manifest(manifest) == {
        "report.json": True, "x/exceptions.csv": False, "x/exceptions.xlsx": False,
    }  # fmt: skip


def test_sha256sum_checks_the_manifest(written: Path) -> None:
    tool = shutil.which("sha256sum")
    if tool is None:
        pytest.skip("sha256sum (GNU coreutils) is not installed; verify_manifest is tested")
    manifest = "report.json.sha256"
    done = subprocess.run([tool, "-c", manifest], cwd=written, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "report.json: OK", "x/exceptions.csv: OK", "x/exceptions.xlsx: OK",
    ]  # fmt: skip
    (written / "report.json").write_text("{}")
    done = subprocess.run([tool, "-c", manifest], cwd=written, capture_output=True, text=True)
    assert done.returncode == 1 and "report.json: FAILED" in done.stdout


def test_a_malformed_manifest_line_is_named(tmp_path: Path) -> None:
    manifest = tmp_path / "r.sha256"
    manifest.write_text(f"{'0' * 64}  r.html\nnot a line\n")
    with pytest.raises(ConfigurationError, match="not a sha256sum line") as caught:
        verify_manifest(manifest)
    assert caught.value.where == f"{manifest}:2"


def test_standard_output_writes_no_manifest(enterprise: Enterprise, tmp_path: Path) -> None:
    code, err = _invoke(enterprise, "-f", "json", "--exceptions", str(tmp_path / "x.csv"))
    assert code == 0 and "sha256" not in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".sha256") == []


def test_html_and_markdown_carry_provenance_and_the_sign_off(enterprise: Enterprise) -> None:
    result = CliRunner().invoke(
        cli, ["report", "conformance", "-c", str(enterprise.config_path), "--offline",
              "--prepared-by", "Ana \u202eAuditor"],
    )  # fmt: skip
    html = result.stdout
    assert '<section id="provenance">' in html and '<section id="sign-off">' in html
    assert '<td class="line" id="prepared-by"><bdi>Ana \u202eAuditor</bdi></td>' in html
    assert html.count('<tr class="mapping-digest">') == len(enterprise.config.instances)
    assert _sha256(enterprise.config_path) in html
    markdown = CliRunner().invoke(
        cli, ["report", "conformance", "-c", str(enterprise.config_path), "--offline",
              "-f", "markdown", "--prepared-by", "Ana Auditor"],
    ).stdout  # fmt: skip
    assert "| Prepared by | Ana Auditor | | |" in markdown
    assert f"SHA-256 {_sha256(enterprise.config_path)}" in markdown
