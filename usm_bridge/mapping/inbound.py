"""Inbound: a raw record of a tool mapped onto a canonical :class:`~usm_bridge.model.Call`.

The half of the mapping engine that runs on every record read: it reads each field at its path,
runs the field's transforms, looks the value up in the file's tables, classifies the record,
derives the priority and validates the call. Anything it cannot map raises
:class:`~usm_bridge.errors.MappingError` naming the field and the value (the record goes to
the dead letters). Import its functions from :mod:`usm_bridge.mapping`, which re-exports them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..connector import RawRecord
from ..errors import MappingError
from ..model import Call, Impact, Status, Urgency, WaitingOn
from .classify import apply_rules
from .confirmation import read_confirmation
from .forks import read_forks
from .paths import MISSING, get_path
from .spec import NOT_FOUND, FieldSpec, PersonSpec, StatusField, TransformRef, raw_text
from .status import read_status
from .types import PERSON_PARTS, ROLES, SCALARS, Classifier, Mapping, MappingContext, field_specs
from .unclassified_work import classify_before_validation, refuse_unclassified_work
from .values import run_chain, short_repr

__all__ = ["apply_inbound", "unmapped_values"]


class _Reader:
    def __init__(self, mapping: Mapping, context: MappingContext) -> None:
        self.mapping = mapping
        self.context = context
        self.empty = {raw_text(v) for v in mapping.spec.empty_values}

    def is_empty(self, value: Any) -> bool:
        if value is MISSING or value is None:
            return True
        if isinstance(value, str | int | float | bool) and raw_text(value) in self.empty:
            return True
        return isinstance(value, dict | list) and not value

    def transform(self, chain: list[TransformRef], value: Any, label: str) -> Any:
        return run_chain(chain, value, label, self.context.transforms)

    def raw_of(self, item: FieldSpec[Any], data: Any) -> tuple[str, Any]:
        """The path that holds the field's value and the raw value there: ``path``, else the
        first ``fallback`` path holding one (``path`` and its emptiness when none does)."""
        raw = get_path(data, item.path)
        for path in item.fallback:
            if not self.is_empty(raw):
                break
            other = get_path(data, path)
            if not self.is_empty(other):
                return path, other
        return item.path, raw

    def read(self, item: FieldSpec[Any], data: Any, label: str) -> Any:
        path, raw = self.raw_of(item, data)
        value = raw
        if not self.is_empty(value):
            value = self.transform(item.transform, value, label)
        if self.is_empty(value):
            if item.required:
                raise MappingError(
                    f"field {label}: required value is missing (path {path!r}"
                    f"{'' if raw is MISSING else f', value {short_repr(raw)}'})"
                )
            return item.default
        if item.values is None:
            return value
        hit = NOT_FOUND
        if isinstance(item, StatusField) and item.rules:
            hit = read_status(item, value, data, self.empty)
        if hit is NOT_FOUND:
            hit = item.lookup(value)
        if hit is NOT_FOUND:
            if item.on_unknown == "default":
                return item.default
            shown = (
                short_repr(raw) if raw == value else f"{short_repr(raw)} (as {short_repr(value)})"
            )
            known = ", ".join(sorted(repr(raw_text(k)) for k in item.values))
            raise MappingError(
                f"field {label}: value {shown} at path {path!r} is not in the mapping "
                f"{self.mapping.name!r} (known: {known[:300]})"
            )
        return hit

    def person(self, person: PersonSpec | None, data: Any, label: str) -> dict[str, Any] | None:
        if person is None:
            return None
        out = {}
        for part in PERSON_PARTS:
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
    raise MappingError(f"field {label}: expected a text, got {short_repr(value)}")


def _comment_id(instance: str, remote_id: str, remote_comment: str | None, item: Any) -> str:
    # Stable across reads, so a re-read call has the same content fingerprint (no echo writes).
    basis = remote_comment if remote_comment is not None else repr(item)[:10_000]
    digest = hashlib.sha256(f"{instance}\0{remote_id}\0{basis}".encode()).hexdigest()
    return f"cmt_{digest[:32]}"


def apply_inbound(
    mapping: Mapping,
    record: RawRecord,
    context: MappingContext,
    *,
    classifier: Classifier | None = None,
) -> Call:
    """Map a raw record onto a canonical call.

    :param classifier: asked when the file's rules leave the record unclassified, before the
        call is validated (see :mod:`.unclassified_work`); ``None``: the rules alone decide.
    :raises MappingError: naming the field and the raw value that cannot be mapped, or the
        record worked on while unclassified.
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
    for name in SCALARS[1:]:
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
    # Whatever process the tool says a wait is for, also one USM has no fork to (an incident
    # on improve): recorded as it is, for the report to show (USM.md, "flows USM does not have").
    waiting_process = spec.fields.waiting_process
    if waiting_process is not None and values.get("waiting_on") == WaitingOn.SECONDARY_PROCESS:
        values["waiting_process"] = reader.read(waiting_process, data, "waiting_process")
    if values.get("updated") is None and record.updated is not None:
        values["updated"] = record.updated
    if values.get("created") is None:
        values["created"] = values.get("updated")
    if values.get("updated") is None:  # a record that never changes (a mail) says only created
        values["updated"] = values.get("created")
    for role in ROLES:
        values[role] = reader.person(getattr(spec.people, role), data, role)
    _priority(values, spec.fields.priority is not None, context)
    values["call_type"] = apply_rules(spec.classify, data, reader.empty)
    classify_before_validation(values, record, classifier)
    refuse_unclassified_work(values, record)
    if spec.comments is not None:
        values["comments"] = _comments(mapping, reader, record, context)
    if spec.confirmation is not None:
        values["confirmation"] = read_confirmation(
            spec.confirmation, data, values, empty=reader.empty,
            read_field=reader.read, read_person=reader.person,
        )  # fmt: skip
    if spec.forks:
        forks = read_forks(
            spec.forks, data, tool=mapping.tool, is_empty=reader.is_empty,
            transform=lambda fork, raw, label: reader.transform(fork.transform, raw, label),
        )  # fmt: skip
        if forks:
            values["chain"] = {"forks": forks}
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
        _, raw = reader.raw_of(item, record.data)
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
                f"field priority: {short_repr(priority)} is not a class of the priority matrix "
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
            ""
            if isinstance(error.get("input"), dict)
            else f" (value {short_repr(error.get('input'))})"
        )
        parts.append(f"field {loc}: {message}{shown}")
    return "the mapped call is invalid: " + "; ".join(parts)
