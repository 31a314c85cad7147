"""Declarative mapping files: load, validate, and apply them in both directions.

A mapping file says, for one tool flavour (ServiceNow incidents, Jira Service Management, a
shared mailbox), how the tool's raw records map onto the canonical USM :class:`Call` and back.
Units then adapt a file instead of writing code; a unit whose data is too exotic implements the
``usm_bridge_map_inbound`` hook instead (see :mod:`usm_bridge.hookspecs`).

Format (YAML; every key is checked, a typo is an error naming file, line and key)::

    version: 1
    tool: servicenow                 # the connector kind the mapping is for
    name: servicenow-incident        # default: the file name
    empty_values: ["", "?"]          # raw values meaning "no value" (null always does)
    fields:                          # canonical field -> FIELD SPEC
      title: {path: short_description, required: true}
      status:
        path: state
        values: {"1": registered, "2": in_progress, "3": waiting, "6": fulfilled,
                 "7": closed, "8": cancelled, "9": cancelled}
        write: {cancelled: "8"}      # several raw values -> one canonical: say which to write
        status_fields: {fulfilled: {close_code: "Solved (Permanently)"}}
      waiting_on: {path: hold_reason, values: {"1": customer}, default: customer}
      created: {path: opened_at, transform: servicenow_datetime,
                transform_out: format_servicenow_datetime, read_only: true}
    people:                          # requester | customer | assignee -> {name, email, ref}
      requester: {ref: {path: caller_id, transform: servicenow_value}}
    comments:                        # a list, and a sub-mapping per item (read only)
      path: journal
      body: {path: value}
      created: {path: sys_created_on, transform: servicenow_datetime}
      public: {path: element, values: {comments: true, work_notes: false}}
    classify:                        # first rule whose conditions all hold wins
      rules:
        - type: rfc
          when: [{path: cmdb_ci, exists: true}, {path: type, in: [normal, emergency]}]
      default: incident
      write: {incident: {sys_class_name: incident}}
    attributes:                      # kept on the call under a namespace, not modelled
      namespace: servicenow
      fields: {category: {path: category}}

A FIELD SPEC has ``path`` (dotted, digits index lists, ``$`` is the whole record),
``transform`` / ``transform_out`` (a name, ``{name, args}``, or a list of them), ``values`` (raw
-> canonical), ``write`` (canonical -> raw), ``default``, ``on_unknown`` (``error`` |
``default``), ``required`` and ``read_only``. A status table value may be ``waiting:customer``
(``waiting:supplier``, ``waiting:secondary_process``) when one tool status says both things.

Inbound, a value not in a table, a missing required value, a failing transform or a call the
model refuses raise :class:`~usm_bridge.errors.MappingError` naming the field and the value:
the record goes to the dead letters. Outbound writes every field not marked ``read_only`` into
a :class:`~usm_bridge.connector.RemoteDraft` in the record's own shape; the status goes to
``draft.status``, as tools change status through workflows.
"""

from __future__ import annotations

import collections.abc as cabc
import difflib
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

from pydantic import JsonValue, TypeAdapter, ValidationError

from .connector import RawRecord, RemoteDraft
from .errors import MappingError, MappingFileError
from .lifecycle import PriorityMatrix
from .mapping_spec import (
    FORMAT_KEYS,
    NOT_FOUND,
    ClassifySection,
    FieldSpec,
    MappingFile,
    PersonSpec,
    TransformRef,
    raw_text,
    split_path,
)
from .mapping_yaml import Loc, LocatedData, located_error, parse_located, read_mapping_text
from .model import Call, CallType, Impact, Status, Urgency

__all__ = [
    "Mapping",
    "MappingContext",
    "Transforms",
    "apply_inbound",
    "apply_outbound",
    "check_mapping",
    "classify_record",
    "field_specs",
    "get_path",
    "load_mapping",
    "loads_mapping",
    "set_path",
    "unmapped_values",
    "validate_transforms",
    "writable_paths",
]

Transforms: TypeAlias = cabc.Mapping[str, Callable[..., Any]]
Classifier: TypeAlias = Callable[[Call, RawRecord], CallType | None]

