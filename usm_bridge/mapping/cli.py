"""What ``usm-bridge mapping apply`` does, kept apart from Click so it can be tested directly.

An admin adapting a mapping file wants to see what one real record becomes: this goes through
the plugin host exactly like the sync engine (a unit's code mapping and classifiers included),
not through the declarative engine alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..connector import RawRecord
from ..errors import ConfigurationError
from . import Mapping, MappingContext, load_mapping, matched_rule, validate_transforms

__all__ = ["apply_file", "parse_record"]

#: Fields tools use for a record's id, tried in order when a bare record has no ``remote_id``.
_ID_FIELDS = ("sys_id", "id", "key", "message_id", "number")


def parse_record(text: str, source: str = "RECORD.json") -> RawRecord:
    """A raw record from JSON: ``{"remote_id", "data", ...}`` as connectors yield, or bare data.

    For bare data the id is taken from the first of ``sys_id``, ``id``, ``key``,
    ``message_id``, ``number`` it has.

    :raises ConfigurationError: not JSON, not an object, or an invalid record envelope.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"not valid JSON: {exc.msg}", where=f"{source}:{exc.lineno}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigurationError(
            "a record must be a JSON object",
            where=source,
            expected='{"remote_id": .., "data": {..}}',
        )
    if "data" in data and "remote_id" in data:
        try:
            return RawRecord.model_validate(data)
        except ValidationError as exc:
            problem = exc.errors(include_url=False)[0]
            key = ".".join(str(part) for part in problem["loc"])
            raise ConfigurationError(problem["msg"], where=f"{source}: key {key}") from None
    remote_id = next((str(data[k]) for k in _ID_FIELDS if isinstance(data.get(k), str | int)), None)
    try:
        return RawRecord(remote_id=remote_id or "record", data=data)
    except ValidationError as exc:
        raise ConfigurationError(
            f"not a JSON record: {exc.errors(include_url=False)[0]['msg']}", where=source
        ) from None


def apply_file(
    file: Path | str,
    text: str,
    *,
    unit: str = "unit",
    instance: str = "instance",
    outbound: bool = False,
    host: Any = None,
    source: str = "RECORD.json",
) -> dict[str, Any]:
    """Map one record (JSON text) through a mapping file, as the sync engine would.

    :param host: a :class:`~usm_bridge.plugins.PluginHost`; the default loads every plugin.
    :param source: the record's file name, for error messages.
    :returns: ``{"call": ..., "classified_by": ...}`` and, with ``outbound``,
        ``{"draft": ...}``, all JSON-ready. ``classified_by`` names the file's rule that
        matched (``classify.rules[0]``), ``classify.default``, or a plugin when the call's type
        differs from what the file's rules give.
    :raises MappingFileError: the mapping file is broken.
    :raises MappingError: the record cannot be mapped (the reason a dead letter would carry).
    """
    from ..plugins import PluginHost

    mapping = load_mapping(file)
    host = host if host is not None else PluginHost()
    validate_transforms(mapping, host.transforms())
    record = parse_record(text, source)
    context = MappingContext.from_host(host, unit=unit, instance=instance)
    call = host.map_inbound(mapping, record, context)
    result: dict[str, Any] = {
        "call": call.model_dump(mode="json"),
        "classified_by": _classified_by(mapping, record, call.call_type.value),
    }
    if outbound:
        result["draft"] = host.map_outbound(mapping, call, context).model_dump(mode="json")
    return result


def _classified_by(mapping: Mapping, record: RawRecord, call_type: str) -> str:
    """Which rule gave the call its type, found by the same matching the engine uses."""
    index = matched_rule(mapping, record)
    section = mapping.spec.classify
    if index is not None:
        rule = section.rules[index]
        source = f"classify.rules[{index}] ({rule.type.value})"
        given = rule.type.value
    else:
        source, given = f"classify.default ({section.default.value})", section.default.value
    if given != call_type:
        return f"a plugin ({call_type}); the file's {source}"
    return source
