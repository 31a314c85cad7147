"""The USM-WIF documents as models: Workflow (and Workflow template), Step, Activity, Person,
Profile, with the draft's member names (``format-version``, ``sort-index``...) as aliases.

Readers follow the draft's must-ignore policy: a member these models do not know is dropped,
never an error. Every member is optional here; what a workflow must hold is the JSON Schema's
job (``schema/usm-workflow.schema.json``), which a document passes before it becomes a model.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..model import UsmProcess
from .patterns import Dynamicity

__all__ = [
    "FORMAT_VERSION",
    "PATTERN_MEMBER",
    "Activity",
    "DocumentKind",
    "Person",
    "Profile",
    "Step",
    "WorkflowDocument",
    "document_json",
    "workflow_version",
]

FORMAT_VERSION = "1.0.0"
#: Our own member: the pattern id (W1..W8) a workflow describes, so that the bridge reads its
#: own documents back exactly. Other readers ignore it (must-ignore); documents without it
#: are matched to a pattern by their processes.
PATTERN_MEMBER = "x-usm-bridge-pattern"

DocumentKind = Literal["workflow", "workflow-template"]

#: Members that say where and when a document was made, not what the workflow is: left out of
#: its version, so that the same workflow has the same version whoever exports it.
_PROVENANCE = frozenset(
    {
        "source-system-type",
        "source-system-version",
        "source-system-instance",
        "workflow-version",
        "created-at",
        "created-by",
        "modified-at",
        "modified-by",
    }
)


class _Entity(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class Person(_Entity):
    id: str
    name: str | None = None
    email: str | None = None


class Profile(_Entity):
    id: str | None = None
    name: str | None = None


class Activity(_Entity):
    id: str | None = None
    sort_index: int | None = Field(default=None, alias="sort-index")
    description: str | None = None
    responsibilities: dict[str, tuple[Literal["R", "A", "C", "I"], ...]] = Field(
        default_factory=dict
    )


class Step(_Entity):
    id: str | None = None
    sort_index: int | None = Field(default=None, alias="sort-index")
    name: str | None = None
    description: str | None = None
    process: UsmProcess | None = None
    activities: tuple[Activity, ...] = ()


class WorkflowDocument(_Entity):
    """One ``.workflow.json`` or ``.workflow-template.json`` document. The fields are in the
    order of the draft's example, which is the order the writer emits (order has no meaning
    to a reader)."""

    format_version: str | None = Field(default=None, alias="format-version")
    source_system_type: str | None = Field(default=None, alias="source-system-type")
    source_system_version: str | None = Field(default=None, alias="source-system-version")
    source_system_instance: str | None = Field(default=None, alias="source-system-instance")
    workflow_version: str | None = Field(default=None, alias="workflow-version")
    #: ISO 8601 text as written (the reader has checked it parses).
    created_at: str | None = Field(default=None, alias="created-at")
    created_by: Person | None = Field(default=None, alias="created-by")
    modified_at: str | None = Field(default=None, alias="modified-at")
    modified_by: Person | None = Field(default=None, alias="modified-by")
    process: UsmProcess | None = None
    dynamicity: Dynamicity | None = None
    type: DocumentKind | None = None
    context: str | None = None
    slug: str | None = None
    name: str | None = None
    description: str | None = None
    steps: tuple[Step, ...] = ()
    profiles: tuple[Profile, ...] = ()
    pattern: str | None = Field(default=None, alias=PATTERN_MEMBER)

    def members(self) -> dict[str, Any]:
        """The document as JSON members, leaving out the ones it does not have."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def document_json(document: WorkflowDocument) -> str:
    """The document as the text of its file: indented, UTF-8 as is, one newline at the end."""
    return json.dumps(document.members(), indent=2, ensure_ascii=False) + "\n"


def workflow_version(document: WorkflowDocument) -> str:
    """The SHA-256 of what the workflow says (not who or what exported it, nor when): it
    changes exactly when the workflow does, whichever bridge or run exports it."""
    content = {k: v for k, v in document.members().items() if k not in _PROVENANCE}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