_SCALARS = (
    "title",
    "description",
    "status",
    "waiting_on",
    "impact",
    "urgency",
    "priority",
    "service",
    "agreement",
    "created",
    "updated",
    "fulfilled",
    "confirmed",
    "closed",
)
_ROLES = ("requester", "customer", "assignee")
_PERSON_PARTS = ("name", "email", "ref")
_MISSING: Any = object()


# -------------------------------------------------------------------------------------------
# the loaded mapping and the context it is applied in
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Mapping:
    """A loaded, validated mapping file (what the mapping hooks receive)."""

    name: str
    tool: str
    path: Path | None
    spec: MappingFile
    located: LocatedData = field(repr=False)

    @property
    def namespace(self) -> str:
        """The attributes namespace: the file's, else the tool's name."""
        section = self.spec.attributes
        return (section.namespace if section and section.namespace else None) or _ns(self.tool)

    def where(self, loc: Loc) -> str:
        """``file:line: key a.b`` for a location in the file, for messages about it."""
        return self.located.where(loc)


def _ns(tool: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_.-]", "-", tool.lower()).strip("-.") or "tool"
    return cleaned if cleaned[0].isalpha() else f"t{cleaned}"[:63]


@dataclass(frozen=True)
class MappingContext:
    """What applying a mapping needs besides the mapping and the record.

    :param unit: the unit the call belongs to.
    :param instance: the connector instance the record came from (or goes to).
    :param transforms: named transforms (``PluginHost.transforms()``).
    :param priority_matrix: the organisation's impact x urgency matrix.
    :param classifier: asked for calls the file's rules leave unclassified
        (``PluginHost.classify``); the built-in mapping plugin calls it.
    """

    unit: str
    instance: str
    transforms: Transforms = field(default_factory=dict)
    priority_matrix: PriorityMatrix = field(default_factory=PriorityMatrix)
    classifier: Classifier | None = None

    @classmethod
    def from_host(
        cls,
        host: Any,
        unit: str,
        instance: str,
        priority_matrix: PriorityMatrix | None = None,
    ) -> MappingContext:
        """A context with a :class:`~usm_bridge.plugins.PluginHost`'s transforms and classifiers."""
        return cls(
            unit=unit,
            instance=instance,
            transforms=host.transforms(),
            priority_matrix=priority_matrix or PriorityMatrix(),
            classifier=host.classify,
        )


# -------------------------------------------------------------------------------------------
# loading and validation
# -------------------------------------------------------------------------------------------


def load_mapping(path: Path | str) -> Mapping:
    """Load and validate a mapping file.

    Transform names are not checked here (plugins may not be loaded yet); see
    :func:`check_mapping` / :func:`validate_transforms`.

    :raises MappingFileError: naming the file, the line, the key and what was expected.
    """
    path = Path(path)
    return loads_mapping(read_mapping_text(path), source=str(path), path=path)


def loads_mapping(text: str, source: str = "<mapping>", path: Path | None = None) -> Mapping:
    """Load a mapping from YAML text (``source`` is the name used in error messages)."""
    located = parse_located(text, source)
    try:
        spec = MappingFile.model_validate(located.data)
    except ValidationError as exc:
        raise located_error(exc, located, FORMAT_KEYS) from None
    default_name = path.stem if path is not None else "mapping"
    mapping = Mapping(
        name=spec.name or default_name, tool=spec.tool, path=path, spec=spec, located=located
    )
    problems = list(_semantic_problems(mapping))
    if problems:
        raise _problems_error(mapping, problems)
    return mapping


def validate_transforms(mapping: Mapping, transforms: Transforms) -> None:
    """Check that every transform the file names is installed.

    :raises MappingFileError: naming the line of each unknown transform, with a suggestion.
    """
    problems: list[Problem] = []
    for loc, ref in _transform_refs(mapping.spec):
        if ref.name not in transforms:
            message = f"unknown transform {ref.name!r}"
            close = difflib.get_close_matches(ref.name, list(transforms), n=1, cutoff=0.6)
            if close:
                message += f"; did you mean {close[0]!r}?"
            problems.append((loc, message, "a transform an installed plugin provides"))
    if problems:
        raise _problems_error(mapping, problems)


