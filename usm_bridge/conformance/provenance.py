"""Who made a conformance report and from what: versions, file digests, the command, sign-off.

An auditor relies on a report only when they can tell what produced it. The provenance block
names the bridge's and every installed plugin distribution's version, the SHA-256 of the
config file, of each mapping file and of the exceptions register, and the command line with
any secret-like value masked. The sign-off block holds who prepared and who reviewed it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from importlib.metadata import entry_points, version
from pathlib import Path

import click
from pydantic import BaseModel, ConfigDict, Field

from ..config import BridgeConfig

__all__ = [
    "ComponentVersion",
    "FileDigest",
    "Provenance",
    "SignOff",
    "build_provenance",
    "command_line",
    "file_sha256",
    "mask_argv",
]

#: The entry point group every usm-bridge plugin (connectors included) registers in.
PLUGIN_GROUP = "usm_bridge"
#: Options whose value is masked in the recorded command line.
_SECRET_OPTION = re.compile(r"^--?[\w-]*(pass|secret|token|key|credential)[\w-]*$", re.I)
MASK = "***"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentVersion(_Model):
    """An installed distribution and the plugins it registers."""

    name: str
    version: str
    plugins: list[str] = Field(default_factory=list)


class FileDigest(_Model):
    """A file the report was made from and its SHA-256 (``null`` when it could not be read)."""

    path: str
    sha256: str | None
    instance: str | None = Field(default=None, description="the instance whose mapping it is")
    error: str | None = None


class Provenance(_Model):
    """What produced the report."""

    bridge_version: str
    plugins: list[ComponentVersion] = Field(
        description="every installed distribution registering usm-bridge plugins (connectors)"
    )
    config: FileDigest | None = Field(description="null for a config built in code")
    config_digest: str = Field(
        description='the config file\'s SHA-256 ("-" without a file); keys recorded scores'
    )
    mappings: list[FileDigest]
    exceptions_register: FileDigest | None = Field(
        default=None, description="the accepted-exceptions register applied, when one is"
    )
    command: list[str] = Field(description="the command line, secret-like values masked")


class SignOff(_Model):
    """The sign-off block: who prepared the report; reviewer and dates are signed on paper."""

    prepared_by: str | None = None


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _digest(path: Path, instance: str | None = None) -> FileDigest:
    try:
        return FileDigest(path=str(path), sha256=file_sha256(path), instance=instance)
    except OSError as exc:
        return FileDigest(path=str(path), sha256=None, instance=instance, error=exc.strerror)


def mask_argv(argv: Sequence[str]) -> list[str]:
    """The command line with the value of any password-, token- or key-like option masked
    (``--password x`` and ``--password=x``). No option of the command takes a secret today;
    this guards against one added later, or a plugin's."""
    masked: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            masked.append(MASK)
            hide_next = False
            continue
        name, equals, _ = arg.partition("=")
        if _SECRET_OPTION.match(name):
            if equals:
                masked.append(f"{name}={MASK}")
            else:
                masked.append(arg)
                hide_next = True
            continue
        masked.append(arg)
    return masked


def _plugin_versions() -> list[ComponentVersion]:
    found: dict[str, ComponentVersion] = {}
    for point in entry_points(group=PLUGIN_GROUP):
        dist = point.dist
        if dist is None or dist.name == "usm-bridge":
            continue  # the bridge's own built-in plugins: its version is bridge_version
        name = dist.metadata["Name"] or dist.name
        entry = found.setdefault(name, ComponentVersion(name=name, version=dist.version))
        entry.plugins.append(point.name)
    return sorted(found.values(), key=lambda component: component.name)


def _bridge_version() -> str:
    try:
        return version("usm-bridge")
    except Exception:  # an uninstalled checkout: say so rather than guess
        return "unknown"


def build_provenance(
    config: BridgeConfig, argv: Sequence[str], register: Path | None = None
) -> Provenance:
    """The provenance of a report made from ``config`` by the command ``argv``, with the
    accepted-exceptions ``register`` applied, if any."""
    config_file = _digest(config.path) if config.path is not None else None
    mappings = [
        _digest(instance.mapping, name) for name, instance in sorted(config.instances.items())
    ]
    return Provenance(
        bridge_version=_bridge_version(),
        plugins=_plugin_versions(),
        config=config_file,
        config_digest=(config_file.sha256 if config_file and config_file.sha256 else "-"),
        mappings=mappings,
        exceptions_register=_digest(register) if register is not None else None,
        command=mask_argv(argv),
    )


def command_line(ctx: click.Context) -> list[str]:
    """The command as it was given: its path and the options set on the command line (in
    the command's order, repeated ones once per value), as ``argv`` for :func:`mask_argv`.

    Rebuilt from Click's parsed parameters rather than read from ``sys.argv``, so it is the
    same whether the command runs from a shell or in a test runner.
    """
    words = [ctx.command_path]
    for param in ctx.command.params:
        if param.name is None or not isinstance(param, click.Option):
            continue
        if ctx.get_parameter_source(param.name) is not click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params.get(param.name)
        flag = max(param.opts, key=len)
        if param.is_flag:
            words.append(flag)
            continue
        for item in value if param.multiple and isinstance(value, tuple) else (value,):
            words += [flag, str(item)]
    return words
