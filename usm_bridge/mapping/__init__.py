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
        status_fields: {fulfilled: {close_code: "Solved (Permanently)"}}  # written on the move
        rules:                       # a status that spans fields, tried before the table
          - {status: cancelled, tool: "6", when: {path: close_code, equals: "Cancelled"}}
        field_paths: {close_code: close_code}  # where a read finds each status field again
      waiting_on: {path: hold_reason, values: {"1": customer, "5": secondary_process},
                   default: customer}
      waiting_process: {path: hold_reason, values: {"5": change}, read_only: true}
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
    confirmation:                    # how the tool shows the customer's acceptance (read only)
      statuses: [closed]             # read on calls in these (default: confirmed, closed)
      by: {ref: {path: closed_by, transform: servicenow_value}}   # who closed: a person spec
      rules:                         # first that holds wins; none holds: no confirmation
        - {kind: implicit, when: {path: sys_updated_by, equals: system}, how: "auto-close"}
        - {kind: explicit, by_requester: true, how: "the caller closed it"}
    forks:                           # the tool's links that are forks between processes
      - {path: rfc, transform: servicenow_value, role: secondary, process: change,
         via: incident.rfc}
      - path: fields.issuelinks      # (Jira) a list of issue links: those of one type
        link: {type: Problem/Incident, direction: inward}   # inwardIssue: "is caused by"
        role: secondary
        process: improve
    attachments:                     # which files travel to and from the instance
      travel: true                   # default true; false refuses every file (noted, never lost)
      max_size: 25MiB                # default 25 MiB; bytes, or KB/KiB/MB/MiB/GB/GiB
      allow: [application/pdf, "image/*"]   # sniffed types that travel; default: all not refused
      refuse: [application/zip]      # besides programs and scripts (default_refusals: true)
      refuse_extensions: [.docm]     # besides .exe, .js, .bat, .lnk, ... (default_refusals)

A FIELD SPEC has ``path`` (dotted, digits index lists, ``$`` is the whole record),
``transform`` / ``transform_out`` (a name, ``{name, args}``, or a list of them), ``values`` (raw
-> canonical), ``write`` (canonical -> raw), ``default``, ``on_unknown`` (``error`` |
``default``), ``required`` and ``read_only``, and ``fallback``: paths read in order when
``path`` holds nothing (ServiceNow's ``service_offering``, else ``business_service``; written
is ``path`` only). A status table value may be ``waiting:customer`` (``waiting:supplier``,
``waiting:secondary_process``) when one tool status says both things.

The ``service`` field maps the tool's own service (a ServiceNow offering or business service,
a JSM request type, the address a mail was sent to) through its ``values`` table onto the
services the config registers (``[services.ID]``); ``usm-bridge check`` refuses a table value
that is not a registered service of the instance's unit, when the config registers services.

A status that spans fields (Jira's *Done* with resolution *Won't Do* is ``cancelled``) is a
status rule: when the tool status is ``tool`` and every ``when`` condition holds (matched like
``classify`` rules), the status is ``status``; writing ``status`` moves to ``tool`` with the
file's ``status_fields`` for it, and ``field_paths`` says where a read finds those fields. The
loader refuses a status whose write reads back as another status off its lifecycle path (a
cancel read back as fulfilled); :func:`check_mapping` lists the writes that only lose detail.

A tool whose workflow has no state for a USM state declares it: ``passes_through`` maps a
canonical status to the USM states, in lifecycle order, that a call reaching it has passed
through (a ServiceNow requested item closed complete was fulfilled: ``closed: [fulfilled]``).
The conformance report then judges a move into that status through those states. The loader
refuses a status no tool status reads as, a state the tool has a status for, and a path the
lifecycle forbids (:mod:`usm_bridge.mapping.passes_through`).

``confirmation`` reads :attr:`~usm_bridge.model.Call.confirmation`: a rule holds when its
``when`` conditions hold (matched like ``classify`` rules) and the closer read by ``by`` passes
``by_requester`` (``true``: the closer is the requester, by ref, else e-mail, else name;
``false``: someone else) and ``by_matches`` (a pattern over the closer's ref, e-mail or name).
``kind`` is ``explicit`` (the customer said so; ``by`` is recorded) or ``implicit`` (a tool's
automatic close: nobody is named); ``at`` defaults to the call's closed, else updated, time;
``how`` is the evidence the report shows (:mod:`usm_bridge.mapping.confirmation`).
``waiting_process`` says which process a ``secondary_process`` wait waits on; it is read only
while the call waits on one and never written (the tool's reason is written through
``waiting_on``). It is recorded as the tool says it, also where USM has no such fork (an
incident waiting on improve), for the conformance report to show.

A fork (USM workflow patterns W3, W4: work handed from one process to another inside the unit)
is one of the tool's own links. Each ``forks`` entry has ``path``, ``transform``, ``role``
(``secondary``: the other record works for this call; ``primary``: this call works for it),
``process`` (the other record's, when the link says it) and ``via`` (the tool's name for the
link, kept as evidence). Without ``link`` the value at ``path`` is the other record's id (a
ServiceNow reference field); with ``link: {type, direction}`` it is a list of issue links as
Jira returns them, and every link of that type name whose ``inwardIssue`` (``inward``) or
``outwardIssue`` (``outward``) is set is a fork to that issue (its key). The sync resolves each
fork to the other record's call once the bridge holds it (:mod:`usm_bridge.sync.forks`).

