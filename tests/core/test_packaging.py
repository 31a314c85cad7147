"""What the built wheels tell pip and licence scanners: the Apache-2.0 licence (expression and
full text), the PostgreSQL driver as an extra, and each connector's bounded range of the core.

The wheels are built by pip from copies of the sources (so the tree gets no build/ folders),
and read back from their METADATA, as a package index or an auditor would read them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LICENSE = (ROOT / "LICENSE").read_text(encoding="utf-8")
CORE_VERSION = Version(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])
#: distribution name -> its source folder.
DISTRIBUTIONS = {
    "usm_bridge": ROOT,
    "usm_bridge_email": ROOT / "connectors" / "email",
    "usm_bridge_jira": ROOT / "connectors" / "jira",
    "usm_bridge_servicenow": ROOT / "connectors" / "servicenow",
    "usm_bridge_acme": ROOT / "tests" / "plugins" / "thirdparty_connector",
}
CONNECTORS = sorted(set(DISTRIBUTIONS) - {"usm_bridge"})
_SKIPPED = shutil.ignore_patterns(
    ".*", "build", "dist", "*.egg-info", "__pycache__", "tests", "bench", "docs", "examples",
    "connectors", "demo-run", "test-artifacts",
)  # fmt: skip


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    sources = tmp_path_factory.mktemp("sources")
    out = tmp_path_factory.mktemp("wheels")
    copies = []
    for name, folder in DISTRIBUTIONS.items():
        copy = sources / name
        shutil.copytree(folder, copy, ignore=_SKIPPED)
        copies.append(str(copy))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), *copies],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    built = {path.name.split("-")[0]: path for path in out.glob("*.whl")}
    assert sorted(built) == sorted(DISTRIBUTIONS)
    return built


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
