"""Rule matching: the one place a mapping file's ``when`` conditions are tested on a record.

A file has two kinds of rules, both lists of conditions on raw fields where the first rule
whose conditions all hold wins: ``classify.rules`` (which call type a record is) and
``fields.status.rules`` (which canonical status a tool status means, given other fields such
as Jira's resolution). Everything that asks "which rule matches" goes through
:func:`match_rule` / :func:`first_rule`: inbound classification and status reading, the
loader's read-back checks, the conformance report's verdicts and ``usm-bridge mapping apply``.
A second copy would drift (the report once judged types by its own reading of the rules).
Import these from :mod:`usm_bridge.mapping`, which re-exports them.
"""

from __future__ import annotations

import collections.abc as cabc
import re
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias, TypeVar

from ..connector import RawRecord
from ..model import CallType
from .paths import path_getter, set_path
from .spec import ClassifySection, Condition, Rule, raw_text
from .types import Mapping
from .values import empty_test

__all__ = [
    "Predicate",
    "apply_rules",
    "classify_record",
    "compile_classify",
    "compile_condition",
    "compile_rule",
    "first_rule",
    "match_condition",
    "match_rule",
    "matched_rule",
    "record_empties",
    "type_value_rule",
]


class _HasWhen(Protocol):
    @property
    def when(self) -> list[Condition]: ...


R = TypeVar("R", bound=_HasWhen)


def record_empties(mapping: Mapping) -> frozenset[str]:
    """The raw values (as :func:`~usm_bridge.mapping.spec.raw_text`) a file counts as empty."""
    return frozenset(raw_text(v) for v in mapping.spec.empty_values)


#: A test on a raw record, compiled from a file's condition or rule.
Predicate: TypeAlias = Callable[[Any], bool]


def compile_condition(condition: Condition, empty: cabc.Set[str]) -> Predicate:
    """One condition as a test on a raw record (see :func:`match_condition`)."""
    get = path_getter(condition.path)
    is_empty = empty_test(empty)
    if condition.exists is not None:
        wanted = condition.exists

        def exists(data: Any) -> bool:
            return (not is_empty(get(data))) is wanted

        return exists
    test: Callable[[str], bool]
    if condition.equals is not None:
        test = raw_text(condition.equals).__eq__
    elif condition.in_ is not None:
        test = frozenset(raw_text(option) for option in condition.in_).__contains__
    else:
        assert condition.matches is not None
        pattern = re.compile(condition.matches)

        def test(text: str) -> bool:
            # Bound the text a file's pattern runs on: ticket content is untrusted.
            return pattern.search(text[:10_000]) is not None

    def holds(data: Any) -> bool:
        value = get(data)
        return not is_empty(value) and test(raw_text(value))

    return holds


def compile_rule(rule: _HasWhen, empty: cabc.Set[str]) -> Predicate:
    """A rule's ``when`` as one test on a raw record: every condition holds."""
    conditions = [compile_condition(condition, empty) for condition in rule.when]
    if len(conditions) == 1:  # most rules: the condition's own test, without a loop over one
        return conditions[0]

    def holds(data: Any) -> bool:
        return all(condition(data) for condition in conditions)

    return holds


def compile_classify(section: ClassifySection, empty: cabc.Set[str]) -> Callable[[Any], CallType]:
    """:func:`apply_rules` with the rules compiled: the type of a raw record."""
    rules = [(compile_rule(rule, empty), rule.type) for rule in section.rules]
    default = section.default

    def classify(data: Any) -> CallType:
        for holds, call_type in rules:
            if holds(data):
                return call_type
        return default

    return classify


def match_condition(condition: Condition, data: Any, empty: cabc.Set[str]) -> bool:
    """Whether one condition holds on a raw record.

    A value is absent when the path is missing, null, one of ``empty``, or an empty list or
    object; only ``exists: false`` holds on an absent value.
    """
    return compile_condition(condition, empty)(data)


def match_rule(rule: _HasWhen, data: Any, empty: cabc.Set[str]) -> bool:
    """Whether every condition of a rule's ``when`` holds on a raw record."""
    return compile_rule(rule, empty)(data)


def first_rule(rules: cabc.Iterable[R], data: Any, empty: cabc.Set[str]) -> R | None:
    """The first rule whose conditions all hold on ``data``, or ``None``."""
    return next((rule for rule in rules if match_rule(rule, data, empty)), None)


def apply_rules(section: ClassifySection, data: Any, empty: cabc.Iterable[str]) -> CallType:
    """The type of the first classification rule that holds on ``data``, else the default.

    :param empty: raw values (as :func:`~usm_bridge.mapping.spec.raw_text`) meaning no value.
    """
    rule = first_rule(section.rules, data, frozenset(empty))
    return section.default if rule is None else rule.type


def matched_rule(mapping: Mapping, record: RawRecord) -> int | None:
    """The index of the file's classification rule a record matches (``None``: the default).

    What ``usm-bridge mapping apply`` shows, so that an admin sees why a record got its type.
    """
    empty = record_empties(mapping)
    for index, rule in enumerate(mapping.spec.classify.rules):
        if match_rule(rule, record.data, empty):
            return index
    return None


def classify_record(mapping: Mapping, record: RawRecord) -> CallType:
    """The call type the file's rules give a raw record (``default`` when none matches)."""
    return apply_rules(mapping.spec.classify, record.data, record_empties(mapping))


def type_value_rule(mapping: Mapping, candidates: cabc.Iterable[str | None]) -> Rule | None:
    """The classification rule a record matches whose type field holds one of ``candidates``
    (a tool's type as its vocabulary gives it: value, then label), or ``None``.

    A vocabulary names types, not the field they are in, so the record is built for each path
    a rule tests by value (``equals``, ``in``, ``matches``) and judged by :func:`first_rule`,
    as the sync judges a real record. ``exists`` tests presence, not a type, so its path is not
    tried (a type would otherwise match ``{path: cmdb_ci, exists: true}``); a rule that also
    needs another field does not classify the type on its own.
    """
    rules = mapping.spec.classify.rules
    empty = record_empties(mapping)
    paths = dict.fromkeys(
        c.path for rule in rules for c in rule.when if c.exists is None and c.path != "$"
    )
    for candidate in candidates:
        if candidate is None:
            continue
        for path in paths:
            record: dict[str, Any] = {}
            set_path(record, path, candidate)
            rule = first_rule(rules, record, empty)
            if rule is not None:
                return rule
    return None
