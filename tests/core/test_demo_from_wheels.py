"""`usm-bridge demo` from installed wheels: the core and the three connectors installed into a
clean virtualenv (no repository on its path), the demo run from a folder outside the
repository. It finds its sample enterprise and mappings as package data, carries the onboarding
along the chain, and its printed follow-up commands work as printed. Without one connector it
names the distribution to install, exit 1, no traceback.

The dependencies come from the package index pip is configured with (a mirror, a wheelhouse);
when none answers the tests skip saying so, except with ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from demo.demo_checks import (
    assert_narrated,
    assert_run_folder,
    chain_calls,
    follow_up_commands,
)
from wheel_builds import ROOT

#: The demo needs these wheels (the connectors hold the simulators), and aiosmtpd from the index.
DEMO_WHEELS = ("usm_bridge", "usm_bridge_email", "usm_bridge_jira", "usm_bridge_servicenow")
#: What pip says when no package index answers (as opposed to a broken requirement).
_OFFLINE = ("Failed to establish a new connection", "Temporary failure in name resolution",
            "Network is unreachable", "No route to host")  # fmt: skip


@dataclass(frozen=True)
class WheelEnv:
    root: Path
    wheels: dict[str, Path]

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def run(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """A program of the virtualenv, with an environment that knows nothing of the repo."""
        env = {
            "PATH": os.defpath,
            "HOME": os.environ.get("HOME", str(cwd)),
            "LANG": "C.UTF-8",
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        }
        return subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600
        )

    def pip(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        # pip's own configuration (its index, mirror, wheelhouse) is the machine's: keep it.
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        env.pop("PYTHONPATH", None)
        return subprocess.run(
            [str(self.bin / "python"), "-m", "pip", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true: the install from wheels is required)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def wheel_env(
    wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WheelEnv]:
    """A clean virtualenv with the four wheels installed, and their dependencies."""
    root = tmp_path_factory.mktemp("wheel-venv")
    venv.create(root, with_pip=True, clear=True)
    env = WheelEnv(root, wheels)
    result = env.pip(
        "install", "--quiet", *(str(wheels[n]) for n in DEMO_WHEELS), "aiosmtpd>=1.4", cwd=root
    )
    if result.returncode != 0 and any(sign in result.stderr for sign in _OFFLINE):
        _unavailable(f"no package index answers pip: {result.stderr.strip()[-400:]}")
    assert result.returncode == 0, result.stderr
    yield env


@dataclass(frozen=True)
class DemoRun:
    cwd: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def demo_run(wheel_env: WheelEnv, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """``usm-bridge demo`` of the virtualenv, run once from a folder outside the repository."""
    cwd = tmp_path_factory.mktemp("outside")
    assert ROOT not in cwd.parents
    result = wheel_env.run(
        str(wheel_env.bin / "usm-bridge"), "demo", "--run-dir", "demo-run", "--interval", "1",
        cwd=cwd,
    )  # fmt: skip
    return DemoRun(cwd, result)


def test_the_demo_runs_from_installed_wheels(wheel_env: WheelEnv, demo_run: DemoRun) -> None:
    result = demo_run.result
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    assert_narrated(result.stdout)
    run_dir = demo_run.cwd / "demo-run"
    assert_run_folder(run_dir)
    hr, facilities, laptop = chain_calls(run_dir / "usm-bridge.toml")
    assert hr.source is not None and hr.source.remote_key == "HR-1"
    assert facilities.source is not None and facilities.source.remote_key == "FAC-1"
    assert laptop.source is not None and laptop.source.remote_key.startswith("RITM")
    # The mappings came from the installed package, not from a repository.
    config = tomllib.loads((run_dir / "usm-bridge.toml").read_text(encoding="utf-8"))
    mappings = [Path(i["mapping"]) for i in config["instances"].values()]
    site = wheel_env.root.resolve()
    assert mappings and all(site in m.parents and m.is_file() for m in mappings), mappings
    assert all("/usm_bridge/data/" in m.as_posix() for m in mappings)


def test_the_commands_the_demo_prints_work_as_printed(
    wheel_env: WheelEnv, demo_run: DemoRun
) -> None:
    assert demo_run.result.returncode == 0, demo_run.result.stderr[-4000:]
    commands = follow_up_commands(demo_run.result.stdout)
    for command in commands:
        # Not on the PATH, outside the working folder: the program is named by its full path.
        assert command[0] == str(wheel_env.bin / "usm-bridge"), command
        done = wheel_env.run(*command, cwd=demo_run.cwd)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr


def test_without_a_connector_the_demo_names_the_distribution_to_install(
    wheel_env: WheelEnv, tmp_path: Path
) -> None:
    removed = wheel_env.pip("uninstall", "--yes", "usm-bridge-jira", cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    try:
        result = wheel_env.run(
            str(wheel_env.bin / "usm-bridge"), "demo", "--run-dir", "demo-run", cwd=tmp_path
        )
    finally:
        back = wheel_env.pip(
            "install", "--quiet", "--no-deps", str(wheel_env.wheels["usm_bridge_jira"]),
            cwd=tmp_path,
        )  # fmt: skip
        assert back.returncode == 0, back.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    message = result.stdout + result.stderr
    assert "usm-bridge-jira" in message
    assert "pip install usm-bridge-jira" in message
    assert "usm-bridge-servicenow" not in message  # only what is missing
    assert "Traceback" not in message
    assert not (tmp_path / "demo-run").exists()  # nothing started, nothing written
