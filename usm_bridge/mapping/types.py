"""What a loaded mapping is, the context it is applied in, and the walk over its field specs.

Loading (:mod:`usm_bridge.mapping`) and both directions of applying
(:mod:`usm_bridge.mapping.inbound`, :mod:`usm_bridge.mapping.outbound`) need these; they live
here, below all three, so that the appliers do not import the loader and the loader can import
the appliers. Import them from :mod:`usm_bridge.mapping`, which re-exports them.
"""

from __future__ import annotations

import collections.abc as cabc
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from ..connector import RawRecord
from ..lifecycle import PriorityMatrix
from ..model import Call, CallType
from .loader import Loc, LocatedData
from .spec import FieldSpec, MappingFile

__all__ = [
    "PERSON_PARTS",
    "ROLES",
    "SCALARS",
    "Classifier",
    "Mapping",
    "MappingContext",
    "Transforms",
    "field_specs",
]

Transforms: TypeAlias = cabc.Mapping[str, Callable[..., Any]]
Classifier: TypeAlias = Callable[[Call, RawRecord], CallType | None]

#: The canonical scalar fields a mapping's ``fields`` section may map, in the order applied.
SCALARS = (
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
#: The people of a call a mapping's ``people`` section may map.
ROLES = ("requester", "customer", "assignee")
#: What a person spec may map.
PERSON_PARTS = ("name", "email", "ref")


@dataclass(frozen=True, eq=False)
class Mapping:
    """A loaded, validated mapping file (what the mapping hooks receive)."""

    name: str
    tool: str
    path: Path | None
    spec: MappingFile
    located: LocatedData = field(repr=False)
    #: The mapping compiled for applying it, per set of transforms: kept by
    #: :func:`usm_bridge.mapping.compiled.compiled`, which alone reads and fills it.
    compiled_forms: list[tuple[Transforms, Any]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

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
        (``PluginHost.classify``); :mod:`usm_bridge.mapping.plugin` calls it.
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


def field_specs(spec: MappingFile) -> Iterator[tuple[Loc, str, FieldSpec[Any], bool]]:
    """Every field spec of a file with its location, label and whether outbound writes it.

    For tools that need to walk a mapping: conformance checks (which canonical fields are
    mapped), tests that generate records from a mapping's own tables.
    """
    for name in SCALARS:
        item = getattr(spec.fields, name)
        if item is not None:
            yield ("fields", name), name, item, not item.read_only
    for role in ROLES:
        person = getattr(spec.people, role)
        if person is not None:
            for part in PERSON_PARTS:
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
            for part in PERSON_PARTS:
                sub = getattr(c.author, part)
                if sub is not None:
                    yield ("comments", "author", part), f"comments.author.{part}", sub, False
    if spec.attributes is not None:
        for name, sub in spec.attributes.fields.items():
            yield ("attributes", "fields", name), f"attributes.{name}", sub, not sub.read_only
