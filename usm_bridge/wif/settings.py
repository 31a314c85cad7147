"""The ``[workflows]`` config section: each unit's workflows, steps, activities and RACI.

::

    [workflows]
    source_system_instance = "acme-prod"      # optional; see docs/wif.md

    [workflows.it]
    patterns = ["W2", "W3", "W4", "W5"]       # the patterns the unit runs; default all eight

    [workflows.it.profiles]                   # roles or positions: id = name
    operator = "IT service desk operator"
    change-manager = "Change manager"

    [workflows.it.W3]                         # a pattern id W1..W8
    name = "Outage fixed by a change"
    [workflows.it.W3.steps.restore]           # steps and activities are keyed by their id,
    process = "recover"                       # in the order written
    [workflows.it.W3.steps.restore.activities.log]
    description = "Log the incident and link it to the service"
    raci = { operator = "R", change-manager = ["A", "I"] }

Steps and activities are tables keyed by id, not arrays of tables, so that every error names
the exact line and key. Cross-references (units, pattern ids, step processes, profiles) are
checked by :func:`workflow_problems`, which the config calls with the rest of its checks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from ..lifecycle import pattern as find_pattern
from ..model import AwareDatetime, Body, Title, UsmProcess
from .patterns import PATTERN_IDS, SLUG, Dynamicity, default_slug, first_out_of_order

__all__ = [
    "RACI_LETTERS",
    "ActivitySettings",
    "PersonSettings",
    "StepSettings",
    "UnitWorkflows",
    "WorkflowSettings",
    "WorkflowsConfig",
    "workflow_problems",
]

#: Responsible, accountable, consulted, informed (the draft's "responsibilities").
RACI_LETTERS = ("R", "A", "C", "I")

Loc = tuple[str | int, ...]


def _slug(value: str) -> str:
    if not SLUG.match(value):
        raise ValueError(
            "a slug is letters and digits with single dashes between them "
            "(no dash first or last, no two in a row), e.g. 'incident-with-change'"
        )
    return value


Slug = Annotated[str, AfterValidator(_slug)]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PersonSettings(_Settings):
    """The draft's Person: who created or last modified a workflow."""

    id: Annotated[str, Field(min_length=1, max_length=300)]
    name: Title | None = None
    email: Title | None = None


