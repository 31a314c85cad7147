"""Reading a customer's confirmation from a tool: a mapping file's ``confirmation`` section.

USM closes an incident only once its customer confirmed the service is resumed. Tools show that
in their own ways: ServiceNow's caller closes a resolved incident (``closed_by`` is the caller),
or the instance's auto-close job closes it after N days (the update is the ``system`` user's);
in Jira Service Management the customer's own transition closes the request, or an automation
rule does (the changelog's author is the automation app user). The section says which is which::

    confirmation:
      statuses: [closed]                 # read only on calls in these statuses
      by: {ref: {path: closed_by, transform: servicenow_value}}   # who closed, a person spec
      at: {path: closed_at, transform: servicenow_datetime}       # default: closed, else updated
      rules:                             # the first that holds decides; none: no confirmation
        - kind: implicit
          when: {path: sys_updated_by, equals: system}
          how: ServiceNow's auto-close job closed the resolved incident
        - kind: explicit
          by_requester: true
          how: the caller closed the resolved incident

A rule's ``when`` conditions are matched like ``classify`` rules; ``by_requester`` compares the
closer with the call's requester, ``by_matches`` tests the closer's ref, e-mail or name against
a pattern. An implicit confirmation names nobody (:class:`~usm_bridge.model.Confirmation`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from ..model import ConfirmationKind
from .loader import Loc
from .spec import ConfirmationRule, ConfirmationSpec, FieldSpec, MappingFile, PersonSpec
from .types import PERSON_PARTS

__all__ = ["confirmation_field_specs", "read_confirmation"]

#: Reads one field spec on the record: ``(spec, data, label) -> value``.
FieldReader = Callable[[FieldSpec[Any], Any, str], Any]
#: Reads one person spec on the record: ``(spec, data, label) -> {name, email, ref} | None``.
PersonReader = Callable[[PersonSpec | None, Any, str], dict[str, Any] | None]

_LABEL = "confirmation"


def confirmation_field_specs(spec: MappingFile) -> Iterator[tuple[Loc, FieldSpec[Any]]]:
    """The section's field specs with their locations (so the loader checks their transforms)."""
    section = spec.confirmation
    if section is None:
        return
    if section.by is not None:
        for part in PERSON_PARTS:
            sub = getattr(section.by, part)
            if sub is not None:
                yield (_LABEL, "by", part), sub
    if section.at is not None:
        yield (_LABEL, "at"), section.at


def read_confirmation(
    section: ConfirmationSpec,
    data: Any,
    values: dict[str, Any],
    *,
    holds: Callable[[ConfirmationRule, Any], bool],
    read_field: FieldReader,
    read_person: PersonReader,
) -> dict[str, Any] | None:
    """The confirmation a record shows, as the call's ``confirmation`` value, or ``None``.

    :param values: the call's other values as mapped so far (status, requester, closed, ...).
    :param holds: whether a rule's ``when`` conditions hold on the record (compiled once:
        :func:`~usm_bridge.mapping.classify.compile_rule`).
    :raises MappingError: a ``by`` or ``at`` value the section's specs cannot read.
    """
    status = values.get("status")
    if status not in {s.value for s in section.statuses}:
        return None
    closer = read_person(section.by, data, f"{_LABEL}.by")
    requester = values.get("requester")
    candidates = [r for r in section.rules if _closer_passes(r, closer, requester)]
    rule = next((r for r in candidates if holds(r, data)), None)
    if rule is None:
        return None
    at = read_field(section.at, data, f"{_LABEL}.at") if section.at is not None else None
    found: dict[str, Any] = {
        "kind": rule.kind.value,
        "how": rule.how,
        "at": at if at is not None else values.get("closed") or values.get("updated"),
    }
    # Nobody confirms by silence or by a tool's job: the model names no one for implicit.
    if rule.kind is ConfirmationKind.EXPLICIT and closer:
        found["by"] = closer
    return found


def _closer_passes(
    rule: ConfirmationRule, closer: dict[str, Any] | None, requester: dict[str, Any] | None
) -> bool:
    if rule.by_matches is not None:
        texts = [str(closer[p]) for p in PERSON_PARTS if closer and closer.get(p)]
        # Bound the text a file's pattern runs on: a tool's user names are untrusted.
        if not any(re.search(rule.by_matches, text[:1_000]) for text in texts):
            return False
    if rule.by_requester is not None:
        if not closer:
            return False
        return same_person(closer, requester) is rule.by_requester
    return True


def same_person(one: dict[str, Any], other: dict[str, Any] | None) -> bool:
    """Whether two mapped people are the same: by ref when both have one, else by e-mail
    (case-insensitive), else by name; ``False`` when they share no part to compare."""
    if not other:
        return False
    for part in ("ref", "email", "name"):
        mine, theirs = one.get(part), other.get(part)
        if mine and theirs:
            if part == "email":
                return str(mine).lower() == str(theirs).lower()
            return str(mine) == str(theirs)
    return False
