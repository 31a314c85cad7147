"""A comment is the bridge's copy only by proof (the tool's id of what it wrote, or the marker
it stored with it), never by its words.

A person may write the same words twice, or the same words as a copy: each is a new comment
and travels. A copy whose answer was lost is found by its marker, never posted twice, and never
read back as a person's comment.
"""

from __future__ import annotations

import pytest

from sync.memory_tool import Bridge, Crash, MemoryConnector, MemoryTool
from usm_bridge.connector import CommentDraft
from usm_bridge.errors import RetriableRemoteError
from usm_bridge.store import OutboxOperation, OutboxStatus


def _desk_request(bridge: Bridge) -> tuple[str, str]:
    """A chair request in hr-tool and the copy the settled bridge made of it in fac-tool."""
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket = hr.add(title="Chair for Ann", service="chair")
    bridge.settle()
    return ticket, fac.only()["id"]


def _saying(tool: MemoryTool, ticket: str, words: str) -> list[dict[str, object]]:
    """The comments of ``ticket`` whose body ends with ``words`` (a copy names its author)."""
    return [c for c in tool.tickets[ticket]["comments"] if str(c["body"]).rstrip().endswith(words)]


def _comment_writes(tool: MemoryTool) -> int:
    return sum(1 for operation, _ in tool.writes if operation == "comment")


def test_a_persons_comment_with_the_same_words_as_an_earlier_one_travels_again(
    bridge: Bridge,
) -> None:
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket, copy = _desk_request(bridge)
    hr.comment(ticket, "Thanks!")
    bridge.settle()
    hr.comment(ticket, "Thanks!")
    bridge.settle()
    assert len(_saying(fac, copy, "Thanks!")) == 2
    assert len(_saying(hr, ticket, "Thanks!")) == 2  # neither copy came back as a third
    before = bridge.writes()
    bridge.settle()
    assert bridge.writes() == before


def test_the_same_words_twice_from_the_other_side_are_two_comments_and_the_cycle_is_ok(
    bridge: Bridge,
) -> None:
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket, copy = _desk_request(bridge)
    fac.comment(copy, "Delivered on Monday")
    fac.comment(copy, "Delivered on Monday")
    summary = bridge.engine.run_cycle("fac-tool")
    assert summary.ok, summary.error
    bridge.settle()
    assert len(_saying(hr, ticket, "Delivered on Monday")) == 2
    assert len(_saying(fac, copy, "Delivered on Monday")) == 2
    with bridge.store.begin(readonly=True) as tx:
        assert tx.list_dead_letters() == []


def test_a_copy_equal_in_words_to_a_persons_comment_is_no_reason_to_drop_the_persons(
    bridge: Bridge,
) -> None:
    # The copy of HR's comment reaches Facilities; an agent there then writes the same words
    # as a comment of their own: it is theirs, and goes back to HR.
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket, copy = _desk_request(bridge)
    hr.comment(ticket, "Near the window")
    bridge.settle()
    (copied,) = _saying(fac, copy, "Near the window")
    fac.comment(copy, str(copied["body"]))
    bridge.settle()
    assert len(_saying(hr, ticket, "Near the window")) == 2
    assert len(_saying(fac, copy, "Near the window")) == 2


@pytest.mark.parametrize(
    "lost",
    [RetriableRemoteError("read timed out"), Crash("killed after the write")],
    ids=["timeout", "kill"],
)
def test_a_copy_whose_answer_was_lost_is_found_by_its_marker_and_never_posted_twice(
    bridge: Bridge, lost: BaseException
) -> None:
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket, copy = _desk_request(bridge)
    bridge.connectors["fac-tool"].crash_after_comment = lost
    hr.comment(ticket, "Near the window")
    if isinstance(lost, Crash):
        with pytest.raises(Crash):
            bridge.engine.run_cycle("hr-tool")
        bridge.restart()
    else:
        assert bridge.engine.run_cycle("hr-tool").ok
    assert _comment_writes(fac) == 1
    # Facilities is read before the item is tried again: its copy is not a person's comment.
    summary = bridge.engine.run_cycle("fac-tool")
    assert summary.ok, summary.error
    bridge.clock.advance(minutes=30)  # past any backoff and lease
    bridge.settle()
    assert _comment_writes(fac) == 1
    assert len(_saying(fac, copy, "Near the window")) == 1
    assert len(_saying(hr, ticket, "Near the window")) == 1  # no echo
    with bridge.store.begin(readonly=True) as tx:
        assert tx.list_outbox(status=OutboxStatus.PENDING) == []
        (link,) = tx.comment_links_of(_fac_call_id(bridge), "fac-tool")
        assert link.remote_comment_id == _saying(fac, copy, "Near the window")[0]["id"]


def _fac_call_id(bridge: Bridge) -> str:
    with bridge.store.begin(readonly=True) as tx:
        (stored,) = tx.list_calls(unit="fac")
    return stored.call.id


def test_a_lost_copy_whose_look_up_fails_makes_the_read_wait_then_goes_on(
    bridge: Bridge,
) -> None:
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket, _ = _desk_request(bridge)
    connector = bridge.connectors["fac-tool"]
    connector.crash_after_comment = RetriableRemoteError("read timed out")
    hr.comment(ticket, "Near the window")
    assert bridge.engine.run_cycle("hr-tool").ok
    connector.faults["find_comment"] = [RetriableRemoteError("instance unavailable")]
    waited = bridge.engine.run_cycle("fac-tool")
    assert not waited.ok
    assert waited.error is not None and "could not be checked" in waited.error
    assert waited.error is not None and "instance unavailable" in waited.error
    bridge.clock.advance(minutes=30)
    bridge.settle()
    assert _comment_writes(fac) == 1
    assert len(_saying(hr, ticket, "Near the window")) == 1


def test_a_connector_that_answers_another_copys_id_fails_that_item_not_the_cycle(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A connector recognising copies by their words (as ServiceNow's once did) answers the
    # first copy's id for the second: the store would refuse it (one remote comment is one
    # copy). The item is dead-lettered with the reason; the cycle goes on, every cycle.
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ticket, copy = _desk_request(bridge)
    hr.comment(ticket, "Thanks!")
    bridge.settle()
    (first,) = _saying(fac, copy, "Thanks!")
    connector: MemoryConnector = bridge.connectors["fac-tool"]

    def by_words(remote_id: str, comment: CommentDraft) -> str:
        return str(first["id"])

    monkeypatch.setattr(connector, "add_comment", by_words)
    bridge.engine.pusher.max_attempts = 1
    hr.comment(ticket, "Thanks!")
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok, summary.error
    with bridge.store.begin(readonly=True) as tx:
        (letter,) = tx.list_dead_letters(stage="push")
        assert "already the copy" in letter.reason
        assert isinstance(letter.payload, dict)
        assert letter.payload["operation"] == OutboxOperation.COMMENT.value
    again = bridge.engine.run_cycle("hr-tool")
    assert again.ok, again.error
