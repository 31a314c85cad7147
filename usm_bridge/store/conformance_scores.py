"""Recorded conformance scores: what ``report conformance --record`` keeps for trends.

One recorded report is a set of :class:`RecordedScore` rows for one closed period and one
config digest: the enterprise (``unit`` ""), each unit, overall (``check_id`` "") and per
check. Recording the same period and config again replaces the earlier rows. These functions
work inside a unit of work (:class:`~usm_bridge.store.Transaction`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

import sqlalchemy as sa

from usm_bridge.store.schema import conformance_scores
from usm_bridge.store.store import Transaction

__all__ = ["RecordedScore", "list_recorded_scores", "replace_recorded_scores"]

_scores = conformance_scores
_DELETE_RECORDING = sa.delete(_scores).where(
    _scores.c.period_since == sa.bindparam("b_since"),
    _scores.c.period_until == sa.bindparam("b_until"),
    _scores.c.config_digest == sa.bindparam("b_config_digest"),
)
_INSERT_SCORE = sa.insert(_scores)
#: Every recorded score, oldest period first, the latest recording first within a period:
#: :func:`list_recorded_scores` adds its filter.
_LIST_SCORES = sa.select(_scores).order_by(
    _scores.c.period_until, _scores.c.period_since, _scores.c.recorded_at.desc(), _scores.c.id
)


@dataclass(frozen=True)
class RecordedScore:
    """One score of a recorded report; ``unit`` "" is the enterprise, ``check_id`` "" the
    overall score of the unit (or of the enterprise)."""

    period_since: datetime
    period_until: datetime
    period_label: str
    config_digest: str
    unit: str
    check_id: str
    score: float | None
    verdict: str
    exceptions: int
    recorded_at: datetime


def replace_recorded_scores(
    tx: Transaction,
    *,
    since: datetime,
    until: datetime,
    config_digest: str,
    scores: Iterable[RecordedScore],
) -> int:
    """Replace the rows of the period ``[since, until)`` and ``config_digest`` with ``scores``;
    how many rows were written."""
    tx.connection.execute(
        _DELETE_RECORDING, {"b_since": since, "b_until": until, "b_config_digest": config_digest}
    )
    # The period and config given win over what the rows say, so one call writes one period.
    key = {"period_since": since, "period_until": until, "config_digest": config_digest}
    rows = [{**asdict(row), **key} for row in scores]
    if rows:
        tx.connection.execute(_INSERT_SCORE, rows)
    return len(rows)


def list_recorded_scores(
    tx: Transaction, *, until_at_most: datetime | None = None
) -> list[RecordedScore]:
    """Every recorded score of periods ending at or before ``until_at_most`` (all when
    ``None``), oldest period first, and within a period the latest recording first."""
    query = _LIST_SCORES
    if until_at_most is not None:
        query = query.where(_scores.c.period_until <= until_at_most)
    return [
        RecordedScore(**{name: value for name, value in row.items() if name != "id"})
        for row in tx.connection.execute(query).mappings()
    ]
