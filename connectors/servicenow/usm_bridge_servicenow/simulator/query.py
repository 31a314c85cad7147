"""Encoded queries as the simulated instance reads them.

Terms are split on ``^`` and nothing else (there is no escape); ``^OR`` joins a term to the one
before, ``^NQ`` starts a new alternative query, ``ORDERBY`` / ``ORDERBYDESC`` sort. A condition
is ``<field><operator><value>`` with the value running to the next ``^``. Like the real
instance, a term it does not understand (an unknown field, an unknown operator) is **silently
ignored**, which widens the result instead of failing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

__all__ = ["Cond", "Query", "parse_query"]

_TERM: Final = re.compile(
    r"(?P<field>[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)"
    r"(?P<op>NOT IN|NOTLIKE|STARTSWITH|ENDSWITH|ISNOTEMPTY|ISEMPTY|LIKE|IN|!=|>=|<=|=|>|<)"
    r"(?P<value>.*)",
    re.DOTALL,
)


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class Cond:
    """One condition."""

    field: str
    op: str
    value: str

    def matches(self, record: dict[str, str]) -> bool:
        """Whether ``record`` satisfies the condition."""
        actual = record.get(self.field, "")
        op, value = self.op, self.value
        if op == "=":
            return actual == value
        if op == "!=":
            return actual != value
        if op in {">", ">=", "<", "<="}:
            a, b = _number(actual), _number(value)
            left: float | str = a if a is not None and b is not None else actual
            right: float | str = b if a is not None and b is not None else value
            if op == ">":
                return left > right  # type: ignore[operator]
            if op == ">=":
                return left >= right  # type: ignore[operator]
            if op == "<":
                return left < right  # type: ignore[operator]
            return left <= right  # type: ignore[operator]
        low, needle = actual.lower(), value.lower()
        if op == "LIKE":
            return needle in low
        if op == "NOTLIKE":
            return needle not in low
        if op == "STARTSWITH":
            return low.startswith(needle)
        if op == "ENDSWITH":
            return low.endswith(needle)
        if op == "IN":
            return actual in value.split(",")
        if op == "NOT IN":
            return actual not in value.split(",")
        if op == "ISEMPTY":
            return actual == ""
        if op == "ISNOTEMPTY":
            return actual != ""
        return True


@dataclass
class Query:
    """Alternatives (``^NQ``) of AND-ed clauses, each clause OR-ed conditions; and the sort."""

    groups: list[list[list[Cond]]] = field(default_factory=lambda: [[]])
    order: list[tuple[str, bool]] = field(default_factory=list)

    def matches(self, record: dict[str, str]) -> bool:
        """Whether ``record`` is in the result."""
        return any(
            all(any(cond.matches(record) for cond in clause) for clause in group)
            for group in self.groups
        )

    def updated_lower_bound(self) -> tuple[str, bool] | None:
        """``(value, inclusive)`` when every match has ``sys_updated_on`` at least ``value``."""
        if len(self.groups) != 1:
            return None
        for clause in self.groups[0]:
            if len(clause) == 1 and clause[0].field == "sys_updated_on":
                cond = clause[0]
                if cond.op in {">=", "="}:
                    return cond.value, True
                if cond.op == ">":
                    return cond.value, False
        return None


def parse_query(text: str, known_fields: set[str]) -> Query:
    """Read an encoded query; parts about unknown fields or in an unknown form are dropped."""
    query = Query()
    group = query.groups[0]
    for term in text.split("^"):
        if not term or term == "EQ":
            continue
        if term.startswith("ORDERBYDESC"):
            name = term[len("ORDERBYDESC") :]
            if name in known_fields:
                query.order.append((name, True))
            continue
        if term.startswith("ORDERBY"):
            name = term[len("ORDERBY") :]
            if name in known_fields:
                query.order.append((name, False))
            continue
        joins_previous = False
        if term.startswith("NQ"):
            group = []
            query.groups.append(group)
            term = term[2:]
        elif term.startswith("OR"):
            joins_previous = True
            term = term[2:]
        match = _TERM.fullmatch(term)
        if match is None or match["field"] not in known_fields:
            continue  # silently ignored, as the real instance does
        cond = Cond(match["field"], match["op"], match["value"])
        if joins_previous and group:
            group[-1].append(cond)
        else:
            group.append([cond])
    return query
