"""After ``make demo`` the commands work as printed: the ones the demo prints at its end, and
the README's read-only ones after ``make demo``, run from the folder the demo ran in.

The module runs the demo once as ``make demo`` does, ``.venv/bin/usm-bridge demo`` with the
virtualenv not activated (``.venv`` in a temporary folder links to this virtualenv's
program). The README's bare ``usm-bridge`` commands run as its text says: with the virtualenv
activated and ``USM_BRIDGE_CONFIG`` naming the demo's config.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo.demo_checks import assert_narrated, assert_run_folder, follow_up_commands
from usm_bridge.demo_commands import invoked_as

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
VENV_PROGRAM = ".venv/bin/usm-bridge"
_FENCE = re.compile(r"^```")


def readme_commands_after_make_demo(text: str) -> list[str]:
    """Each ``usm-bridge`` / ``.venv/bin/usm-bridge`` line of a fenced block, from the block
    that first runs ``make demo`` on."""
    commands: list[str] = []
    inside = seen_demo = False
    continued = ""  # a command continued on the next line with a trailing backslash
    for line in text.splitlines():
        if _FENCE.match(line):
            inside = not inside
            continued = ""
            continue
        if not inside:
            continue
        stripped = continued + line.strip()
        if stripped.endswith("\\"):
            continued = stripped[:-1]
            continue
        continued = ""
        if stripped.startswith("make demo"):
            seen_demo = True
        if seen_demo and (stripped.startswith(("usm-bridge ", f"{VENV_PROGRAM} "))):
            commands.append(stripped)
    return commands


def read_only(argv: list[str]) -> bool:
    """Whether a usm-bridge command only reads (so it may run against the demo's store)."""
    args = argv[1:]
    if "--help" in args:
        return True
    words: list[str] = []
    skip = False
    for arg in args:  # the command's words, without options and the config option's value
        if skip:
            skip = False
        elif arg in ("-c", "--config"):
            skip = True
        elif not arg.startswith("-"):
            words.append(arg)
    match words[:2]:
        case ["status" | "trace" | "connectors", *_] | ["dead-letters", "list"] | ["db", "status"]:
            return True
        case ["check", *_]:
            return "--offline" in args  # online it signs in to the tools, gone after the demo
        case ["report", *_]:
            return "--fail-under" not in args  # that one exits 3 below the score, on purpose
    return False


README_COMMANDS = readme_commands_after_make_demo(README.read_text(encoding="utf-8"))
READ_ONLY = [line for line in README_COMMANDS if read_only(shlex.split(line, comments=True))]


@dataclass(frozen=True)
class DemoFolder:
    cwd: Path
    screen: str

    def environment(self, *, activated: bool) -> dict[str, str]:
        path = os.defpath if not activated else f"{self.cwd / '.venv' / 'bin'}{os.pathsep}"
        env = {k: v for k, v in os.environ.items() if k not in ("PATH", "USM_BRIDGE_CONFIG")}
        env["PATH"] = path + (os.defpath if activated else "")
        if activated:
            env["USM_BRIDGE_CONFIG"] = "demo-run/usm-bridge.toml"
        return env

    def run(self, argv: list[str], *, activated: bool) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=self.cwd,
            env=self.environment(activated=activated),
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> DemoFolder:
    """A folder where ``.venv/bin/usm-bridge demo`` ran, as ``make demo`` runs it."""
    cwd = tmp_path_factory.mktemp("checkout")
    program = Path(sysconfig.get_path("scripts")) / "usm-bridge"
    assert program.is_file(), f"{program}: usm-bridge is not installed in this environment"
    (cwd / ".venv" / "bin").mkdir(parents=True)
    (cwd / VENV_PROGRAM).symlink_to(program)
    folder = DemoFolder(cwd, "")
    result = folder.run(
        [VENV_PROGRAM, "demo", "--run-dir", "demo-run", "--interval", "1"], activated=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return DemoFolder(cwd, result.stdout)


def test_the_readme_shows_the_commands_to_run_after_make_demo() -> None:
    text = README.read_text(encoding="utf-8")
    assert [c for c in README_COMMANDS if c.startswith(f"{VENV_PROGRAM} ") and "demo-run/" in c]
    # Bare `usm-bridge` commands need the virtualenv activated; the README says how.
    assert "source .venv/bin/activate" in text
    assert READ_ONLY


def test_the_commands_the_demo_prints_work_as_printed(demo_folder: DemoFolder) -> None:
    assert_narrated(demo_folder.screen)
    assert_run_folder(demo_folder.cwd / "demo-run")
    commands = follow_up_commands(demo_folder.screen)
    for argv in commands:
        assert argv[0] == VENV_PROGRAM  # not on the PATH: the demo names it as it was started
        assert "demo-run/usm-bridge.toml" in argv  # relative to where the demo ran
        done = demo_folder.run(argv, activated=False)
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("line", READ_ONLY)
def test_each_read_only_readme_command_works_after_make_demo(
    demo_folder: DemoFolder, line: str
) -> None:
    argv = shlex.split(line, comments=True)
    activated = argv[0] == "usm-bridge"  # the README says to activate the virtualenv for these
    done = demo_folder.run(argv, activated=activated)
    assert done.returncode == 0, (line, done.stdout[-2000:], done.stderr[-2000:])
    # The demo's tools are gone by now: a report says so in one line, never with a traceback.
    assert "Traceback" not in done.stderr, (line, done.stderr[-2000:])


def test_the_read_only_filter_keeps_only_what_reads() -> None:
    def keeps(line: str) -> bool:
        return read_only(shlex.split(line, comments=True))

    assert keeps("usm-bridge status -c demo-run/usm-bridge.toml  # comment")
    assert keeps(".venv/bin/usm-bridge -c x.toml dead-letters list")
    assert keeps("usm-bridge check --offline")
    assert keeps("usm-bridge sync --help")
    assert not keeps("usm-bridge check")
    assert not keeps("usm-bridge sync --once")
    assert not keeps("usm-bridge dead-letters retry")
    assert not keeps("usm-bridge report conformance --fail-under 80")


# --- how the demo names the program in the commands it prints -------------------------------


def _program(folder: Path) -> Path:
    program = folder / "usm-bridge"
    program.parent.mkdir(parents=True, exist_ok=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    return program


def test_a_program_below_the_folder_and_not_on_the_path_is_named_by_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _program(tmp_path / ".venv" / "bin")
    monkeypatch.setenv("PATH", os.defpath)
    assert invoked_as(".venv/bin/usm-bridge", tmp_path) == ".venv/bin/usm-bridge"
    assert invoked_as(str(tmp_path / ".venv/bin/usm-bridge"), tmp_path) == ".venv/bin/usm-bridge"
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    assert invoked_as(str(tmp_path / ".venv/bin/usm-bridge"), elsewhere) == str(
        tmp_path / ".venv/bin/usm-bridge"
    )


def test_the_program_on_the_path_is_named_usm_bridge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = _program(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{program.parent}{os.pathsep}{os.defpath}")
    assert shutil.which("usm-bridge") == str(program)
    assert invoked_as(str(program), tmp_path / "elsewhere") == "usm-bridge"


def test_odd_paths_are_quoted_and_python_m_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", os.defpath)
    program = _program(tmp_path / "my tools")
    assert invoked_as(str(program), tmp_path) == "'my tools/usm-bridge'"
    _program(tmp_path)
    assert invoked_as("usm-bridge", tmp_path) == "./usm-bridge"  # this folder's, not the PATH's
    main = "/venv/lib/python3.11/site-packages/usm_bridge/__main__.py"
    python_m = invoked_as(main, tmp_path, executable="/venv/bin/python")
    assert python_m == "/venv/bin/python -m usm_bridge"


def test_a_command_continued_with_a_backslash_is_one_command() -> None:
    text = (
        "```sh\nmake demo\nusm-bridge report conformance --period 2026-03 \\\n"
        "    -o mar/report.html\nusm-bridge status\n```\n"
    )
    assert readme_commands_after_make_demo(text) == [
        "usm-bridge report conformance --period 2026-03 -o mar/report.html",
        "usm-bridge status",
    ]