Inbound, a value not in a table, a missing required value, a failing transform or a call the
model refuses raise :class:`~usm_bridge.errors.MappingError` naming the field and the value:
the record goes to the dead letters. Outbound writes every field not marked ``read_only`` into
a :class:`~usm_bridge.connector.RemoteDraft` in the record's own shape; the status goes to
``draft.status``, as tools change status through workflows.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

from pydantic import TypeAdapter, ValidationError

from ..errors import MappingFileError
from .classify import (
    apply_rules,
    classify_record,
    first_rule,
    match_condition,
    match_rule,
    matched_rule,
    type_value_rule,
)
from .confirmation import confirmation_field_specs
from .inbound import apply_inbound, unmapped_values
from .loader import Loc, located_error, parse_located, read_mapping_text
from .outbound import apply_outbound
from .passes_through import passes_through_problems
from .paths import get_path, set_path
from .spec import (
    FORMAT_KEYS,
    ClassifySection,
    FieldSpec,
    MappingFile,
    TransformRef,
    raw_text,
    split_path,
)
from .transforms import PROVIDERS, missing_transform
from .types import (
    ROLES,
    SCALARS,
    Classifier,
    Mapping,
    MappingContext,
    Transforms,
    field_specs,
)
from .values import write_key
from .workflow import status_problems

__all__ = [
    "Classifier",
    "Mapping",
    "MappingContext",
    "Problem",
    "Transforms",
    "apply_inbound",
    "apply_outbound",
    "check_mapping",
    "classify_record",
    "field_specs",
    "first_rule",
    "get_path",
    "load_mapping",
    "loads_mapping",
    "mapping_warnings",
    "match_condition",
    "match_rule",
    "matched_rule",
    "set_path",
    "summarize",
    "type_value_rule",
    "unmapped_values",
    "validate_transforms",
    "writable_paths",
]


# -------------------------------------------------------------------------------------------
# loading and validation (the engine's other parts: types, paths, classify, inbound,
# outbound, values)
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
        if ref.name in transforms:
            continue
        if ref.name in PROVIDERS:  # a tool's transform whose connector is not installed
            problems.append(
                (loc, missing_transform(ref.name), f"pip install {PROVIDERS[ref.name]}")
            )
            continue
        message = f"unknown transform {ref.name!r}"
        close = difflib.get_close_matches(ref.name, list(transforms), n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {close[0]!r}?"
        problems.append((loc, message, "a transform an installed plugin provides"))
    if problems:
        raise _problems_error(mapping, problems)


def check_mapping(
    path: Path | str,
    transforms: Transforms,
    expected_tool: str | None = None,
    *,
    warnings: list[str] | None = None,
) -> str:
    """Everything ``usm-bridge mapping check`` and ``usm-bridge check`` verify about a file.

    A status the file writes that reads back as another one off its lifecycle path (a cancel
    read back as fulfilled) is an error; one that only loses detail is a warning.

    :param transforms: the installed transforms (every name the file uses must be one).
    :param expected_tool: the connector kind the file is configured for, if known.
    :param warnings: when given, receives ``file:line: key k: message`` for each warning.
    :returns: a one-line summary of what the mapping covers.
    :raises MappingFileError: the first problems, each with file, line and key.
    """
    mapping = load_mapping(path)
    if warnings is not None:
        warnings.extend(mapping_warnings(mapping))
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
    scalars = [name for name in SCALARS if getattr(spec.fields, name) is not None]
    people = [role for role in ROLES if getattr(spec.people, role) is not None]
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


def _transform_refs(spec: MappingFile) -> Iterator[tuple[Loc, TransformRef]]:
    items = [(loc, item) for loc, _, item, _ in field_specs(spec)]
    for loc, item in [*items, *confirmation_field_specs(spec)]:
        for key in ("transform", "transform_out"):
            for index, ref in enumerate(getattr(item, key)):
                yield (*loc, key, index), ref
    # Read only, so not among field_specs (which outbound walks): their transforms count too.
    if spec.fields.waiting_process is not None:
        for index, ref in enumerate(spec.fields.waiting_process.transform):
            yield ("fields", "waiting_process", "transform", index), ref
    for number, fork in enumerate(spec.forks):
        for index, ref in enumerate(fork.transform):
            yield ("forks", number, "transform", index), ref


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
            own = [r for r, c in (item.values or {}).items() if write_key(c) == canonical_key]
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
    empties = frozenset(raw_text(v) for v in spec.empty_values)
    for loc, message, expected, error in status_problems(spec.fields.status, empties):
        if error:
            yield loc, message, expected
    yield from passes_through_problems(spec.fields.status)
    yield from _collisions(mapping)
    yield from _classify_problems(spec.classify)


def mapping_warnings(mapping: Mapping) -> list[str]:
    """What a valid file loses (``file:line: key k: message``): statuses that read back as a
    neighbour, statuses the bridge writes that the file cannot."""
    empties = frozenset(raw_text(v) for v in mapping.spec.empty_values)
    return [
        f"{mapping.where(loc)}: {message}"
        for loc, message, _, error in status_problems(mapping.spec.fields.status, empties)
        if not error
    ]


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
        got = apply_rules(section, record, ("",))
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
