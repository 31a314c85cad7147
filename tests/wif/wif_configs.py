"""Configs and helpers the USM-WIF tests share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.wif.command import export_wif

UNITS = """\
[units.it]
[units.hr]
"""

#: IT runs four patterns and configures W3 with steps, activities and RACI; HR configures
#: nothing, so it gets all eight patterns as templates.
WORKFLOWS = """\
[workflows]
source_system_instance = "acme-test"

[workflows.it]
patterns = ["W2", "W3", "W4", "W5"]

[workflows.it.profiles]
operator = "IT service desk operator"
change-manager = "Change manager"
"quality lead" = "Quality lead"

[workflows.it.W3]
name = "Outage fixed by a change"
created_at = 2026-01-05T09:30:00.250+01:00
modified_at = 2026-02-01T10:00:00.000+00:00
created_by = { id = "u17", name = "Ines Tan", email = "ines@example.org" }

[workflows.it.W3.steps.restore]
process = "recover"
description = "Register, classify, find the cause"

[workflows.it.W3.steps.restore.activities.log]
description = "Log the incident and link it to the service"
raci = { operator = "R", change-manager = ["A", "I"] }

[workflows.it.W3.steps.restore.activities.classify]
raci = { operator = "RA", "quality lead" = "C" }

[workflows.it.W3.steps.fix]
process = "change"
name = "Implement the change"

[workflows.it.W3.steps.fix.activities.rfc]
description = "Raise the RFC"
raci = { change-manager = "RA" }

[workflows.it.W3.steps.confirm]
process = "recover"

[workflows.it.W5]
slug = "ask-it"
dynamicity = "dynamic"
description = ""
"""

FULL = UNITS + "\n" + WORKFLOWS


def write_config(folder: Path, text: str, name: str = "usm-bridge.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def config_of(folder: Path, text: str) -> BridgeConfig:
    return load_config(write_config(folder, text))


def export(config: BridgeConfig, out: Path, *units: str) -> dict[str, dict[str, Any]]:
    """Export into ``out``; each written document by file name."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in export_wif(config, units, out)
    }


def line_of(text: str, line: str) -> int:
    """The number of the line of ``text`` that is exactly ``line``."""
    return text.splitlines().index(line) + 1
