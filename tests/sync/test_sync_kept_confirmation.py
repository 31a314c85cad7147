"""A stored confirmation is history: a later read that no longer shows it keeps it, until the
call is reopened (the event log's note after the close, a tool that reads no confirmation)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from usm_bridge.model import Call, CallType, Confirmation, ConfirmationKind, Status
from usm_bridge.sync.kept_confirmation import keep_confirmation

WHEN = datetime(2016, 3, 5, 12, tzinfo=UTC)
JOB = Confirmation(kind=ConfirmationKind.IMPLICIT, at=WHEN, how="auto-close job")
CALLER = Confirmation(kind=ConfirmationKind.EXPLICIT, at=WHEN, how="the caller closed it")


def _call(status: Status, confirmation: Confirmation | None) -> Call:
    return Call(
        unit="it",
        title="VPN drops",
        call_type=CallType.INCIDENT,  # classified: only then may it be worked on again
        status=status,
        created=WHEN,
        updated=WHEN,
        confirmation=confirmation,
    )


@pytest.mark.parametrize("status", [Status.CLOSED, Status.CONFIRMED, Status.FULFILLED])
def test_a_read_without_a_confirmation_keeps_the_stored_one(status: Status) -> None:
    kept = keep_confirmation(_call(status, None), _call(Status.CLOSED, JOB))
    assert kept.confirmation == JOB
    assert kept.status is status


def test_a_read_that_shows_one_wins() -> None:
    kept = keep_confirmation(_call(Status.CLOSED, CALLER), _call(Status.CLOSED, JOB))
    assert kept.confirmation == CALLER


@pytest.mark.parametrize("status", [Status.IN_PROGRESS, Status.REGISTERED, Status.CANCELLED])
def test_a_reopen_ends_it(status: Status) -> None:
    assert keep_confirmation(_call(status, None), _call(Status.CLOSED, JOB)).confirmation is None


def test_nothing_stored_nothing_kept() -> None:
    read = _call(Status.CLOSED, None)
    assert keep_confirmation(read, _call(Status.CLOSED, None)) is read
