"""From USM-WIF documents to the ``[workflows]`` config that reproduces them.

This is how an organisation adopts a workflow another tool published: ``usm-bridge import
wif`` prints the TOML, a person reads it and pastes it into the config. The printed config
leaves out every value equal to the bridge's default for its pattern, so that exporting a
config and importing the documents gives the same config back. It never says which patterns a
unit runs (``patterns``) nor the source-system instance: those are the adopting side's own.

Documents arrive placed in a unit and a pattern (:mod:`.placing`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Sequence
from datetime import datetime

from pydantic import ValidationError

from .documents import Person
from .export import template_steps
from .patterns import (
    default_description,
    default_dynamicity,
    default_name,
    default_slug,
    default_step_name,
)
from .placing import Adopted, ordered
from .reader import WifDocumentError
from .settings import WorkflowsConfig, workflow_problems
from .toml_text import TomlValue, toml_key, toml_value

__all__ = ["config_snippet"]


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
    for number, step in enumerate(ordered(document.steps), start=1):
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
        for index, activity in enumerate(ordered(step.activities), start=1):
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
