"""The deployment files as the tests read them: the Dockerfile's stages (parsed by
dockerfile-parse), the build context that .dockerignore leaves (as the Docker SDK computes it),
compose.yaml, the container's config and the systemd unit."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"
CONTAINER_CONFIG = ROOT / "deploy" / "compose" / "usm-bridge.toml"
UNIT = ROOT / "deploy" / "systemd" / "usm-bridge.service"
#: The unit of ``usm-bridge serve``, the event receiver beside Celery workers.
SERVE_UNIT = ROOT / "deploy" / "systemd" / "usm-bridge-serve.service"
MAILBOX_CONFIG = Path(__file__).parent / "mailbox-usm-bridge.toml"
#: Where the image links the shipped mapping files: beside its config.
IMAGE_MAPPINGS = "/etc/usm-bridge/mappings"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def machine_cannot(reason: str) -> None:
    """Skip for a limit of this machine (no container engine, no systemd tools). Unlike a
    missing PostgreSQL, CI=true does not turn this into a failure: CI runs on machines like
    this one, and the test files say what they check instead."""
    pytest.skip(f"this machine cannot: {reason}")


@dataclass
class Stage:
    """One FROM ... section of the Dockerfile: its name, base image and instructions."""

    name: str | None
    image: str
    instructions: list[dict[str, Any]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [i["value"] for i in self.instructions if i["instruction"] == instruction]

    def run_with(self, *words: str) -> list[str]:
        """The argv of the one RUN that holds ``words`` in a row (``"pip", "install"``), its
        BuildKit flags (``--mount=...``) left out."""
        found = []
        for value in self.values("RUN"):
            argv = shlex.split(value)
            for start in range(len(argv) - len(words) + 1):
                if tuple(argv[start : start + len(words)]) == words:
                    while argv and argv[0].startswith("--mount="):
                        argv.pop(0)
                    found.append(argv)
                    break
        assert len(found) == 1, f"expected one RUN with {' '.join(words)}, found {found}"
        return found[0]


def option(argv: list[str], name: str) -> str | None:
    """The value of ``--name=VALUE`` in ``argv`` (the Dockerfile spells options so)."""
    values = [word.split("=", 1)[1] for word in argv if word.startswith(f"{name}=")]
    assert len(values) <= 1, f"{name} given {len(values)} times"
    return values[0] if values else None


def parser() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE), cache_content=True)


def stages() -> list[Stage]:
    parsed = parser()
    args = {}
    result: list[Stage] = []
    for instruction in parsed.structure:
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "ARG" and not result and "=" in value:
            key, default = value.split("=", 1)
            args[key] = default
        elif kind == "FROM":
            words = value.split()
            image = words[0]
            for key, default in args.items():
                image = image.replace(f"${{{key}}}", default)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(name, image))
        elif result:
            result[-1].instructions.append(instruction)
    return result


def healthcheck_command() -> tuple[list[str], str]:
    """The final stage's HEALTHCHECK: (the CMD in exec form, the options before it)."""
    (value,) = stages()[-1].values("HEALTHCHECK")
    options, command = value.split("CMD", 1)
    return json.loads(command), options


def mappings_link() -> tuple[str, str]:
    """The final stage's RUN that links the shipped mapping files beside the config: (the
    Python script that finds them, the link it makes)."""
    (value,) = [v for v in stages()[-1].values("RUN") if "ln -s" in v]
    (script,) = re.findall(r"python -c '([^']+)'", value)
    (link,) = re.findall(r'ln -s "\$mappings" (\S+)', value)
    return script, link


def exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list), value
    return [str(word) for word in parsed]


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def build_context() -> set[str]:
    """The paths (files and folders, relative, '/'-separated) ``docker build .`` sends."""
    return set(exclude_paths(str(ROOT), dockerignore_patterns()))


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def container_config() -> dict[str, Any]:
    return tomllib.loads(CONTAINER_CONFIG.read_text(encoding="utf-8"))


def secret_files(raw: Any) -> list[str]:
    """Every ``{ file = ... }`` path a raw (unresolved) config names."""
    if isinstance(raw, dict):
        if set(raw) == {"file"}:
            return [raw["file"]]
        return [path for value in raw.values() for path in secret_files(value)]
    if isinstance(raw, list):
        return [path for value in raw for path in secret_files(value)]
    return []


def parse_unit(text: str) -> list[tuple[str, str, str]]:
    """A systemd unit file as (section, key, value), in order, repeated keys kept; lines
    ending in a backslash continue on the next, as systemd.syntax(7) says."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped[0] in "#;"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        stripped, pending = pending + stripped, ""
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
            continue
        key, sep, value = stripped.partition("=")
        assert sep, f"not KEY=VALUE in [{section}]: {stripped!r}"
        entries.append((section, key.strip(), value.strip()))
    return entries


def mailbox_config(folder: Path, store_url: str) -> Path:
    """``folder`` made a config folder for a daemon with one mailbox: the config, its store URL
    in ``secrets/store-url`` and an empty Maildir in ``mail/``, all open to the container's
    user. Set ``USM_BRIDGE_TEST_MAPPINGS`` and ``USM_BRIDGE_TEST_LISTEN`` to run it."""
    for sub in ("secrets", "mail/cur", "mail/new", "mail/tmp"):
        (folder / sub).mkdir(parents=True)
    for sub in ("mail", "mail/cur", "mail/new", "mail/tmp"):
        (folder / sub).chmod(0o777)  # UID 10001 writes the Maildir's marks in the image test
    (folder / "secrets" / "store-url").write_text(f"{store_url}\n", encoding="utf-8")
    config = folder / "usm-bridge.toml"
    shutil.copyfile(MAILBOX_CONFIG, config)
    for path in (folder, folder / "secrets"):
        path.chmod(0o755)
    for path in (config, folder / "secrets" / "store-url"):
        path.chmod(0o644)
    return config