class ActivitySettings(_Settings):
    description: Body | None = None
    #: Profile id -> RACI letters: ``["R", "A"]``, or the same as one string ``"RA"``.
    raci: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("raci", mode="before")
    @classmethod
    def _letters(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        letters: dict[object, object] = {}
        for profile, given in value.items():
            items = list(given) if isinstance(given, str) else given
            if not isinstance(items, list) or not items:
                raise ValueError(f'{profile}: give RACI letters, e.g. "R" or ["A", "I"]')
            for letter in items:
                if letter not in RACI_LETTERS:
                    raise ValueError(
                        f"{profile}: {letter!r} is not a RACI letter; use R (responsible), "
                        "A (accountable), C (consulted) or I (informed)"
                    )
            letters[profile] = tuple(dict.fromkeys(items))  # a letter said twice counts once
        return letters


class StepSettings(_Settings):
    process: UsmProcess
    #: Default: the process's name ("Recover").
    name: Title | None = None
    description: Body | None = None
    activities: dict[str, ActivitySettings] = Field(default_factory=dict)


class WorkflowSettings(_Settings):
    """How a unit runs one workflow pattern. Without steps it is exported as a template."""

    name: Title | None = None
    slug: Slug | None = None
    description: Body | None = None
    #: Default: dynamic for the patterns that part at a fork (see ``default_dynamicity``).
    dynamicity: Dynamicity | None = None
    created_at: AwareDatetime | None = None
    modified_at: AwareDatetime | None = None
    created_by: PersonSettings | None = None
    modified_by: PersonSettings | None = None
    steps: dict[str, StepSettings] = Field(default_factory=dict)


class UnitWorkflows(BaseModel):
    """``[workflows.UNIT]``: the patterns a unit runs, its profiles, and each pattern's
    workflow under its id (``[workflows.UNIT.W3]``)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    # Every other key is a pattern id; an unknown one is reported by workflow_problems with
    # its own line, which a key refused here could not be.
    __pydantic_extra__: dict[str, WorkflowSettings] = Field(init=False)

    patterns: tuple[str, ...] = PATTERN_IDS
    #: Profile (role or position) id -> its name.
    profiles: dict[str, Title] = Field(default_factory=dict)

    @property
    def workflows(self) -> dict[str, WorkflowSettings]:
        """The configured workflows by pattern id, in the order written."""
        return dict(self.__pydantic_extra__ or {})


class WorkflowsConfig(BaseModel):
    """``[workflows]``: the source-system instance, and each unit's workflows by unit name."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, UnitWorkflows] = Field(init=False)

    #: The draft's source-system-instance; by default one derived from the config file's path.
    source_system_instance: Annotated[str, Field(min_length=1, max_length=300)] | None = None

    @property
    def units(self) -> dict[str, UnitWorkflows]:
        return dict(self.__pydantic_extra__ or {})

    def of(self, unit: str) -> UnitWorkflows:
        """The unit's workflows; all eight patterns as templates when it configured none."""
        return self.units.get(unit) or UnitWorkflows()


def workflow_problems(workflows: WorkflowsConfig, units: set[str]) -> Iterator[tuple[Loc, str]]:
    """(key under ``workflows``, problem) for each reference that does not hold."""
    for unit, config in workflows.units.items():
        if unit not in units:
            message = f"[workflows.{unit}] names unit {unit!r}, which is not defined"
            yield (unit, *_first_key(config)), message
        for given in config.patterns:
            if given not in PATTERN_IDS:
                yield (unit, "patterns"), _not_a_pattern(given)
        yield from _workflow_problems(unit, config)
    yield from _profile_problems(workflows)


def _first_key(config: UnitWorkflows) -> tuple[str, ...]:
    """A key the unit's table spells out: the config names the line of a key, and a file may
    write ``[workflows.ops.W2]`` without ever writing ``[workflows.ops]``."""
    written = [
        *config.workflows,
        *(f for f in ("profiles", "patterns") if f in config.model_fields_set),
    ]
    return tuple(written[:1])


def _not_a_pattern(given: str) -> str:
    return f"{given!r} is not a workflow pattern; use {', '.join(PATTERN_IDS)}"


def _workflow_problems(unit: str, config: UnitWorkflows) -> Iterator[tuple[Loc, str]]:
    slugs: dict[str, str] = {}
    for pattern_id, workflow in config.workflows.items():
        if pattern_id not in PATTERN_IDS:
            yield (unit, pattern_id), _not_a_pattern(pattern_id)
            continue
        if pattern_id not in config.patterns:
            runs = list(config.patterns)
            yield (unit, pattern_id), f"unit {unit!r} does not run {pattern_id} (patterns = {runs})"
        slug = workflow.slug or default_slug(find_pattern(pattern_id))
        if slug in slugs:
            message = f"slug {slug!r} is {slugs[slug]}'s already; a slug is unique in its unit"
            yield (unit, pattern_id, "slug"), message
        slugs[slug] = pattern_id
        yield from _step_problems((unit, pattern_id), workflow, config.profiles)


def _profile_problems(workflows: WorkflowsConfig) -> Iterator[tuple[Loc, str]]:
    """A profile id stands for one role or position in the whole organisation (the draft)."""
    first: dict[str, tuple[str, str]] = {}  # profile id -> (unit, name)
    for unit, config in workflows.units.items():
        for profile, name in config.profiles.items():
            owner, named = first.setdefault(profile, (unit, name))
            if named != name:
                yield (
                    (unit, "profiles", profile),
                    (
                        f"profile {profile!r} is {named!r} in unit {owner!r}; a profile id names "
                        "one role or position in the whole organisation"
                    ),
                )


def _step_problems(
    loc: tuple[str, str], workflow: WorkflowSettings, profiles: Mapping[str, str]
) -> Iterator[tuple[Loc, str]]:
    pattern = find_pattern(loc[1])
    path = " -> ".join(process.value for process in pattern.processes)
    steps = list(workflow.steps.items())
    for step_id, step in steps:
        if step.process not in pattern.processes:
            yield (
                (*loc, "steps", step_id, "process"),
                (
                    f"{pattern.id} ({pattern.name}) does not pass through {step.process.value}: "
                    f"its path is {path}"
                ),
            )
            return
        for activity_id, activity in step.activities.items():
            for profile in activity.raci:
                if profile not in profiles:
                    known = ", ".join(profiles) or f"none yet: add [workflows.{loc[0]}.profiles]"
                    yield (
                        (*loc, "steps", step_id, "activities", activity_id, "raci", profile),
                        (f"profile {profile!r} is not defined (profiles: {known})"),
                    )
    wrong = first_out_of_order([step.process for _, step in steps], pattern.processes)
    if wrong is not None:
        step_id = steps[wrong][0]
        yield (
            (*loc, "steps", step_id, "process"),
            (
                f"step {step_id!r} ({steps[wrong][1].process.value}) is out of order: the steps "
                f"of {pattern.id} follow its path {path}"
            ),
        )
