"""A JQL subset for the simulator: enough to answer what a connector sends, as Jira would.

Supported: clauses joined with ``AND`` / ``OR`` / ``NOT`` and parentheses; operators ``=``,
``!=``, ``>``, ``>=``, ``<``, ``<=``, ``~``, ``IN``, ``NOT IN``, ``IS [NOT] EMPTY``; fields
``project``, ``key``/``issuekey``, ``id``, ``status``, ``issuetype``/``type``, ``priority``,
``resolution``, ``labels``, ``summary``/``text``, ``created``, ``updated``, ``resolved``,
``filter``, ``cf[NNNNN]`` and ``issue.property[key].path``; ``ORDER BY`` on the date fields,
``key``, ``id``, ``priority``, ``status``. Dates are read as Jira reads them: ``"yyyy/MM/dd
HH:mm"`` (or with dashes, or a day alone) **in the searching user's time zone**, an unquoted
number as epoch milliseconds (the same instant in every zone), ``-5m`` / ``-2h`` / ``-1d`` /
``-1w`` relative to now. A quoted bare number is refused: Jira does not read it as epoch
milliseconds, so a connector that quotes its epoch bound is caught here rather than on a site.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["JqlError", "Query", "Sort", "parse"]


class JqlError(ValueError):
    """A query Jira would refuse with 400 and ``Error in the JQL Query: ...``."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>!=|>=|<=|!~|[=<>~(),])
      | (?P<word>[A-Za-z0-9_.\-\[\]/:@*]+)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "is", "empty", "null", "order", "by", "asc", "desc"}


@dataclass(frozen=True)
class _Tok:
    kind: str  # string | op | word
    text: str

    def keyword(self, *words: str) -> bool:
        return self.kind == "word" and self.text.lower() in words


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise JqlError(f"The character '{text[pos]}' is a reserved JQL character.")
        pos = match.end()
        kind = match.lastgroup or "word"
        value = match.group(kind)
        if kind == "string":
            value = re.sub(
                r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), value[1:-1]
            )
        out.append(_Tok(kind, value))
    return out


@dataclass(frozen=True)
class Sort:
    """One ``ORDER BY`` term."""

    field: str
    descending: bool


#: What a clause evaluates on: an accessor object with the simulator's issue, see ``Query``.
Predicate = Callable[[Any], bool]


@dataclass(frozen=True)
class Query:
    """A parsed query: ``where`` is ``None`` for a query with no restriction (unbounded)."""

    where: Predicate | None
    order: tuple[Sort, ...]


