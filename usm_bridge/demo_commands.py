"""The commands ``usm-bridge demo`` prints at its end, written so they work as printed.

After ``make demo`` the virtualenv is not activated: ``usm-bridge`` alone is not on the PATH,
so the demo names the program the way it was started (``.venv/bin/usm-bridge``), and the
config path relative to the working directory it ran in (absolute when outside it).
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

__all__ = ["PROGRAM", "follow_up_commands", "invoked_as"]

PROGRAM = "usm-bridge"


def invoked_as(argv0: str, cwd: Path, *, executable: str = sys.executable) -> str:
    """How to start this usm-bridge again from ``cwd``, given the ``argv[0]`` it was started as.

    ``usm-bridge`` when that name on the PATH is this very program; else its path, relative to
    ``cwd`` when below it; ``python -m usm_bridge`` (this interpreter) when started that way.
    """
    script = Path(argv0) if Path(argv0).is_absolute() else cwd / argv0
    if script.name == "__main__.py":
        return f"{_shown(Path(executable), cwd)} -m usm_bridge"
    on_path = shutil.which(PROGRAM)
    if on_path is not None and script.exists() and Path(on_path).resolve() == script.resolve():
        return PROGRAM
    if script.name != PROGRAM or not script.exists():
        return PROGRAM
    return _shown(script, cwd)


def follow_up_commands(program: str, config: str, reference: str | None = None) -> list[str]:
    """The read-only commands the demo suggests for its run folder: they read the store only
    (the demo's tools are gone by then); with ``reference`` (HR's call), its trace too."""
    option = f"-c {shlex.quote(config)}"
    commands = [
        f"{program} status {option}",
        f"{program} dead-letters list {option}",
        f"{program} check --offline {option}",
    ]
    if reference is not None:
        commands.append(f"{program} trace {shlex.quote(reference)} {option}")
    return commands


def _shown(path: Path, cwd: Path) -> str:
    absolute = path if path.is_absolute() else cwd / path
    try:
        relative = absolute.relative_to(cwd)
    except ValueError:
        return shlex.quote(str(absolute))
    # A bare name would be looked up on the PATH: ./usm-bridge names the file here.
    return shlex.quote(str(relative) if relative.parent != Path() else f"./{relative}")
