"""From USM-WIF documents to the ``[workflows]`` config that reproduces them.

This is how an organisation adopts a workflow another tool published: ``usm-bridge import
wif`` prints the TOML, a person reads it and pastes it into the config. The printed config
leaves out every value equal to the bridge's default for its pattern, so that exporting a
config and importing the documents gives the same config back. It never says which patterns a
unit runs (``patterns``) nor the source-system instance: those are the adopting side's own.

Which pattern a document describes is read from our own member ``x-usm-bridge-pattern`` when
present, else from its ``process`` (where the pattern starts) and the processes of its steps.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from pydantic import TypeAdapter, ValidationError

from ..lifecycle import WorkflowPattern
from ..lifecycle import pattern as find_pattern
from ..model import Name
from .documents import PATTERN_MEMBER, Activity, Person, Step, WorkflowDocument
from .export import template_steps
from .patterns import (
    PATTERN_IDS,
    default_description,
    default_dynamicity,
    default_name,
    default_slug,
    default_step_name,
    patterns_fitting,
)
from .reader import WifDocumentError
from .settings import WorkflowsConfig, workflow_problems
from .toml_text import TomlValue, toml_key, toml_value

__all__ = ["Adopted", "adopt", "config_snippet"]

_UNIT_NAME: TypeAdapter[str] = TypeAdapter(Name)


@dataclass(frozen=True)
class Adopted:
    """One document, placed: the unit it configures and the pattern it describes."""

    source: str
    unit: str
    pattern: WorkflowPattern
    document: WorkflowDocument


def adopt(source: str, document: WorkflowDocument, unit: str | None = None) -> Adopted:
    """Place ``document`` (read from ``source``) in ``unit``, by default its ``context``.

    :raises WifDocumentError: when no unit or no single pattern fits.
    """
    target = unit if unit is not None else document.context
    if target is None:
        raise WifDocumentError(
            "at $: no context to name the unit; give the unit (--unit UNIT)", where=source
        )
    try:
        _UNIT_NAME.validate_python(target)
    except ValidationError:
        where = "--unit" if unit is not None else "at $.context"
        raise WifDocumentError(
            f"{where}: {target[:80]!r} is not a unit name (lower-case letters, digits, '_' or "
            "'-', starting with a letter); give the unit (--unit UNIT)",
            where=source,
        ) from None
    return Adopted(source, target, _pattern_of(document, source), document)


def _pattern_of(document: WorkflowDocument, source: str) -> WorkflowPattern:
    processes = []
    for index, step in enumerate(_ordered(document.steps)):
        if step.process is None:
            raise WifDocumentError(
                f"at $.steps[{index}]: no process; each step the bridge configures is one "
                "process's",
                where=source,
            )
        processes.append(step.process)
    fitting = patterns_fitting(document.process, processes)
    path = " -> ".join(p.value for p in processes) or "no steps"
    if document.pattern is not None:
        if document.pattern not in PATTERN_IDS:
            raise WifDocumentError(
                f"at $['{PATTERN_MEMBER}']: not a workflow pattern; use one of "
                f"{', '.join(PATTERN_IDS)}",
                where=source,
            )
        named = find_pattern(document.pattern)
        if named not in fitting:
            raise WifDocumentError(
                f"at $['{PATTERN_MEMBER}']: {named.id} does not fit the document's process "
                f"and steps ({path})",
                where=source,
            )
        return named
    if len(fitting) == 1:
        return fitting[0]
    if not fitting:
        raise WifDocumentError(
            f"at $: its process and steps ({path}) follow none of the eight workflow patterns",
            where=source,
        )
    raise WifDocumentError(
        f"at $: its process and steps ({path}) fit {', '.join(p.id for p in fitting)}; "
        "add the step of the process it forks to, or the member "
        f"{PATTERN_MEMBER} naming the pattern",
        where=source,
    )


_Item = TypeVar("_Item", Step, Activity)


def _ordered(items: Sequence[_Item]) -> list[_Item]:
    # The draft's sort-index only suggests an order; it is followed when every item has one.
    if all(item.sort_index is not None for item in items):
        return sorted(items, key=lambda item: item.sort_index or 0)
    return list(items)


def config_snippet(adopted: Sequence[Adopted]) -> str:
    """The TOML that configures every adopted document, unit by unit.

    :raises WifDocumentError: when two documents configure the same pattern of one unit, or
        give one profile id two names.
    """
    lines: list[str] = []
    for unit in dict.fromkeys(item.unit for item in adopted):
        mine = [item for item in adopted if item.unit == unit]
        _refuse_twice(mine)
        profiles = _profiles(mine)
        if profiles:
            lines += ["", f"[workflows.{toml_key(unit)}.profiles]"]
            lines += [f"{toml_key(key)} = {toml_value(name)}" for key, name in profiles.items()]
        for item in mine:
            lines += ["", *_workflow_lines(item)]
    text = "\n".join(lines).lstrip("\n") + "\n"
    _refuse_unloadable(text, adopted)
    return text


def _refuse_unloadable(text: str, adopted: Sequence[Adopted]) -> None:
    """Refuse to print a config the bridge would not load: a document may hold what the
    format allows and the config does not (a name longer than a title, an empty person id)."""
    units = {item.unit for item in adopted}
    try:
        workflows = WorkflowsConfig.model_validate(tomllib.loads(text).get("workflows", {}))
    except ValidationError as exc:
        error = exc.errors(include_input=False, include_url=False)[0]
        problems = [(tuple(error["loc"]), error["msg"])]
    else:
        problems = list(workflow_problems(workflows, units))
    if problems:
        loc, message = problems[0]
        sources = [i.source for i in adopted if (i.unit, i.pattern.id) == tuple(loc[:2])]
        key = ".".join(str(part) for part in ("workflows", *loc))
        raise WifDocumentError(
            f"the config it gives would be refused: key {key}: {message}",
            where=", ".join(sources or [i.source for i in adopted if i.unit == loc[0]]),
        )


def _refuse_twice(adopted: Sequence[Adopted]) -> None:
    seen: dict[str, str] = {}
    for item in adopted:
        first = seen.setdefault(item.pattern.id, item.source)
        if first != item.source:
            raise WifDocumentError(
                f"configures {item.pattern.id} of unit {item.unit!r}, as {first} does; "
                "import one of them",
                where=item.source,
            )


def _profiles(adopted: Sequence[Adopted]) -> dict[str, str]:
    """Each profile the documents list or give responsibilities to, with its name (its id
    where no document names it)."""
    names: dict[str, tuple[str, str]] = {}  # id -> (name, the file that named it)
    for item in adopted:
        for index, profile in enumerate(item.document.profiles):
            if profile.id is None:
                continue
            name = profile.name if profile.name is not None else profile.id
            first = names.setdefault(profile.id, (name, item.source))
            if first[0] != name:
                raise WifDocumentError(
                    f"at $.profiles[{index}].name: profile {profile.id!r} is named "
                    f"{first[0]!r} in {first[1]}; one id is one role or position",
                    where=item.source,
                )
    for item in adopted:
        for step in item.document.steps:
            for activity in step.activities:
                for key in activity.responsibilities:
                    names.setdefault(key, (key, item.source))
    return {key: name for key, (name, _) in names.items()}


def _workflow_lines(item: Adopted) -> Iterator[str]:
    document, pattern = item.document, item.pattern
    table = f"workflows.{toml_key(item.unit)}.{pattern.id}"
    settings: dict[str, TomlValue | None] = {
        "name": _unless(document.name, default_name(pattern)),
        "slug": _unless(document.slug, default_slug(pattern)),
        "description": _unless(document.description, default_description(pattern)),
        "dynamicity": _unless(document.dynamicity, default_dynamicity(pattern)),
        "created_at": _time(document.created_at),
        "created_by": _person(document.created_by),
        "modified_at": _time(document.modified_at),
        "modified_by": _person(document.modified_by),
    }
    origin = f"# {pattern.id} ({pattern.name}) from {toml_value(item.source)}"
    as_template = document.steps == template_steps(pattern)
    if as_template and all(value is None for value in settings.values()):
        # The pattern's own template: the bridge writes it for every unit unconfigured.
        yield f"{origin}: the pattern's own template, nothing to configure"
        return
    yield origin
    yield f"[{table}]"
    yield from _assignments(settings)
    if as_template:
        return
    for number, step in enumerate(_ordered(document.steps), start=1):
        process = step.process
        assert process is not None  # _pattern_of refused a step without one
        step_table = f"{table}.steps.{toml_key(_id(step.id, number))}"
        yield ""
        yield f"[{step_table}]"
        yield from _assignments(
            {
                "process": process.value,
                "name": _unless(step.name, default_step_name(process)),
                "description": step.description,
            }
        )
        for index, activity in enumerate(_ordered(step.activities), start=1):
            yield ""
            yield f"[{step_table}.activities.{toml_key(_id(activity.id, index))}]"
            raci = {key: list(letters) for key, letters in activity.responsibilities.items()}
            yield from _assignments({"description": activity.description, "raci": raci or None})


def _assignments(settings: dict[str, TomlValue | None]) -> Iterator[str]:
    for key, value in settings.items():
        if value is not None:
            yield f"{key} = {toml_value(value)}"


def _unless(value: str | None, default: str) -> str | None:
    """``value``, or ``None`` where it is the default (left out of the config)."""
    return None if value == default else value


def _id(given: str | None, position: int) -> str:
    # Only a template's steps and activities may lack an id; the position stands in.
    return given if given is not None else str(position)


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _person(person: Person | None) -> dict[str, TomlValue] | None:
    if person is None:
        return None
    fields = {"id": person.id, "name": person.name, "email": person.email}
    return {key: value for key, value in fields.items() if value is not None}