class _Parser:
    def __init__(
        self,
        text: str,
        *,
        tz: ZoneInfo,
        now: datetime,
        resolve_filter: Callable[[str], Predicate | None],
        value_of: Callable[[Any, str], Any],
    ) -> None:
        self.toks = _tokens(text)
        self.pos = 0
        self.tz = tz
        self.now = now
        self.resolve_filter = resolve_filter
        self.value_of = value_of

    def peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise JqlError("Expecting more of the query, but the query ended.")
        self.pos += 1
        return tok

    def expect_op(self, op: str) -> None:
        tok = self.take()
        if tok.kind != "op" or tok.text != op:
            raise JqlError(f"Expecting '{op}' but got '{tok.text}'.")

    # -- grammar -------------------------------------------------------------------------------

    def query(self) -> Query:
        where: Predicate | None = None
        tok = self.peek()
        if tok is not None and not tok.keyword("order"):
            where = self.expr()
        order: list[Sort] = []
        tok = self.peek()
        if tok is not None and tok.keyword("order"):
            self.take()
            if not self.take().keyword("by"):
                raise JqlError("Expecting 'by' after 'order'.")
            while True:
                field = self.take()
                if field.kind == "op":
                    raise JqlError(f"Expecting a field name but got '{field.text}'.")
                descending = False
                nxt = self.peek()
                if nxt is not None and nxt.keyword("asc", "desc"):
                    descending = self.take().text.lower() == "desc"
                order.append(Sort(field.text.lower(), descending))
                nxt = self.peek()
                if nxt is not None and nxt.kind == "op" and nxt.text == ",":
                    self.take()
                    continue
                break
        if self.peek() is not None:
            raise JqlError(f"Expecting either 'OR' or 'AND' but got '{self.peek().text}'.")  # type: ignore[union-attr]
        return Query(where, tuple(order))

    def expr(self) -> Predicate:
        left = self.term()
        while (tok := self.peek()) is not None and tok.keyword("or"):
            self.take()
            right = self.term()
            left = (lambda a, b: lambda issue: a(issue) or b(issue))(left, right)
        return left

    def term(self) -> Predicate:
        left = self.factor()
        while (tok := self.peek()) is not None and tok.keyword("and"):
            self.take()
            right = self.factor()
            left = (lambda a, b: lambda issue: a(issue) and b(issue))(left, right)
        return left

    def factor(self) -> Predicate:
        tok = self.peek()
        if tok is not None and tok.keyword("not"):
            self.take()
            inner = self.factor()
            return lambda issue: not inner(issue)
        if tok is not None and tok.kind == "op" and tok.text == "(":
            self.take()
            inner = self.expr()
            self.expect_op(")")
            return inner
        return self.clause()

    def _values(self) -> list[str]:
        self.expect_op("(")
        values = [self._value()]
        while (tok := self.take()).kind == "op" and tok.text == ",":
            values.append(self._value())
        if tok.text != ")":
            raise JqlError(f"Expecting ')' but got '{tok.text}'.")
        return values

    def _value(self) -> str:
        tok = self.take()
        if tok.kind == "op":
            raise JqlError(f"Expecting a value but got '{tok.text}'.")
        return tok.text

    def clause(self) -> Predicate:
        field_tok = self.take()
        if field_tok.kind == "op" or field_tok.text.lower() in _KEYWORDS:
            raise JqlError(f"Expecting a field name but got '{field_tok.text}'.")
        field = field_tok.text if field_tok.kind == "string" else field_tok.text.lower()
        if field.startswith("issue.property["):
            field = field_tok.text  # property keys keep their case
        op_tok = self.take()
        if op_tok.keyword("is"):
            negate = False
            if (nxt := self.peek()) is not None and nxt.keyword("not"):
                self.take()
                negate = True
            if not self.take().keyword("empty", "null"):
                raise JqlError("Expecting 'EMPTY' after 'IS'.")
            return self._empty(field, negate)
        if op_tok.keyword("in"):
            return self._in(field, self._values(), negate=False)
        if op_tok.keyword("not"):
            if not self.take().keyword("in"):
                raise JqlError("Expecting 'IN' after 'NOT'.")
            return self._in(field, self._values(), negate=True)
        if op_tok.kind != "op" or op_tok.text in "(),":
            raise JqlError(f"Expecting an operator but got '{op_tok.text}'.")
        value = self.take()
        if value.kind == "op":
            raise JqlError(f"Expecting a value but got '{value.text}'.")
        return self._compare(field, op_tok.text, value.text, quoted=value.kind == "string")

    # -- clauses -------------------------------------------------------------------------------

    def _empty(self, field: str, negate: bool) -> Predicate:
        def test(issue: Any) -> bool:
            value = self.value_of(issue, field)
            empty = value is None or value == [] or value == ""
            return empty != negate

        return test

    def _in(self, field: str, values: Sequence[str], *, negate: bool) -> Predicate:
        tests = [self._compare(field, "=", value) for value in values]
        return lambda issue: any(test(issue) for test in tests) != negate

    def _compare(self, field: str, op: str, value: str, *, quoted: bool = True) -> Predicate:
        if field == "filter":
            found = self.resolve_filter(value)
            if found is None:
                raise JqlError(f"A value with ID '{value}' does not exist for the field 'filter'.")
            return found if op == "=" else (lambda issue: not found(issue))
        if field in ("created", "updated", "resolved", "createddate", "updateddate"):
            moment = self._date(value, quoted=quoted)
            return _ordered(lambda issue: self.value_of(issue, field), op, moment)
        if field == "id":
            try:
                number = int(value)
            except ValueError:
                raise JqlError(f"The value '{value}' is not valid for the field 'id'.") from None
            return _ordered(lambda issue: self.value_of(issue, "id"), op, number)
        if op == "~":
            needle = value.lower().strip("*")
            return lambda issue: needle in str(self.value_of(issue, field) or "").lower()
        if op not in ("=", "!="):
            raise JqlError(f"The operator '{op}' is not supported by the '{field}' field.")
        wanted = value.lower()

        def equal(issue: Any) -> bool:
            have = self.value_of(issue, field)
            values = have if isinstance(have, list) else [have]
            return any(str(item).lower() == wanted for item in values if item is not None)

        return equal if op == "=" else (lambda issue: not equal(issue))

    def _date(self, value: str, *, quoted: bool) -> datetime:
        if re.fullmatch(r"[0-9]+", value):
            if quoted:
                raise JqlError(
                    f"Date value '{value}' for field 'updated' is invalid: epoch milliseconds "
                    "are written without quote-marks."
                )
            return datetime.fromtimestamp(int(value) / 1000, self.tz)
        relative = re.fullmatch(r"([-+]?)(\d+)([mhdw])", value)
        if relative:
            unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[relative[3]]
            delta = timedelta(**{unit: int(relative[2])})
            return self.now - delta if relative[1] == "-" else self.now + delta
        for pattern in ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d"):
            try:
                naive = datetime.strptime(value, pattern)
            except ValueError:
                continue
            # The searching user's zone; an ambiguous wall time is its first occurrence.
            return naive.replace(tzinfo=self.tz, fold=0)
        raise JqlError(
            f"Date value '{value}' for field 'updated' is invalid. Valid formats include: "
            "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period "
            "format e.g. '-5d', '4w 2d'."
        )


def _ordered(get: Callable[[Any], Any], op: str, bound: Any) -> Predicate:
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: bool(a == b),
        "!=": lambda a, b: bool(a != b),
        ">": lambda a, b: bool(a > b),
        ">=": lambda a, b: bool(a >= b),
        "<": lambda a, b: bool(a < b),
        "<=": lambda a, b: bool(a <= b),
    }
    if op not in compare:
        raise JqlError(f"The operator '{op}' is not supported here.")
    test = compare[op]

    def check(issue: Any) -> bool:
        value = get(issue)
        return value is not None and test(value, bound)

    return check


def parse(
    text: str,
    *,
    tz: ZoneInfo,
    now: datetime,
    resolve_filter: Callable[[str], Predicate | None],
    value_of: Callable[[Any, str], Any],
) -> Query:
    """Parse ``text``; ``value_of(issue, field)`` reads a field of the simulator's issue."""
    return _Parser(text, tz=tz, now=now, resolve_filter=resolve_filter, value_of=value_of).query()