def check_mapping(
    path: Path | str, transforms: Transforms, expected_tool: str | None = None
) -> str:
    """Everything ``usm-bridge mapping check`` and ``usm-bridge check`` verify about a file.

    :param transforms: the installed transforms (every name the file uses must be one).
    :param expected_tool: the connector kind the file is configured for, if known.
    :returns: a one-line summary of what the mapping covers.
    :raises MappingFileError: the first problems, each with file, line and key.
    """
    mapping = load_mapping(path)
    validate_transforms(mapping, transforms)
    if expected_tool is not None and mapping.tool != expected_tool:
        raise MappingFileError(
            f"the mapping is for tool {mapping.tool!r}, but the connector is {expected_tool!r}",
            where=mapping.where(("tool",)),
            expected=f"tool: {expected_tool}",
        )
    return summarize(mapping)


def summarize(mapping: Mapping) -> str:
    """A one-line description of what a mapping covers."""
    spec = mapping.spec
    scalars = [name for name in _SCALARS if getattr(spec.fields, name) is not None]
    people = [role for role in _ROLES if getattr(spec.people, role) is not None]
    attrs = len(spec.attributes.fields) if spec.attributes else 0
    parts = [
        f"{mapping.name} ({mapping.tool})",
        f"{len(scalars)} fields",
        f"{len(people)} people",
        "comments" if spec.comments else "no comments",
        f"{len(spec.classify.rules)} classification rule(s)",
        f"{attrs} attributes",
        f"writes {len(writable_paths(mapping))} paths",
    ]
    return ", ".join(parts)


Problem: TypeAlias = tuple[Loc, str, str | None]


def _problems_error(mapping: Mapping, problems: list[Problem]) -> MappingFileError:
    lines = [f"{mapping.where(loc)}: {message}" for loc, message, _ in problems]
    expected = problems[0][2]
    text = lines[0] + "".join(f"\n  also {line}" for line in lines[1:10])
    return MappingFileError(text, expected=expected)


def field_specs(spec: MappingFile) -> Iterator[tuple[Loc, str, FieldSpec[Any], bool]]:
    """Every field spec of a file with its location, label and whether outbound writes it.

    For tools that need to walk a mapping: conformance checks (which canonical fields are
    mapped), tests that generate records from a mapping's own tables.
    """
    for name in _SCALARS:
        item = getattr(spec.fields, name)
        if item is not None:
            yield ("fields", name), name, item, not item.read_only
    for role in _ROLES:
        person = getattr(spec.people, role)
        if person is not None:
            for part in _PERSON_PARTS:
                sub = getattr(person, part)
                if sub is not None:
                    yield ("people", role, part), f"{role}.{part}", sub, not sub.read_only
    if spec.comments is not None:
        c = spec.comments
        for part, sub in (
            ("body", c.body),
            ("created", c.created),
            ("id", c.id),
            ("public", c.public),
        ):
            if sub is not None:
                yield ("comments", part), f"comments.{part}", sub, False
        if c.author is not None:
            for part in _PERSON_PARTS:
                sub = getattr(c.author, part)
                if sub is not None:
                    yield ("comments", "author", part), f"comments.author.{part}", sub, False
    if spec.attributes is not None:
        for name, sub in spec.attributes.fields.items():
            yield ("attributes", "fields", name), f"attributes.{name}", sub, not sub.read_only


def _transform_refs(spec: MappingFile) -> Iterator[tuple[Loc, TransformRef]]:
    for loc, _, item, _ in field_specs(spec):
        for key in ("transform", "transform_out"):
            for index, ref in enumerate(getattr(item, key)):
                yield (*loc, key, index), ref


def _canonical_adapter(item: FieldSpec[Any]) -> TypeAdapter[Any]:
    annotation: Any = type(item).model_fields["default"].annotation
    return TypeAdapter(annotation)


