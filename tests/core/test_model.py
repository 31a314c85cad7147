"""The canonical model refuses what USM or plain sense forbids, and keeps what it must."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from usm_bridge.model import (
    MAX_TITLE_CHARS,
    Call,
    CallType,
    Comment,
    Person,
    Status,
    UsmProcess,
    WaitingOn,
    new_call_id,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def make_call(**overrides: object) -> Call:
    fields: dict[str, object] = {"unit": "it", "title": "Laptop", "created": T0, "updated": T0}
    fields.update(overrides)
    return Call.model_validate(fields)


def test_each_call_type_belongs_to_its_usm_process() -> None:
    assert CallType.WISH.process is UsmProcess.AGREE
    assert CallType.RFC.process is UsmProcess.CHANGE
    assert CallType.SERVICE_REQUEST.process is UsmProcess.OPERATE
    assert CallType.INCIDENT.process is UsmProcess.RECOVER
    assert CallType.RISK.process is UsmProcess.IMPROVE
    assert CallType.UNCLASSIFIED.process is None
    assert {t for t in CallType if t.is_support_request} == {
        CallType.WISH,
        CallType.RFC,
        CallType.SERVICE_REQUEST,
        CallType.INCIDENT,
    }


def test_a_new_call_is_registered_and_unclassified_with_a_fresh_id() -> None:
    first, second = make_call(), make_call()
    assert first.status is Status.REGISTERED
    assert first.call_type is CallType.UNCLASSIFIED
    assert first.id.startswith("call_") and first.id != second.id


def test_waiting_requires_whom_it_waits_on() -> None:
    with pytest.raises(ValidationError, match="waiting_on"):
        make_call(call_type="incident", status="waiting")
    call = make_call(call_type="incident", status="waiting", waiting_on="supplier")
    assert call.waiting_on is WaitingOn.SUPPLIER


@pytest.mark.parametrize("status", ["in_progress", "waiting"])
def test_no_work_while_unclassified(status: str) -> None:
    waiting_on = "customer" if status == "waiting" else None
    with pytest.raises(ValidationError, match=f"unclassified call cannot be {status}: classify"):
        make_call(status=status, waiting_on=waiting_on)
    call = make_call(call_type="service_request", status=status, waiting_on=waiting_on)
    assert call.status is Status(status)


@pytest.mark.parametrize("status", ["registered", "classified", "fulfilled", "closed", "cancelled"])
def test_an_unclassified_call_may_be_registered_or_ended(status: str) -> None:
    # A tool may close or cancel mail nobody classified: the report counts it, the model keeps it.
    assert make_call(status=status).status is Status(status)


def test_classifying_first_then_working_is_allowed_by_assignment() -> None:
    call = make_call()
    with pytest.raises(ValidationError, match="classify it first"):
        call.status = Status.IN_PROGRESS
    call.call_type = CallType.INCIDENT
    call.status = Status.IN_PROGRESS
    assert (call.call_type, call.status) == (CallType.INCIDENT, Status.IN_PROGRESS)


def test_waiting_on_without_waiting_status_is_refused() -> None:
    with pytest.raises(ValidationError, match="not waiting"):
        make_call(status="in_progress", waiting_on="customer")


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        make_call(created=datetime(2026, 3, 1, 9, 0), updated=T0)


def test_updated_before_created_is_refused() -> None:
    with pytest.raises(ValidationError, match="earlier"):
        make_call(updated=T0 - timedelta(seconds=1))


def test_untrusted_text_is_size_limited() -> None:
    with pytest.raises(ValidationError, match="at most"):
        make_call(title="x" * (MAX_TITLE_CHARS + 1))


def test_unknown_fields_are_refused_so_typos_show() -> None:
    with pytest.raises(ValidationError, match="titel"):
        make_call(titel="typo")


def test_unit_names_are_safe_machine_names() -> None:
    with pytest.raises(ValidationError, match="lower-case"):
        make_call(unit="Human Resources")


def test_attributes_are_namespaced_and_keep_json() -> None:
    call = make_call(attributes={"jira": {"labels": ["a", "b"], "story_points": 3}})
    assert call.attributes["jira"]["labels"] == ["a", "b"]
    with pytest.raises(ValidationError, match="namespace"):
        make_call(attributes={"Not A Namespace": {}})


def test_person_needs_some_identity() -> None:
    with pytest.raises(ValidationError, match="at least"):
        Person()
    assert Person(email="a@example.com").email == "a@example.com"


def test_json_round_trip_keeps_everything() -> None:
    call = make_call(
        call_type="incident",
        status="waiting",
        waiting_on="secondary_process",
        impact="high",
        urgency="low",
        priority="moderate",
        requester={"name": "Ann", "email": "ann@example.com"},
        comments=[Comment(body="<b>hi</b> ünïcode", created=T0, public=False, origin="it-snow")],
        chain={"upstream": "call_1", "suppliers": ["call_2"]},
    )
    again = Call.model_validate_json(call.model_dump_json())
    assert again == call


def test_fingerprint_ignores_bookkeeping_but_not_content() -> None:
    call = make_call()
    later = call.model_copy(update={"updated": T0 + timedelta(hours=1)})
    assert call.content_fingerprint() == later.content_fingerprint()
    changed = call.model_copy(update={"title": "Laptop broken"})
    assert changed.content_fingerprint() != call.content_fingerprint()


def test_call_ids_are_random_uuid4_and_never_repeat() -> None:
    ids = [new_call_id() for _ in range(3_000)]  # several of the blocks read ahead
    assert len(set(ids)) == len(ids)
    for call_id in ids:
        assert call_id.startswith("call_")
        value = uuid.UUID(call_id.removeprefix("call_"))
        assert (value.version, value.variant, value.hex) == (4, uuid.RFC_4122, call_id[5:])


def test_a_forked_process_makes_other_call_ids_than_its_parent() -> None:
    new_call_id()  # ids made ahead in the parent
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe and exits
        os.close(read)
        os.write(write, " ".join(new_call_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        theirs = set(pipe.read().split())
    os.waitpid(child, 0)
    mine = {new_call_id() for _ in range(5)}
    assert len(theirs) == 5 and not theirs & mine
