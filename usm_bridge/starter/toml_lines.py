"""Connector settings as commented TOML lines: the values given, and every other setting.

A block of settings reads, in order: the values given (active lines), then every other plain
setting with its description, then the nested tables (``imap``, ``smtp``). Two kinds of
comment keep prose and settings apart, so that removing one ``# `` from the setting lines
yields TOML that the connector accepts:

- ``## ...`` is prose: what a setting means, its type, its default;
- ``# key = value`` is a setting left at its default (or unset): remove the ``# `` to set it.

A secret is never written with a value: it is shown as ``"${ENV_VAR}"``, and a value given for
one must be such a reference or a ``{ file = ... }`` table.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from .settings_docs import NOT_SET, SettingDoc

__all__ = ["env_name", "settings_lines", "toml_value"]

#: Width the prose is wrapped at (the project's line length).
WIDTH = 99
#: A value longer than this on one line is written as a multi-line array.
_ONE_LINE = 72
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
#: What a TOML literal string ('...') can hold: no quote, no control character.
_LITERAL = re.compile(r"^[^'\x00-\x1f\x7f]*$")
_ENV_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")


def env_name(*parts: str) -> str:
    """``FACILITIES_JIRA_API_TOKEN`` from ``("facilities-jira", "api_token")``."""
    return "_".join(re.sub(r"[^A-Za-z0-9]+", "_", part).strip("_").upper() for part in parts)


def toml_value(value: Any) -> str:
    """One TOML value on one line (a string, number, boolean, array or inline table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no TOML form a setting accepts")
        return repr(value)
    if isinstance(value, str) and "\\" in value and _LITERAL.match(value):
        return f"'{value}'"  # a regular expression reads better without doubled backslashes
    if isinstance(value, str):
        # A JSON string is a TOML basic string: the same escapes, the same quotes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items())
        return f"{{ {items} }}" if items else "{}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    # A default of another type (a date, a path, an enum) in a third-party model: as text,
    # which is how a config file would spell it.
    return json.dumps(str(value), ensure_ascii=False)


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _assignment(name: str, value: Any) -> list[str]:
    """``key = value``, as several lines when a long array reads better one item a line."""
    line = f"{_key(name)} = {toml_value(value)}"
    if len(line) <= _ONE_LINE or not isinstance(value, list) or not value:
        return [line]
    return [f"{_key(name)} = [", *(f"    {toml_value(item)}," for item in value), "]"]


def _prose(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent="## ", subsequent_indent="## ")


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _shown(doc: SettingDoc, value: Any) -> Any:
    if doc.value_kind.startswith("duration") and isinstance(value, int | float):
        return _duration_text(float(value))
    return value


def _placeholder(doc: SettingDoc, env_prefix: str) -> Any:
    """The value shown for a setting without a default: its example, or one of its type."""
    if doc.secret:
        return f"${{{env_name(env_prefix, doc.name)}}}"
    if doc.example is not NOT_SET:
        return doc.example
    kind = doc.value_kind
    if kind.startswith("one of "):
        return kind.split('"')[1]
    if kind.startswith("list"):
        return []
    if kind.startswith("table"):
        return {}
    return {"whole number": 0, "number": 0.0, "true or false": False}.get(kind, "...")


def _about(doc: SettingDoc, *, given: bool = False) -> str:
    """The description, then the type and whether it is required or unset: ``(text;
    required)``. A default needs no word: the line below shows it."""
    text = doc.description.rstrip(".") + "." if doc.description else ""
    if given:
        return text
    kind = "secret" if doc.secret else doc.value_kind
    if doc.required:
        kind += "; required"
    elif not doc.has_default:
        kind += "; not set by default"
    return f"{text} ({kind})".strip()


def _check_secret(doc: SettingDoc, value: Any, where: str) -> None:
    is_ref = isinstance(value, str) and _ENV_REF.match(value)
    is_file = isinstance(value, Mapping) and set(value) == {"file"}
    if not (is_ref or is_file):
        raise ValueError(f"{where}.{doc.name} is a secret: give it as ${{ENV}} or {{ file = ... }}")


def settings_lines(
    header: str,
    docs: Sequence[SettingDoc],
    given: Mapping[str, Any],
    *,
    env_prefix: str,
    active: bool = True,
    intro: str | None = None,
) -> list[str]:
    """The table ``[header]`` with the ``given`` values set and every other setting commented.

    :param active: ``False`` comments the whole table out (a connector not in the example).
    :param intro: prose between the given values and the others.
    :raises ValueError: a secret given as a plain value.
    """
    mark = "" if active else "# "
    lines = [f"{mark}[{header}]"]
    scalars = [doc for doc in docs if doc.table is None]
    tables = [doc for doc in docs if doc.table is not None]
    for doc in scalars:
        if doc.name in given:
            if doc.secret:
                _check_secret(doc, given[doc.name], header)
            lines.extend(mark + line for line in _assignment(doc.name, given[doc.name]))
    others = [doc for doc in scalars if doc.name not in given]
    if intro and (others or tables):
        lines.extend(_prose(intro))
    for doc in others:
        lines.extend(_prose(_about(doc)))
        value = doc.default if doc.has_default else _placeholder(doc, env_prefix)
        lines.extend("# " + line for line in _assignment(doc.name, _shown(doc, value)))
    for doc in tables:
        assert doc.table is not None
        nested = given.get(doc.name)
        lines.extend(_prose(_about(doc, given=isinstance(nested, Mapping))))
        lines.extend(
            settings_lines(
                f"{header}.{doc.name}",
                doc.table,
                nested if isinstance(nested, Mapping) else {},
                env_prefix=env_name(env_prefix, doc.name),
                active=active and isinstance(nested, Mapping),
            )
        )
    return lines