def _semantic_problems(mapping: Mapping) -> Iterator[Problem]:
    """What pydantic cannot see: ambiguity, collisions, consistency between sections."""
    spec = mapping.spec
    for loc, label, item, writable in field_specs(spec):
        raw_keys = {raw_text(raw): raw for raw in (item.values or {})}
        if item.write and item.values is None:
            yield (*loc, "write"), "write needs a values table", "values: {raw: canonical}"
        adapter = _canonical_adapter(item)
        for canonical_key, raw in item.write.items():
            try:
                adapter.validate_python(canonical_key)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
                yield (*loc, "write", canonical_key), f"{canonical_key!r}: {first}", None
                continue
            if item.values is not None and raw_text(raw) not in raw_keys:
                yield (
                    (*loc, "write", canonical_key),
                    f"write names {raw!r}, which is not a raw value of the table",
                    f"one of {sorted(raw_keys)}",
                )
                continue
            own = [r for r, c in (item.values or {}).items() if _ctext(c) == canonical_key]
            if own and raw_text(raw) not in {raw_text(r) for r in own}:
                yield (
                    (*loc, "write", canonical_key),
                    f"write names {raw!r} for {canonical_key!r}, but the table maps it elsewhere",
                    f"one of {[raw_text(r) for r in own]}",
                )
        if writable:
            for canonical_key, raws in item.ambiguities().items():
                shown = ", ".join(repr(raw) for raw in raws)
                yield (
                    (*loc, "values"),
                    f"{label}: raw values {shown} all map to {canonical_key!r}, so outbound "
                    f"cannot tell which to write",
                    f"write: {{{canonical_key}: {raws[0]!r}}} under {label}, or read_only: true",
                )
            if item.path == "$":
                yield (
                    (*loc, "path"),
                    f"{label}: path $ (the whole record) can only be read",
                    "read_only: true",
                )
    status = spec.fields.status
    if status is not None and status.values:
        plain_waiting = [raw for raw, value in status.values.items() if value == "waiting"]
        waiting = spec.fields.waiting_on
        if plain_waiting and (waiting is None or waiting.default is None):
            yield (
                ("fields", "waiting_on") if waiting is not None else ("fields", "status", "values"),
                f"status {plain_waiting[0]!r} maps to waiting, but nothing says whom the call "
                "waits on when the tool does not say",
                "fields.waiting_on with a default, or waiting:customer|supplier|"
                "secondary_process in the status table",
            )
    yield from _collisions(mapping)
    yield from _classify_problems(spec.classify)


def _collisions(mapping: Mapping) -> Iterator[Problem]:
    seen: dict[tuple[str, ...], Loc] = {}
    for loc, path in _written(mapping):
        segments = split_path(path)
        for other, other_loc in seen.items():
            shorter = min(len(other), len(segments))
            if other[:shorter] == segments[:shorter]:
                yield (
                    loc,
                    f"path {path!r} is also written by {'.'.join(map(str, other_loc))}, so "
                    "outbound would write one over the other",
                    "read_only: true on one of them",
                )
                break
        else:
            seen[segments] = loc


def _written(mapping: Mapping) -> Iterator[tuple[Loc, str]]:
    spec = mapping.spec
    for loc, _, item, writable in field_specs(spec):
        if writable:
            yield (*loc, "path"), item.path
    if spec.fields.status is not None and not spec.fields.status.read_only:
        status_paths: dict[str, Loc] = {}
        for status_value, extra in spec.fields.status.status_fields.items():
            for path in extra:
                status_paths.setdefault(path, ("fields", "status", "status_fields", status_value))
        yield from ((loc, path) for path, loc in status_paths.items())
    class_paths: dict[str, Loc] = {}
    for call_type, raw_fields in spec.classify.write.items():
        for path in raw_fields:
            class_paths.setdefault(path, ("classify", "write", call_type.value, path))
    yield from ((loc, path) for path, loc in class_paths.items())


