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
from ..model import Call, CallType, Impact, Status, Urgency, WaitingOn
from .compiled import CompiledComments, CompiledMapping, compiled
from .confirmation import read_confirmation
from .field_readers import as_text
from .forks import read_forks
from .spec import NOT_FOUND, PersonSpec
from .types import Classifier, Mapping, MappingContext, field_specs
from .unclassified_work import classify_and_validate, refuse_unclassified_work
from .values import short_repr

__all__ = ["apply_inbound", "unmapped_values"]


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

    The call is validated once (see :mod:`.unclassified_work` for the record the file's rules
    leave unclassified).

    :param classifier: asked when the file's rules leave the record unclassified, before the
        call is validated (see :mod:`.unclassified_work`); ``None``: the rules alone decide.
    :raises MappingError: naming the field and the raw value that cannot be mapped, or the
        record worked on while unclassified.
    """
    form = compiled(mapping, context.transforms)
    values = _head(form, record, context)
    if classifier is not None and values["call_type"] is CallType.UNCLASSIFIED:
        return classify_and_validate(
            values, record, classifier, lambda into: _tail(form, into, record, context), _validate
        )
    refuse_unclassified_work(values, record)
    _tail(form, values, record, context)
    return _validate(values)


def _head(form: CompiledMapping, record: RawRecord, context: MappingContext) -> dict[str, Any]:
    """The call's values up to its type: what a classifier is shown."""
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
    title = form.title.read(data, "title")
    if title is None:
        raise MappingError(f"field title: no value at path {form.title.path!r}")
    values["title"] = title
    for name, reader in form.scalars:
        values[name] = reader.read(data, name)
    status = values.get("status")
    if isinstance(status, str) and status.startswith("waiting"):
        _, _, whom = status.partition(":")
        values["status"] = Status.WAITING.value
        if whom:
            values["waiting_on"] = whom
        elif form.waiting_on is not None:
            values["waiting_on"] = form.waiting_on.read(data, "waiting_on")
    # Whatever process the tool says a wait is for, also one USM has no fork to (an incident
    # on improve): recorded as it is, for the report to show (USM.md, "flows USM does not have").
    waiting_process = form.waiting_process
    if waiting_process is not None and values.get("waiting_on") == WaitingOn.SECONDARY_PROCESS:
        values["waiting_process"] = waiting_process.read(data, "waiting_process")
    if values.get("updated") is None and record.updated is not None:
        values["updated"] = record.updated
    if values.get("created") is None:
        values["created"] = values.get("updated")
    if values.get("updated") is None:  # a record that never changes (a mail) says only created
        values["updated"] = values.get("created")
    for role, person in form.people:
        values[role] = person.read(data, role) if person is not None else None
    _priority(values, form.priority_mapped, context)
    values["call_type"] = form.classify(data)
    return values


def _tail(
    form: CompiledMapping, values: dict[str, Any], record: RawRecord, context: MappingContext
) -> None:
    """The call's other values, read into ``values``: comments, confirmation, forks and
    attributes; then the checks of its times.

    :raises MappingError: what cannot be mapped, or times that cannot be a call's.
    """
    mapping, data = form.mapping, record.data
    spec = mapping.spec
    if form.comments is not None:
        values["comments"] = _comments(form, form.comments, record, context)
    if spec.confirmation is not None:
        values["confirmation"] = read_confirmation(
            spec.confirmation, data, values, holds=form.holds,
            read_field=lambda item, on, label: form.field(item).read(on, label),
            read_person=lambda person, on, label: _person(form, person, on, label),
        )  # fmt: skip
    if spec.forks:
        forks = read_forks(
            spec.forks, data, tool=mapping.tool, is_empty=form.is_empty,
            transform=form.fork_transform,
        )  # fmt: skip
        if forks:
            values["chain"] = {"forks": forks}
    if form.attributes:
        attrs: dict[str, Any] = {}
        for name, reader in form.attributes:
            value = reader.read(data, f"attributes.{name}")
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


def _validate(values: dict[str, Any]) -> Call:
    """The call ``values`` describe, validated: the one validation of a mapped record."""
    try:
        return Call.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise MappingError(_call_problems(exc)) from None


def _person(
    form: CompiledMapping, person: PersonSpec | None, data: Any, label: str
) -> dict[str, Any] | None:
    reader = form.person(person)
    return reader.read(data, label) if reader is not None else None


def unmapped_values(mapping: Mapping, record: RawRecord, context: MappingContext) -> dict[str, Any]:
    """Raw values of a record that fall outside the file's value tables, by field label.

    For conformance reports ("which values of the tool fall outside the mapping") and for
    trying a mapping on real data: unlike :func:`apply_inbound` it does not stop at the first.
    Fields whose transform fails are reported with the raw value too.
    """
    form = compiled(mapping, context.transforms)
    found: dict[str, Any] = {}
    for _, label, item, _ in field_specs(mapping.spec):
        if item.values is None or label.startswith("comments."):
            continue
        reader = form.field(item)
        _, raw = reader.raw_of(record.data)
        if reader.is_empty(raw):
            continue
        try:
            value = reader.transform(raw, label)
        except MappingError:
            found[label] = raw
            continue
        if not reader.is_empty(value) and reader.lookup(value) is NOT_FOUND:
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
    form: CompiledMapping,
    section: CompiledComments,
    record: RawRecord,
    context: MappingContext,
) -> list[dict[str, Any]]:
    items = section.get(record.data)
    if form.is_empty(items):
        return []
    if not isinstance(items, list):
        raise MappingError(
            f"field comments: path {section.path!r} holds {type(items).__name__}, not a list"
        )
    out = []
    for index, item in enumerate(items):
        label = f"comments[{index}]"
        remote = section.id.read(item, f"{label}.id") if section.id is not None else None
        remote_id = as_text(remote, f"{label}.id") if remote is not None else None
        body = section.body.read(item, f"{label}.body")
        created = section.created.read(item, f"{label}.created")
        if created is None:
            raise MappingError(f"field {label}.created: no value at path {section.created.path!r}")
        comment: dict[str, Any] = {
            "id": _comment_id(context.instance, record.remote_id, remote_id, item),
            "body": "" if body is None else as_text(body, f"{label}.body"),
            "created": created,
            "origin": context.instance,
            "remote_id": remote_id,
            "author": (
                section.author.read(item, f"{label}.author") if section.author is not None else None
            ),
        }
        if section.public is not None:
            public = section.public.read(item, f"{label}.public")
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
