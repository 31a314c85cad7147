"""The starter config ``usm-bridge init`` writes, generated from what is installed.

It holds a complete example (HR on a mailbox, Facilities on Jira Service Management, IT on
ServiceNow, and the routes between them) and, for every installed connector, every setting of
its settings model with its description, type and default: a connector installed later shows
up the next time ``init`` runs. The text comes from the template ``templates/starter.toml.j2``;
the settings blocks from :mod:`.toml_lines`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from ..env_overrides import with_environment_note
from ..plugins import PluginHost
from .example import MAPPINGS_FOLDER, ExampleUnit, example_routes, example_units
from .settings_docs import describe_settings
from .toml_lines import settings_lines, toml_value

__all__ = ["MAPPINGS_FOLDER", "Starter", "render_starter"]

#: An environment reference on a line that is not a comment.
_ACTIVE_ENV_REF = re.compile(r"^[^#\n]*?\$\{([A-Za-z_][A-Za-z0-9_]*)\}", re.MULTILINE)


@dataclass(frozen=True)
class Starter:
    """The starter file's text and what it needs before it can be used."""

    text: str
    #: The environment variables the file's active settings reference, in order of first use.
    env_vars: tuple[str, ...]
    #: The shipped mapping files (names in :data:`MAPPINGS_FOLDER`) the example names.
    mappings: tuple[str, ...]


def render_starter(host: PluginHost, kinds: Collection[str] = ()) -> Starter:
    """The starter config for the connectors installed in ``host``.

    :param kinds: only these connector kinds (all installed ones when empty); the example keeps
        the units whose tool is one of them, and the routes between those.
    :raises PluginError: a kind in ``kinds`` that is not installed, naming the installed ones.
    """
    installed = host.connector_types()
    for kind in kinds:
        host.connector_type(kind)  # raises, listing the installed kinds
    wanted = set(kinds) or set(installed)
    units = [unit for unit in example_units() if unit.kind in wanted and unit.kind in installed]
    names = {unit.name for unit in units}
    routes = [r for r in example_routes() if {r.from_unit, r.to_unit} <= names]
    example_kinds = {unit.kind for unit in units}
    versions = _versions(host)
    others = [
        _other(kind, installed[kind], versions.get(kind)) for kind in sorted(wanted - example_kinds)
    ]
    template = _environment().get_template("starter.toml.j2")
    context: dict[str, Any] = {
        "units": [_unit(unit, installed[unit.kind], versions.get(unit.kind)) for unit in units],
        "others": others,
        "routes": routes,
        "mappings_folder": MAPPINGS_FOLDER,
    }
    body = template.render(**context, env_vars=())
    env_vars = tuple(dict.fromkeys(_ACTIVE_ENV_REF.findall(body)))
    text = with_environment_note(template.render(**context, env_vars=env_vars))
    return Starter(text=text, env_vars=env_vars, mappings=tuple(unit.mapping for unit in units))


def _environment() -> Environment:
    # Not autoescaped: the output is TOML, and every value goes through the 'toml' filter.
    env = Environment(  # noqa: S701
        loader=PackageLoader("usm_bridge", "templates"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["toml"] = toml_value
    return env


def _versions(host: PluginHost) -> dict[str, str]:
    """``usm-bridge-jira 0.1.0`` by connector kind, as ``usm-bridge connectors`` shows it."""
    found = {}
    for info in host.plugin_info():
        for kind in info.connector_kinds:
            found[kind] = " ".join(part for part in (info.distribution, info.version) if part)
    return found


def _unit(unit: ExampleUnit, connector: type[Any], version: str | None) -> dict[str, Any]:
    about = f"The other settings of the {unit.kind} connector"
    intro = f"{about} ({version}):" if version else f"{about}:"
    lines = settings_lines(
        f"instances.{unit.instance}.settings",
        describe_settings(connector.settings_model),
        unit.settings,
        env_prefix=unit.instance,
        intro=intro,
    )
    return {
        "name": unit.name,
        "title": unit.title,
        "about": unit.about,
        "allowed_domains": list(unit.allowed_domains),
        "kind": unit.kind,
        "instance": unit.instance,
        "mapping_path": unit.mapping_path,
        "settings_lines": lines,
    }


def _other(kind: str, connector: type[Any], version: str | None) -> dict[str, Any]:
    description = getattr(connector, "description", "") or f"the {kind} connector"
    lines = settings_lines(
        f"instances.{kind}.settings",
        describe_settings(connector.settings_model),
        {},
        env_prefix=kind,
        active=False,
    )
    return {
        "kind": kind,
        "description": description,
        "version": version,
        "mapping_path": f"{MAPPINGS_FOLDER}/{kind}.yaml",
        "settings_lines": lines,
    }