def _classify_problems(section: ClassifySection) -> Iterator[Problem]:
    for call_type, raw_fields in section.write.items():
        record: dict[str, Any] = {}
        for path, value in raw_fields.items():
            set_path(record, path, value)
        got = _apply_rules(section, record, ("",))
        if got is not call_type:
            yield (
                ("classify", "write", call_type.value),
                f"writing these fields for {call_type.value!r} would read back as {got.value!r}",
                "fields that the rules classify as the same type",
            )


def writable_paths(mapping: Mapping) -> list[str]:
    """Every raw path outbound may write (status excluded: it goes to ``draft.status``)."""
    status = mapping.spec.fields.status
    skip = status.path if status is not None else None
    return [path for _, path in _written(mapping) if path != skip or status is None]


# -------------------------------------------------------------------------------------------
# paths
# -------------------------------------------------------------------------------------------


def get_path(data: Any, path: str) -> Any:
    """The value at a dotted path, or a private sentinel when any step is missing."""
    current = data
    for segment in split_path(path):
        if isinstance(current, dict):
            current = current.get(segment, _MISSING)
        elif isinstance(current, list) and re.fullmatch(r"-?\d+", segment):
            index = int(segment)
            current = current[index] if -len(current) <= index < len(current) else _MISSING
        else:
            return _MISSING
        if current is _MISSING:
            return _MISSING
    return current


def set_path(target: dict[str, Any], path: str, value: Any) -> None:
    """Set the value at a dotted path, creating objects (and lists for digit segments)."""
    segments = split_path(path)
    if not segments:
        raise ValueError("cannot write the whole record ($)")
    current: Any = target
    for segment, following in zip(segments, (*segments[1:], None), strict=True):
        last = following is None
        container: Any = [] if following is not None and following.isdigit() else {}
        if isinstance(current, list):
            index = int(segment)
            while len(current) <= index:
                current.append(None)
            if last:
                current[index] = value
            elif not isinstance(current[index], dict | list):
                current[index] = container
            current = current[index]
        else:
            if last:
                current[segment] = value
            elif not isinstance(current.get(segment), dict | list):
                current[segment] = container
            current = current[segment] if not last else current


# -------------------------------------------------------------------------------------------
# inbound
# -------------------------------------------------------------------------------------------


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ctext(value: Any) -> str:
    return str(value.value) if hasattr(value, "value") else raw_text(value)


class _Reader:
    def __init__(self, mapping: Mapping, context: MappingContext) -> None:
        self.mapping = mapping
        self.context = context
        self.empty = {raw_text(v) for v in mapping.spec.empty_values}

    def is_empty(self, value: Any) -> bool:
        if value is _MISSING or value is None:
            return True
        if isinstance(value, str | int | float | bool) and raw_text(value) in self.empty:
            return True
        return isinstance(value, dict | list) and not value

    def transform(self, chain: list[TransformRef], value: Any, label: str) -> Any:
        return _run_chain(chain, value, label, self.context.transforms)

    def read(self, item: FieldSpec[Any], data: Any, label: str) -> Any:
        raw = get_path(data, item.path)
        value = raw
        if not self.is_empty(value):
            value = self.transform(item.transform, value, label)
        if self.is_empty(value):
            if item.required:
                raise MappingError(
                    f"field {label}: required value is missing (path {item.path!r}"
                    f"{'' if raw is _MISSING else f', value {_short(raw)}'})"
                )
            return item.default
        if item.values is None:
            return value
        hit = item.lookup(value)
        if hit is NOT_FOUND:
            if item.on_unknown == "default":
                return item.default
            shown = _short(raw) if raw == value else f"{_short(raw)} (as {_short(value)})"
            known = ", ".join(sorted(repr(raw_text(k)) for k in item.values))
            raise MappingError(
                f"field {label}: value {shown} at path {item.path!r} is not in the mapping "
                f"{self.mapping.name!r} (known: {known[:300]})"
            )
        return hit

    def person(self, person: PersonSpec | None, data: Any, label: str) -> dict[str, Any] | None:
        if person is None:
            return None
        out = {}
        for part in _PERSON_PARTS:
            sub = getattr(person, part)
            if sub is not None:
                value = self.read(sub, data, f"{label}.{part}")
                if value is not None:
                    out[part] = _as_text(value, f"{label}.{part}")
        return out or None


