"""Placing a USM-WIF document: the unit it configures and the workflow pattern it describes.

The unit is the document's ``context`` unless the adopter names one. The pattern is our own
member ``x-usm-bridge-pattern`` when present (it must fit the document), else the one pattern
that starts in the document's ``process`` and whose path its steps follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic import TypeAdapter, ValidationError

from ..lifecycle import WorkflowPattern
from ..lifecycle import pattern as find_pattern
from ..model import Name
from .documents import PATTERN_MEMBER, Activity, Step, WorkflowDocument
from .patterns import PATTERN_IDS, patterns_fitting
from .reader import WifDocumentError

__all__ = ["Adopted", "adopt", "ordered"]

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
    for index, step in enumerate(document.steps):
        if step.process is None:
            raise WifDocumentError(
                f"at $.steps[{index}]: no process; each step the bridge configures is one "
                "process's",
                where=source,
            )
    processes = [step.process for step in ordered(document.steps) if step.process is not None]
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


def ordered(items: Sequence[_Item]) -> list[_Item]:
    """The steps or activities in the order their sort-index suggests, where every one has
    one (the draft: it only suggests an order); else in the order written."""
    if all(item.sort_index is not None for item in items):
        return sorted(items, key=lambda item: item.sort_index or 0)
    return list(items)
