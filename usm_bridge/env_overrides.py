"""Settings from the environment: ``USM_BRIDGE_<SECTION>__<KEY>...`` overrides the config file.

The rule, for containers and twelve-factor deployments:

* The prefix is ``USM_BRIDGE_``; nested keys are joined by ``__``; names are case-insensitive:
  ``USM_BRIDGE_STORE__URL`` sets ``[store] url``, ``USM_BRIDGE_DAEMON__LISTEN`` sets
  ``[daemon] listen``.
* A unit or an instance is named as in the file, with each ``-`` written as ``_``:
  ``USM_BRIDGE_INSTANCES__HR_MAIL__SETTINGS__PASSWORD`` sets ``password`` in
  ``[instances.hr-mail.settings]``. The file must define it: the environment changes
  settings, it defines no unit or instance. Two names that read the same (``hr-mail`` and
  ``hr_mail``) cannot be told apart, and a variable that names them is refused.
* A value is taken as written; a list or a table is written as JSON (``'["a","b"]'``,
  ``'{"file": "/run/secrets/x"}'``). ``routes`` can only be replaced whole, as a JSON list in
  ``USM_BRIDGE_ROUTES``.
* A variable whose name starts with the prefix and a section (``USM_BRIDGE_STORE``...) but
  names no setting is refused, so a typo is never silent. Other ``USM_BRIDGE_`` variables
  (``USM_BRIDGE_CONFIG`` and the others in :data:`OTHER_VARIABLES`) are not settings.

The values come from pydantic-settings' :class:`~pydantic_settings.EnvSettingsSource`, given
``env_prefix``, ``env_nested_delimiter`` and ``case_sensitive=False``. It is not used as a
``BaseSettings`` subclass of :class:`~usm_bridge.config.BridgeConfig` because the config is
not a flat settings object: units and instances are keyed by names that environment variable
names cannot spell (``-``), secrets are resolved and errors located per key before
validation, and every value must be validated once, together with the file's. So the source
only produces the override dict, which is merged into the file's raw table before
validation, and each value remembers the variable it came from so an error can name it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import create_model
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError

from .errors import ConfigurationError

__all__ = [
    "ENV_DELIMITER",
    "ENV_PREFIX",
    "OTHER_VARIABLES",
    "EnvOverride",
    "Overrides",
    "env_name",
    "read_overrides",
    "with_environment_note",
]

ENV_PREFIX = "USM_BRIDGE_"
ENV_DELIMITER = "__"
#: ``USM_BRIDGE_`` variables the project reads that are not settings of the config file.
OTHER_VARIABLES = (
    "USM_BRIDGE_CONFIG",
    "USM_BRIDGE_DISABLE_PLUGINS",
    "USM_BRIDGE_TRACE_HOOKS",
)
#: Sections keyed by the name of each entry: a variable names an entry the file defines.
NAMED_SECTIONS = ("units", "instances")
#: Sections that are a list: replaced whole, never entry by entry.
LIST_SECTIONS = ("routes",)

Key = tuple[str, ...]


@dataclass(frozen=True)
class EnvOverride:
    """One variable that set a setting: its name as written, and the key it set (with the
    file's own unit and instance names)."""

    variable: str
    key: Key

    @property
    def dotted(self) -> str:
        return ".".join(self.key)


@dataclass(frozen=True)
class Overrides:
    """What the environment sets: the raw values, the variables, and which variable set each
    value (by key), so an error names the variable rather than a line of the file."""

    values: dict[str, Any] = field(default_factory=dict)
    variables: tuple[EnvOverride, ...] = ()
    origins: Mapping[Key, str] = field(default_factory=dict)

    def merged_into(self, raw: dict[str, Any]) -> dict[str, Any]:
        """``raw`` (the file's table) with these values over it: tables merge key by key,
        anything else (a value, a list such as ``routes``) is replaced."""
        merged: dict[str, Any] = _deep_merge(raw, self.values)
        return merged


#: Two lines for the header of the starter config.
ENVIRONMENT_NOTE = (
    "# Any setting can be overridden by an environment variable: USM_BRIDGE_STORE__URL,\n"
    "# USM_BRIDGE_INSTANCES__HR_MAIL__INTERVAL (- in a name is written _; see the README).\n"
)


def with_environment_note(starter: str) -> str:
    """``starter`` (a config file's text) with :data:`ENVIRONMENT_NOTE` at the end of its
    opening comment block."""
    lines = starter.splitlines(keepends=True)
    header = 0
    while header < len(lines) and lines[header].startswith("#"):
        header += 1
    return "".join([*lines[:header], ENVIRONMENT_NOTE, *lines[header:]])


def env_name(name: str) -> str:
    """The spelling a unit or instance name matches in a variable name (``hr-mail`` ->
    ``hr_mail``; compared lower-case)."""
    return name.lower().replace("-", "_")


def read_overrides(raw: Mapping[str, Any], environ: Mapping[str, str]) -> Overrides:
    """The settings ``environ`` overrides in the config file's raw table ``raw``.

    :raises ConfigurationError: naming the variable (never its value): a name that matches no
        setting, a unit or instance the file does not define or cannot tell apart, a route
        set entry by entry.
    """
    sections = _sections()
    found = _variables(environ, sections)
    if not found:
        return Overrides()
    source = _Source(_shape(), {name: environ[name] for name in found})
    try:
        values = source()
    except SettingsError as exc:  # its message names the section, never the value
        names = ", ".join(sorted(found))
        raise ConfigurationError(f"cannot read the settings in {names}: {exc}") from None
    _refuse_list_entries(found)
    for section in NAMED_SECTIONS:
        if section in values:
            values[section] = _match_names(section, values[section], raw.get(section), found)
    keys = {name: _file_key(path, raw) for name, path in found.items()}
    variables = tuple(EnvOverride(name, keys[name]) for name in sorted(found))
    return Overrides(values, variables, _origins(values, keys))


def _refuse_list_entries(found: Mapping[str, Key]) -> None:
    for name, path in found.items():
        if path[0] in LIST_SECTIONS and len(path) > 1:
            raise ConfigurationError(
                f"{path[0]} can only be replaced whole",
                where=f"environment variable {name}",
                expected=f"{ENV_PREFIX}{path[0].upper()}='[...]' (a JSON list)",
            )


def _origins(values: Mapping[str, Any], keys: Mapping[str, Key]) -> dict[Key, str]:
    """The variable that gave each value; a variable that gave none names no setting."""
    leaves = [leaf for section, value in values.items() for leaf in _leaves(value, (section,))]
    origins: dict[Key, str] = {}
    for leaf in leaves:
        setters = [name for name, key in keys.items() if leaf[: len(key)] == key]
        if setters:
            # The most precise variable wins, as pydantic-settings lets USM_BRIDGE_STORE__URL
            # win over a "url" in the JSON of USM_BRIDGE_STORE.
            origins[leaf] = max(setters, key=lambda name: len(keys[name]))
    for name in sorted(keys):
        if not any(leaf[: len(keys[name])] == keys[name] for leaf in leaves):
            raise ConfigurationError(
                "names no setting", where=f"environment variable {name}", expected=_RULE
            )
    return origins


_RULE = (
    f"{ENV_PREFIX}SECTION{ENV_DELIMITER}KEY, such as {ENV_PREFIX}STORE{ENV_DELIMITER}URL "
    f"or {ENV_PREFIX}INSTANCES{ENV_DELIMITER}HR_MAIL{ENV_DELIMITER}INTERVAL"
)


class _Source(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of
    ``os.environ`` (``load_config`` takes the environment as an argument), and decoding JSON
    only where it gives a list or a table."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # As EnvSettingsSource does when case_sensitive is False.
        return {name.lower(): value for name, value in self._environ.items()}

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        # A connector setting is free JSON (str, number, list, table): pydantic-settings would
        # turn a password "12345" into a number and "null" into None. Scalars stay the text
        # given (the models parse "993" and "true" themselves); text that is not JSON stays
        # text too, and the model that expects a list says so, naming the variable.
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        return decoded if isinstance(decoded, list | dict) else value


@cache
def _shape() -> type[BaseSettings]:
    """A settings class of the config's sections, only to tell pydantic-settings which
    sections exist and which are tables; it never validates anything."""
    from .config import BridgeConfig  # the config imports this module

    fields: dict[str, Any] = {
        name: (info.annotation, None)
        for name, info in BridgeConfig.model_fields.items()
        if name in _sections()
    }
    shape: type[BaseSettings] = create_model("EnvironmentSections", __base__=_Rule, **fields)
    return shape


class _Rule(BaseSettings):
    """The naming rule, in pydantic-settings' terms."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER, case_sensitive=False
    )


@cache
def _sections() -> frozenset[str]:
    from .config import BridgeConfig

    # "path" is where the file was found, not a setting.
    return frozenset(BridgeConfig.model_fields) - {"path"}


def _variables(environ: Mapping[str, str], sections: frozenset[str]) -> dict[str, Key]:
    """The variables that set a section, each with its key path (lower-case, unmatched)."""
    found: dict[str, Key] = {}
    prefix = ENV_PREFIX.lower()
    for name in environ:
        lowered = name.lower()
        if not lowered.startswith(prefix):
            continue
        rest = lowered[len(prefix) :]
        path = tuple(rest.split(ENV_DELIMITER))
        if path[0] in sections:
            found[name] = path
        elif any(rest.startswith(section) for section in sections):
            # USM_BRIDGE_STORE_URL: the likeliest slip, a single underscore.
            raise ConfigurationError(
                "names no setting (nested keys are joined by two underscores)",
                where=f"environment variable {name}",
                expected=_RULE,
            )
    return found


def _match_names(
    section: str, values: Any, in_file: Any, found: Mapping[str, Key]
) -> dict[str, Any]:
    """Key the section's env values by the file's names, refusing what the file does not
    define or cannot tell apart."""
    setters = sorted(name for name, path in found.items() if path[0] == section)
    if not isinstance(values, dict):
        raise ConfigurationError(
            f"sets [{section}] as a whole; set one entry's key instead",
            where=f"environment variable {setters[0]}",
            expected=f"{ENV_PREFIX}{section.upper()}{ENV_DELIMITER}NAME{ENV_DELIMITER}KEY",
        )
    names = list(in_file) if isinstance(in_file, dict) else []
    matched: dict[str, Any] = {}
    for key, body in values.items():
        variable = _setter(section, key, found) or setters[0]
        where = f"environment variable {variable}"
        candidates = [name for name in names if env_name(name) == env_name(key)]
        if not candidates:
            known = ", ".join(env_name(name).upper() for name in names) or "none"
            raise ConfigurationError(
                f"the config file defines no {section[:-1]} {env_name(key).upper()}; the "
                f"environment can set its keys but not define one (names match "
                f"case-insensitively, with - written as _)",
                where=where,
                expected=f"one of {known}",
            )
        if len(candidates) > 1:
            raise ConfigurationError(
                f"matches {len(candidates)} {section} of the config file, "
                f"{' and '.join(repr(name) for name in candidates)}, which differ only by - "
                f"and _ or by case; rename one to set it from the environment",
                where=where,
            )
        if isinstance(body, dict) and "name" in body:
            raise ConfigurationError(
                f"the name of a {section[:-1]} is the name of its table in the config file; "
                "it cannot be set from the environment",
                where=f"environment variable {_setter(section, key, found, 'name') or variable}",
            )
        matched[candidates[0]] = _deep_merge(matched.get(candidates[0], {}), body)
    return matched


def _setter(section: str, key: str, found: Mapping[str, Key], *rest: str) -> str | None:
    """The variable that names this entry (and key), for an error message."""
    wanted = (section, env_name(key), *rest)
    for name, path in sorted(found.items()):
        if path[: len(wanted)] == wanted:
            return name
    return None


def _file_key(path: Key, raw: Mapping[str, Any]) -> Key:
    """A variable's key path with the entry named as the file names it."""
    in_file = raw.get(path[0])
    if len(path) < 2 or path[0] not in NAMED_SECTIONS or not isinstance(in_file, dict):
        return path
    for name in in_file:
        if env_name(name) == path[1]:
            return (path[0], name, *path[2:])
    return path


def _leaves(value: Any, key: Key) -> Iterator[Key]:
    """The keys of every value set: a table's entries, recursively; an empty table is one,
    and so is a secret file reference ``{"file": ...}``, which becomes the value of its key."""
    if isinstance(value, dict) and value and set(value) != {"file"}:
        for child_key, child in value.items():
            yield from _leaves(child, (*key, str(child_key)))
    else:
        yield key


def _deep_merge(base: Any, update: Any) -> Any:
    if not (isinstance(base, dict) and isinstance(update, dict)):
        return update
    merged = dict(base)
    for key, value in update.items():
        merged[key] = _deep_merge(base.get(key), value) if key in base else value
    return merged