def _as_text(value: Any, label: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | bool):
        return raw_text(value)
    raise MappingError(f"field {label}: expected a text, got {_short(value)}")


def _run_chain(chain: list[TransformRef], value: Any, label: str, transforms: Transforms) -> Any:
    for ref in chain:
        func = transforms.get(ref.name)
        if func is None:
            raise MappingError(
                f"field {label}: transform {ref.name!r} is not installed (no plugin provides it)"
            )
        try:
            value = func(value, **ref.args)
        except MappingError:
            raise
        except Exception as exc:  # a plugin's bug must dead-letter one record, not stop a cycle
            raise MappingError(
                f"field {label}: transform {ref.name!r} failed on {_short(value)}: {exc}"
            ) from exc
        if value is None:
            return None
    return value


def _match(condition: Any, data: Any, empty: set[str]) -> bool:
    value = get_path(data, condition.path)
    present = not (
        value is _MISSING
        or value is None
        or (isinstance(value, str | int | float | bool) and raw_text(value) in empty)
        or (isinstance(value, dict | list) and not value)
    )
    if condition.exists is not None:
        return present is condition.exists
    if not present:
        return False
    text = raw_text(value)
    if condition.equals is not None:
        return text == raw_text(condition.equals)
    if condition.in_ is not None:
        return text in {raw_text(option) for option in condition.in_}
    assert condition.matches is not None
    # Bound the text a file's pattern runs on: ticket content is untrusted.
    return re.search(condition.matches, text[:10_000]) is not None


def _apply_rules(section: ClassifySection, data: Any, empty: cabc.Iterable[str]) -> CallType:
    empties = set(empty)
    for rule in section.rules:
        if all(_match(condition, data, empties) for condition in rule.when):
            return rule.type
    return section.default


def classify_record(mapping: Mapping, record: RawRecord) -> CallType:
    """The call type the file's rules give a raw record (``default`` when none matches)."""
    return _apply_rules(
        mapping.spec.classify, record.data, (raw_text(v) for v in mapping.spec.empty_values)
    )


def _comment_id(instance: str, remote_id: str, remote_comment: str | None, item: Any) -> str:
    # Stable across reads, so a re-read call has the same content fingerprint (no echo writes).
    basis = remote_comment if remote_comment is not None else repr(item)[:10_000]
    digest = hashlib.sha256(f"{instance}\0{remote_id}\0{basis}".encode()).hexdigest()
    return f"cmt_{digest[:32]}"


