"""What ``usm-bridge export wif`` writes: one document per workflow pattern a unit runs.

A pattern the unit configured with steps is a ``workflow``; any other is a
``workflow-template`` whose steps are the pattern's processes in order. Nothing in a document
comes from the clock or the machine, so an unchanged config exports byte for byte the same
documents, and a diff of two exports shows what changed:

- ``workflow-version`` is a hash of the workflow's content (:func:`workflow_version`);
- ``created-at`` / ``modified-at`` (and ``-by``) are written only where the config gives them:
  the bridge cannot know when an organisation made a workflow, and a date it invented (the
  clock, the config file's time) would change on every run or checkout;
- ``source-system-instance`` is ``[workflows] source_system_instance``, else a UUID derived
  from the config file's absolute path (stable where the file stays).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from .. import __version__
from ..config import BridgeConfig
from ..errors import ConfigurationError
from ..lifecycle import WorkflowPattern
from ..lifecycle import pattern as find_pattern
from .documents import (
    FORMAT_VERSION,
    Activity,
    Person,
    Profile,
    Step,
    WorkflowDocument,
    workflow_version,
)
from .patterns import (
    PROCESS_PURPOSE,
    default_description,
    default_dynamicity,
    default_name,
    default_slug,
    default_step_name,
)
from .settings import PersonSettings, UnitWorkflows, WorkflowSettings

__all__ = [
    "SOURCE_SYSTEM_TYPE",
    "ExportedDocument",
    "source_system_instance",
    "template_steps",
    "unit_documents",
]

#: The draft's "vendor-domain:system". The project has no domain of its own, so the first
#: part is its name (a valid domain label), the second the system.
SOURCE_SYSTEM_TYPE = "usm-bridge:bridge"

_T = TypeVar("_T")


@dataclass(frozen=True)
class ExportedDocument:
    unit: str
    pattern: WorkflowPattern
    document: WorkflowDocument

    @property
    def file_name(self) -> str:
        """``it-w3-incident-with-change.workflow.json``: unit, pattern, slug, the draft's
        extension for the kind (unit names and slugs are safe in file names)."""
        pattern = self.pattern.id.lower()
        return f"{self.unit}-{pattern}-{self.document.slug}.{self.document.type}.json"


def source_system_instance(config: BridgeConfig) -> str:
    """The configured instance, else a UUID (version 5) of the config file's absolute path.

    :raises ConfigurationError: for a config built in code, with no file and no setting.
    """
    if config.workflows.source_system_instance is not None:
        return config.workflows.source_system_instance
    if config.path is None:
        raise ConfigurationError(
            "no config file to derive the source-system-instance from",
            expected="[workflows] source_system_instance = NAME",
        )
    absolute = os.path.normpath(config.path.absolute())
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"usm-bridge:{absolute}"))


def unit_documents(config: BridgeConfig, unit: str) -> list[ExportedDocument]:
    """One document per pattern ``unit`` runs, in pattern order."""
    workflows = config.workflows.of(unit)
    instance = source_system_instance(config)
    return [
        ExportedDocument(unit, found, _document(unit, found, workflows, instance))
        for found in map(find_pattern, dict.fromkeys(workflows.patterns))
    ]


def template_steps(pattern: WorkflowPattern) -> tuple[Step, ...]:
    """The steps of a pattern's template: one per process on its path, in order."""
    return tuple(
        Step(
            id=str(number),
            sort_index=number,
            name=default_step_name(process),
            description=PROCESS_PURPOSE[process],
            process=process,
        )
        for number, process in enumerate(pattern.processes, start=1)
    )


def _document(
    unit: str, pattern: WorkflowPattern, workflows: UnitWorkflows, instance: str
) -> WorkflowDocument:
    settings = workflows.workflows.get(pattern.id) or WorkflowSettings()
    steps = _steps(settings) or template_steps(pattern)
    document = WorkflowDocument(
        format_version=FORMAT_VERSION,
        source_system_type=SOURCE_SYSTEM_TYPE,
        source_system_version=__version__,
        source_system_instance=instance,
        created_at=_timestamp(settings.created_at),
        created_by=_person(settings.created_by),
        modified_at=_timestamp(settings.modified_at),
        modified_by=_person(settings.modified_by),
        process=pattern.processes[0],
        dynamicity=_given(settings.dynamicity, default_dynamicity(pattern)),
        type="workflow" if settings.steps else "workflow-template",
        context=unit,
        slug=_given(settings.slug, default_slug(pattern)),
        name=_given(settings.name, default_name(pattern)),
        description=_given(settings.description, default_description(pattern)),
        steps=steps,
        profiles=tuple(Profile(id=key, name=name) for key, name in workflows.profiles.items()),
        pattern=pattern.id,
    )
    return document.model_copy(update={"workflow_version": workflow_version(document)})


def _steps(settings: WorkflowSettings) -> tuple[Step, ...]:
    return tuple(
        Step(
            id=step_id,
            sort_index=number,
            name=_given(step.name, default_step_name(step.process)),
            description=step.description,
            process=step.process,
            activities=tuple(
                Activity(
                    id=activity_id,
                    sort_index=index,
                    description=activity.description,
                    responsibilities=activity.raci,
                )
                for index, (activity_id, activity) in enumerate(step.activities.items(), 1)
            ),
        )
        for number, (step_id, step) in enumerate(settings.steps.items(), start=1)
    )


def _given(value: _T | None, default: _T) -> _T:
    """The configured value, even an empty one; the default only where none is given."""
    return default if value is None else value


def _timestamp(value: datetime | None) -> str | None:
    # The draft asks for milliseconds.
    return None if value is None else value.isoformat(timespec="milliseconds")


def _person(value: PersonSettings | None) -> Person | None:
    return None if value is None else Person(id=value.id, name=value.name, email=value.email)
