"""What the built wheels tell pip and licence scanners: the Apache-2.0 licence (expression and
full text), the PostgreSQL driver as an extra, and each connector's bounded range of the core.

The wheels (the ``wheels`` fixture, tests/core/wheel_builds.py) are read back from their
METADATA, as a package index or an auditor would read them. The core's wheel also registers no
pytest plugin and carries the shipped mappings, the demo's sample enterprise and the USM-WIF
schema.
"""

from __future__ import annotations

import configparser
import tomllib
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from wheel_builds import DISTRIBUTIONS, ROOT

LICENSE = (ROOT / "LICENSE").read_text(encoding="utf-8")
CORE_VERSION = Version(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])
CONNECTORS = sorted(set(DISTRIBUTIONS) - {"usm_bridge"})


def metadata(wheel: Path) -> tuple[Message, dict[str, str]]:
    """The wheel's METADATA headers, and the text of each file under .dist-info/licenses/."""
    with zipfile.ZipFile(wheel) as archive:
        (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        headers = HeaderParser().parsestr(archive.read(meta).decode("utf-8"))
        licenses = {
            name.split(".dist-info/licenses/", 1)[1]: archive.read(name).decode("utf-8")
            for name in archive.namelist()
            if ".dist-info/licenses/" in name
        }
    return headers, licenses


def test_the_licence_file_is_the_full_apache_2_0_text() -> None:
    assert LICENSE.lstrip().startswith("Apache License\n                           Version 2.0")
    assert "END OF TERMS AND CONDITIONS" in LICENSE
    assert "APPENDIX: How to apply the Apache License to your work." in LICENSE
    for folder in DISTRIBUTIONS.values():
        assert (folder / "LICENSE").read_text(encoding="utf-8") == LICENSE, folder


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_each_wheel_carries_the_licence_expression_and_text(
    wheels: dict[str, Path], name: str
) -> None:
    headers, licenses = metadata(wheels[name])
    assert headers["Metadata-Version"] >= "2.4"  # the version that has License-Expression
    assert headers["License-Expression"] == "Apache-2.0"
    assert headers.get_all("License-File") == ["LICENSE"]
    assert licenses == {"LICENSE": LICENSE}


def test_the_postgresql_driver_is_an_extra_of_the_core(wheels: dict[str, Path]) -> None:
    headers, _ = metadata(wheels["usm_bridge"])
    assert "postgresql" in headers.get_all("Provides-Extra", [])
    requirements = [Requirement(r) for r in headers.get_all("Requires-Dist", [])]
    (psycopg,) = [r for r in requirements if r.name == "psycopg"]
    assert psycopg.marker is not None
    assert psycopg.marker.evaluate({"extra": "postgresql"})
    assert not psycopg.marker.evaluate({"extra": ""})  # a plain install does not pull it


@pytest.mark.parametrize("name", CONNECTORS)
def test_each_connector_requires_the_core_minor_release_it_was_built_for(
    wheels: dict[str, Path], name: str
) -> None:
    headers, _ = metadata(wheels[name])
    (core,) = [
        Requirement(r) for r in headers.get_all("Requires-Dist", []) if r.startswith("usm-bridge")
    ]
    major, minor = CORE_VERSION.major, CORE_VERSION.minor
    assert str(core.specifier) == f"<{major}.{minor + 1},>={major}.{minor}"
    assert CORE_VERSION in core.specifier
    assert Version(f"{major}.{minor}.99") in core.specifier
    assert Version(f"{major}.{minor + 1}.0") not in core.specifier
    assert Version(f"{major}.{minor + 1}.0rc1") not in core.specifier


@pytest.mark.parametrize("name", ["usm_bridge_email", "usm_bridge_jira", "usm_bridge_servicenow"])
def test_each_connector_readme_states_its_core_range(name: str) -> None:
    readme = (DISTRIBUTIONS[name] / "README.md").read_text(encoding="utf-8")
    major, minor = CORE_VERSION.major, CORE_VERSION.minor
    assert f"usm-bridge>={major}.{minor},<{major}.{minor + 1}" in readme


def entry_point_groups(wheel: Path) -> dict[str, dict[str, str]]:
    """The wheel's entry_points.txt: group -> {name: object reference}."""
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = lambda option: option  # names keep their case
    with zipfile.ZipFile(wheel) as archive:
        (points,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        parser.read_string(archive.read(points).decode("utf-8"))
    return {group: dict(parser[group]) for group in parser.sections()}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_no_wheel_registers_a_pytest_plugin(wheels: dict[str, Path], name: str) -> None:
    groups = entry_point_groups(wheels[name])
    assert "usm_bridge" in groups  # the file was read: every distribution here is a plugin
    assert "pytest11" not in groups


def test_the_core_wheel_keeps_its_command_and_builtin_plugins(wheels: dict[str, Path]) -> None:
    groups = entry_point_groups(wheels["usm_bridge"])
    assert groups["console_scripts"] == {"usm-bridge": "usm_bridge.cli:main"}
    assert set(groups["usm_bridge"]) == {
        "builtin_mapping",
        "builtin_conformance_checks",
        "builtin_report_renderers",
    }


def test_the_core_wheel_carries_the_mappings_and_the_sample_enterprise(
    wheels: dict[str, Path],
) -> None:
    data = ROOT / "usm_bridge" / "data"
    expected = {
        path.relative_to(ROOT).as_posix(): path.read_bytes()
        for path in data.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert "usm_bridge/data/enterprise/usm-bridge.toml" in expected
    assert "usm_bridge/data/mappings/servicenow-incident.yaml" in expected
    with zipfile.ZipFile(wheels["usm_bridge"]) as archive:
        shipped = {
            name: archive.read(name)
            for name in archive.namelist()
            if name.startswith("usm_bridge/data/")
        }
        # Package data only: nothing installed outside the package (no share/ data files).
        assert not [name for name in archive.namelist() if ".data/" in name]
    assert shipped == expected


def test_the_core_wheel_carries_the_workflow_interchange_schema(wheels: dict[str, Path]) -> None:
    # import wif validates against it, read from the installed package.
    name = "usm_bridge/wif/schema/usm-workflow.schema.json"
    with zipfile.ZipFile(wheels["usm_bridge"]) as archive:
        assert archive.read(name) == (ROOT / name).read_bytes()