def apply_inbound(mapping: Mapping, record: RawRecord, context: MappingContext) -> Call:
    """Map a raw record onto a canonical call (without asking plugin classifiers).

    :raises MappingError: naming the field and the raw value that cannot be mapped.
    """
    spec = mapping.spec
    reader = _Reader(mapping, context)
    data = record.data
    values: dict[str, Any] = {
        "unit": context.unit,
        "source": {
            "instance": context.instance,
            "remote_id": record.remote_id,
            "remote_key": record.remote_key,
            "url": record.url,
        },
    }
    title = reader.read(spec.fields.title, data, "title")
    if title is None:
        raise MappingError(f"field title: no value at path {spec.fields.title.path!r}")
    values["title"] = title
    for name in _SCALARS[1:]:
        item = getattr(spec.fields, name)
        if item is not None and name != "waiting_on":
            values[name] = reader.read(item, data, name)
    status = values.get("status")
    if isinstance(status, str) and status.startswith("waiting"):
        _, _, whom = status.partition(":")
        values["status"] = Status.WAITING.value
        if whom:
            values["waiting_on"] = whom
        elif spec.fields.waiting_on is not None:
            values["waiting_on"] = reader.read(spec.fields.waiting_on, data, "waiting_on")
    if values.get("updated") is None and record.updated is not None:
        values["updated"] = record.updated
    if values.get("created") is None:
        values["created"] = values.get("updated")
    if values.get("updated") is None:  # a record that never changes (a mail) says only created
        values["updated"] = values.get("created")
    for role in _ROLES:
        values[role] = reader.person(getattr(spec.people, role), data, role)
    _priority(values, spec.fields.priority is not None, context)
    values["call_type"] = _apply_rules(spec.classify, data, reader.empty)
    if spec.comments is not None:
        values["comments"] = _comments(mapping, reader, record, context)
    if spec.attributes is not None:
        attrs: dict[str, Any] = {}
        for name, item in spec.attributes.fields.items():
            value = reader.read(item, data, f"attributes.{name}")
            if value is not None:
                attrs[name] = value
        if attrs:
            values["attributes"] = {mapping.namespace: attrs}
    created, updated = values.get("created"), values.get("updated")
    if isinstance(created, datetime) and isinstance(updated, datetime):
        try:
            backwards = updated < created
        except TypeError:  # a naive time: the call's own validation names it
            backwards = False
        if backwards:
            raise MappingError(
                f"field updated: {updated.isoformat()} is earlier than created "
                f"{created.isoformat()} (the tool's times are inconsistent)"
            )
    for key in ("created", "updated"):
        if values.get(key) is None:
            raise MappingError(
                f"field {key}: the record says no {key} time and the connector gave none"
            )
    try:
        return Call.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise MappingError(_call_problems(exc)) from None


def unmapped_values(mapping: Mapping, record: RawRecord, context: MappingContext) -> dict[str, Any]:
    """Raw values of a record that fall outside the file's value tables, by field label.

    For conformance reports ("which values of the tool fall outside the mapping") and for
    trying a mapping on real data: unlike :func:`apply_inbound` it does not stop at the first.
    Fields whose transform fails are reported with the raw value too.
    """
    reader = _Reader(mapping, context)
    found: dict[str, Any] = {}
    for _, label, item, _ in field_specs(mapping.spec):
        if item.values is None or label.startswith("comments."):
            continue
        raw = get_path(record.data, item.path)
        if reader.is_empty(raw):
            continue
        try:
            value = reader.transform(item.transform, raw, label)
        except MappingError:
            found[label] = raw
            continue
        if not reader.is_empty(value) and item.lookup(value) is NOT_FOUND:
            found[label] = raw
    return found


def _priority(values: dict[str, Any], mapped: bool, context: MappingContext) -> None:
    matrix = context.priority_matrix
    priority = values.get("priority")
    if mapped and priority is not None:
        if priority not in matrix.classes:
            raise MappingError(
                f"field priority: {_short(priority)} is not a class of the priority matrix "
                f"({', '.join(matrix.classes)})"
            )
        return
    if not mapped:
        try:
            impact = Impact(values["impact"]) if values.get("impact") else None
            urgency = Urgency(values["urgency"]) if values.get("urgency") else None
        except ValueError:
            return  # the call's own validation names the bad value
        values["priority"] = matrix.derive(impact, urgency)


def _comments(
    mapping: Mapping, reader: _Reader, record: RawRecord, context: MappingContext
) -> list[dict[str, Any]]:
    section = mapping.spec.comments
    assert section is not None
    items = get_path(record.data, section.path)
    if reader.is_empty(items):
        return []
    if not isinstance(items, list):
        raise MappingError(
            f"field comments: path {section.path!r} holds {type(items).__name__}, not a list"
        )
    out = []
    for index, item in enumerate(items):
        label = f"comments[{index}]"
        remote = reader.read(section.id, item, f"{label}.id") if section.id else None
        remote_id = _as_text(remote, f"{label}.id") if remote is not None else None
        body = reader.read(section.body, item, f"{label}.body")
        created = reader.read(section.created, item, f"{label}.created")
        if created is None:
            raise MappingError(f"field {label}.created: no value at path {section.created.path!r}")
        comment: dict[str, Any] = {
            "id": _comment_id(context.instance, record.remote_id, remote_id, item),
            "body": "" if body is None else _as_text(body, f"{label}.body"),
            "created": created,
            "origin": context.instance,
            "remote_id": remote_id,
            "author": reader.person(section.author, item, f"{label}.author"),
        }
        if section.public is not None:
            public = reader.read(section.public, item, f"{label}.public")
            if public is not None:
                comment["public"] = public
        out.append({k: v for k, v in comment.items() if v is not None})
    return out


