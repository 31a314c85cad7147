"""A loaded mapping compiled once into plain callables, for both directions.

Interpreting a mapping file for every record (splitting each path, finding each transform by
name, walking the spec objects for their tables and conditions) cost more than the mapping
itself. :func:`compiled` does that work once per mapping and set of installed transforms:
every field becomes a :class:`~usm_bridge.mapping.field_readers.FieldReader` (inbound) and a
:class:`~usm_bridge.mapping.field_writers.FieldWriter` (outbound), the classification rules a
compiled test, the comments section a getter and readers. :mod:`usm_bridge.mapping.inbound` and
:mod:`usm_bridge.mapping.outbound` run these per record.

The compiled form is kept on the :class:`~usm_bridge.mapping.types.Mapping` (its spec is
frozen), keyed by the transforms it was compiled against: a context with other transforms (a
plugin registered since) gets its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..model import CallType
from .classify import Predicate, compile_classify, compile_rule
from .field_readers import FieldReader, PersonReader
from .field_writers import FieldWriter, StatusWriter
from .paths import Getter, path_getter
from .spec import CommentsSpec, ConfirmationRule, FieldSpec, ForkSpec, PersonSpec, raw_text
from .types import PERSON_PARTS, ROLES, SCALARS, Mapping, Transforms
from .values import Chain, compile_chain, empty_test

__all__ = ["CompiledComments", "CompiledMapping", "compiled"]

T = TypeVar("T")

#: Compiled forms kept per mapping (one per set of transforms seen; the oldest goes first).
_KEPT = 4


class CompiledComments:
    """The ``comments`` section: where the list is, and a reader per part of an item."""

    def __init__(self, section: CommentsSpec, form: CompiledMapping) -> None:
        self.path = section.path
        self.get: Getter = path_getter(section.path)
        self.id = form.field(section.id) if section.id is not None else None
        self.body = form.field(section.body)
        self.created = form.field(section.created)
        self.public = form.field(section.public) if section.public is not None else None
        self.author = form.person(section.author)


class CompiledMapping:
    """Everything applying one mapping needs, resolved (see the module docstring)."""

    def __init__(self, mapping: Mapping, transforms: Transforms) -> None:
        spec = mapping.spec
        self.mapping = mapping
        self.empty = frozenset(raw_text(v) for v in spec.empty_values)
        #: Whether a raw value means "no value" to this file.
        self.is_empty = empty_test(self.empty)
        self._options: dict[str, Any] = {
            "mapping": mapping.name,
            "empty": self.empty,
            "transforms": transforms,
        }
        # One reader per spec object: the confirmation section is handed its specs back.
        self._readers: dict[int, tuple[Any, FieldReader]] = {}
        self._people: dict[int, tuple[Any, PersonReader]] = {}
        self._rules: dict[int, tuple[Any, Predicate]] = {}
        self._chains: dict[int, tuple[Any, Chain]] = {}
        self._transforms = transforms
        fields = spec.fields
        self.title = self.field(fields.title)
        #: The scalars after the title, in the order applied, ``waiting_on`` left out (it is
        #: read only while the status says the call waits).
        self.scalars = [
            (name, self.field(item))
            for name in SCALARS[1:]
            if name != "waiting_on" and (item := getattr(fields, name)) is not None
        ]
        self.waiting_on = self.field(fields.waiting_on) if fields.waiting_on else None
        self.waiting_process = (
            self.field(fields.waiting_process) if fields.waiting_process else None
        )
        self.priority_mapped = fields.priority is not None
        self.people = [(role, self.person(getattr(spec.people, role))) for role in ROLES]
        self.classify: Callable[[Any], CallType] = compile_classify(spec.classify, self.empty)
        self.comments = CompiledComments(spec.comments, self) if spec.comments else None
        attributes = spec.attributes.fields if spec.attributes is not None else {}
        self.attributes = [(name, self.field(item)) for name, item in attributes.items()]
        # -- outbound --
        status = fields.status
        self.status_writer = (
            StatusWriter(status, transforms)
            if status is not None and not status.read_only
            else None
        )
        #: The writable scalars in order; the status's writer is ``None`` (``status_writer``).
        self.writers: list[tuple[str, FieldWriter | None]] = [
            (name, FieldWriter(item, transforms) if name != "status" else None)
            for name in SCALARS
            if (item := getattr(fields, name)) is not None and not item.read_only
        ]
        self.person_writers = [
            (role, part, FieldWriter(sub, transforms))
            for role in ROLES
            if (person := getattr(spec.people, role)) is not None
            for part in PERSON_PARTS
            if (sub := getattr(person, part)) is not None and not sub.read_only
        ]
        self.attribute_writers = [
            (name, FieldWriter(item, transforms))
            for name, item in attributes.items()
            if not item.read_only
        ]

    def field(self, item: FieldSpec[Any]) -> FieldReader:
        """The reader of a field spec of this mapping (one per spec object)."""
        return _once(self._readers, item, lambda: FieldReader(item, **self._options))

    def fork_transform(self, fork: ForkSpec, raw: Any, label: str) -> Any:
        """A fork's transform chain run on ``raw`` (the chain resolved once)."""
        chain = _once(self._chains, fork, lambda: compile_chain(fork.transform, self._transforms))
        return chain(raw, label)

    def holds(self, rule: ConfirmationRule, data: Any) -> bool:
        """Whether a confirmation rule's ``when`` conditions hold on ``data`` (compiled once)."""
        return _once(self._rules, rule, lambda: compile_rule(rule, self.empty))(data)

    def person(self, person: PersonSpec | None) -> PersonReader | None:
        """The reader of a person spec of this mapping (one per spec object), ``None`` for
        none."""
        if person is None:
            return None
        return _once(self._people, person, lambda: PersonReader(person, **self._options))


def _once(kept: dict[int, tuple[Any, T]], spec: Any, make: Callable[[], T]) -> T:
    """What ``make`` builds for ``spec``, built once: kept by the spec object's identity
    (with the object, so that an id reused by another object is never mistaken for it)."""
    found = kept.get(id(spec))
    if found is None or found[0] is not spec:
        found = kept[id(spec)] = (spec, make())
    return found[1]


def compiled(mapping: Mapping, transforms: Transforms) -> CompiledMapping:
    """The mapping compiled against ``transforms`` (compiled on first use, then kept)."""
    kept = mapping.compiled_forms
    for seen, form in kept:
        if seen == transforms and isinstance(form, CompiledMapping):
            return form
    form = CompiledMapping(mapping, transforms)
    # A copy: a transforms mapping changed in place afterwards is not the one compiled.
    kept.append((dict(transforms), form))
    del kept[:-_KEPT]
    return form
