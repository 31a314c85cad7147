"""``usm-bridge init``: write the starter config and its mappings, then say what comes next."""

from __future__ import annotations

import shlex
from collections.abc import Collection
from pathlib import Path

from ..config import DEFAULT_CONFIG_NAME
from ..errors import ConfigurationError
from ..mapping.files import copy_shipped_mappings
from ..plugins import PluginHost
from . import MAPPINGS_FOLDER, render_starter

__all__ = ["write_starter"]


def write_starter(
    path: Path, host: PluginHost, *, kinds: Collection[str] = (), force: bool = False
) -> list[str]:
    """Write the starter config to ``path`` and copy the shipped mappings beside it.

    :returns: the lines to show: what was written, then the next steps.
    :raises ConfigurationError: ``path`` exists and ``force`` is not set, or cannot be written.
    :raises PluginError: a kind in ``kinds`` that is not installed.
    """
    if path.exists() and not force:
        raise ConfigurationError("file exists; pass --force to overwrite it", where=str(path))
    starter = render_starter(host, kinds)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(starter.text, encoding="utf-8")
        copied = copy_shipped_mappings(path.parent / MAPPINGS_FOLDER)
    except OSError as exc:
        raise ConfigurationError(f"cannot write: {exc.strerror}", where=str(path)) from None
    lines = [f"wrote {path}"]
    lines.extend(f"copied shipped mapping {file}" for file in copied)
    return lines + next_steps(path, starter.env_vars)


def next_steps(path: Path, env_vars: Collection[str]) -> list[str]:
    """What to do after ``init``, with the config named when it is not the default one."""
    config = "" if str(path) == DEFAULT_CONFIG_NAME else f" -c {shlex.quote(str(path))}"
    lines = ["next: edit it (your tools' addresses, accounts and projects), then"]
    if env_vars:
        lines.append("  export " + " ".join(f"{name}=..." for name in env_vars))
    lines += [
        f"  usm-bridge check{config} --offline   # the files only",
        f"  usm-bridge check{config}             # sign in to every tool, open the store",
        f"  usm-bridge sync{config} --once       # one sync cycle of every instance",
    ]
    return lines
