"""A mapping file's ``classify`` rules: which call type a raw record is.

Inbound classifies every record with these rules, and the loader checks that what a file's
``classify.write`` writes for a type reads back as that type; both use :func:`apply_rules`.
Import :func:`classify_record` from :mod:`usm_bridge.mapping`, which re-exports it.
"""

from __future__ import annotations

import collections.abc as cabc
import re
from typing import Any

from ..connector import RawRecord
from ..model import CallType
from .paths import MISSING, get_path
from .spec import ClassifySection, raw_text
from .types import Mapping

__all__ = ["apply_rules", "classify_record"]


def _match(condition: Any, data: Any, empty: set[str]) -> bool:
    value = get_path(data, condition.path)
    present = not (
        value is MISSING
        or value is None
        or (isinstance(value, str | int | float | bool) and raw_text(value) in empty)
        or (isinstance(value, dict | list) and not value)
    )
    if condition.exists is not None:
        return present is condition.exists
    if not present:
        return False
    text = raw_text(value)
    if condition.equals is not None:
        return text == raw_text(condition.equals)
    if condition.in_ is not None:
        return text in {raw_text(option) for option in condition.in_}
    assert condition.matches is not None
    # Bound the text a file's pattern runs on: ticket content is untrusted.
    return re.search(condition.matches, text[:10_000]) is not None


def apply_rules(section: ClassifySection, data: Any, empty: cabc.Iterable[str]) -> CallType:
    """The type of the first rule whose conditions all hold on ``data``, else the default.

    :param empty: raw values (as :func:`~usm_bridge.mapping.spec.raw_text`) meaning no value.
    """
    empties = set(empty)
    for rule in section.rules:
        if all(_match(condition, data, empties) for condition in rule.when):
            return rule.type
    return section.default


def classify_record(mapping: Mapping, record: RawRecord) -> CallType:
    """The call type the file's rules give a raw record (``default`` when none matches)."""
    return apply_rules(
        mapping.spec.classify, record.data, (raw_text(v) for v in mapping.spec.empty_values)
    )