def _call_problems(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in error["loc"]) or "call"
        message = error["msg"].removeprefix("Value error, ")
        shown = (
            "" if isinstance(error.get("input"), dict) else f" (value {_short(error.get('input'))})"
        )
        parts.append(f"field {loc}: {message}{shown}")
    return "the mapped call is invalid: " + "; ".join(parts)


# -------------------------------------------------------------------------------------------
# outbound
# -------------------------------------------------------------------------------------------


def _to_raw(item: FieldSpec[Any], canonical: Any, label: str, context: MappingContext) -> Any:
    if item.values is not None:
        raw = item.raw_for(canonical)
        if raw is NOT_FOUND:
            raise MappingError(
                f"field {label}: canonical value {_short(_ctext(canonical))} has no raw value "
                "in the mapping's table (add it to values, or to write)"
            )
    else:
        raw = canonical
    if hasattr(raw, "value") and isinstance(raw.value, str):
        raw = raw.value
    if item.transform_out:
        raw = _run_chain(item.transform_out, raw, label, context.transforms)
    if isinstance(raw, datetime):
        raw = raw.isoformat()
    return raw


def apply_outbound(mapping: Mapping, call: Call, context: MappingContext) -> RemoteDraft:
    """What to write into the tool for a call: every writable field, in the tool's shape.

    Empty canonical values are left out (never written as blanks). The status is set apart in
    ``draft.status`` with the fields the move requires in ``draft.status_fields``.

    :raises MappingError: a canonical value the file cannot express in the tool.
    """
    spec = mapping.spec
    out: dict[str, Any] = {}
    draft_status: str | None = None
    status_fields: dict[str, JsonValue] = {}
    for name in _SCALARS:
        item = getattr(spec.fields, name)
        if item is None or item.read_only:
            continue
        if name == "status":
            key = call.status.value
            if (
                call.waiting_on is not None
                and item.raw_for(f"waiting:{call.waiting_on.value}") is not NOT_FOUND
            ):
                key = f"waiting:{call.waiting_on.value}"
            raw = _to_raw(item, key, "status", context)
            draft_status = raw if isinstance(raw, str) else raw_text(raw)
            extra = spec.fields.status.status_fields if spec.fields.status else {}
            for path, value in extra.get(key, extra.get(call.status.value, {})).items():
                status_fields[path] = value
            continue
        if name == "waiting_on" and _status_says_whom(mapping, call):
            continue
        value = getattr(call, name)
        if value is not None:
            set_path(out, item.path, _to_raw(item, value, name, context))
    for role in _ROLES:
        person_spec = getattr(spec.people, role)
        person = getattr(call, role)
        if person_spec is None or person is None:
            continue
        for part in _PERSON_PARTS:
            sub = getattr(person_spec, part)
            value = getattr(person, part)
            if sub is not None and not sub.read_only and value is not None:
                set_path(out, sub.path, _to_raw(sub, value, f"{role}.{part}", context))
    if spec.attributes is not None:
        kept = call.attributes.get(mapping.namespace, {})
        for name, item in spec.attributes.fields.items():
            if not item.read_only and kept.get(name) is not None:
                set_path(out, item.path, _to_raw(item, kept[name], f"attributes.{name}", context))
    for path, value in spec.classify.write.get(call.call_type, {}).items():
        set_path(out, path, value)
    return RemoteDraft(fields=out, status=draft_status, status_fields=status_fields)


def _status_says_whom(mapping: Mapping, call: Call) -> bool:
    status = mapping.spec.fields.status
    return (
        status is not None
        and not status.read_only
        and call.waiting_on is not None
        and status.raw_for(f"waiting:{call.waiting_on.value}") is not NOT_FOUND
    )
