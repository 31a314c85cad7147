"""Push-time faults: one outbox item's fault never fails the drain of its target.

Each test puts a fault on one item of a drain that holds others too, and checks that the
others are written, what becomes of the faulty one (deferred or dead-lettered, with the
reason), and that once the cause is gone the write lands exactly once.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from sync.memory_tool import (
    Bridge,
    BuggyOutbound,
    Crash,
    MemoryConnector,
    MemoryTool,
    make_bridge,
    make_config,
)
from usm_bridge.connector import Connector, ConnectorSettings
from usm_bridge.dead_letters import retry_dead_letters
from usm_bridge.errors import RetriableRemoteError
from usm_bridge.hookspecs import hookimpl
from usm_bridge.model import Call
from usm_bridge.store import DeadLetter, OutboxItem, OutboxOperation, OutboxStatus, Store

# -- helpers ----------------------------------------------------------------------------------


def _request(bridge: Bridge, title: str) -> str:
    # A chair, not a desk: routed hr -> fac only (fac passes desks on to ext).
    return bridge.tools["hr-tool"].add(title=title, service="chair")


def _copy(tool: MemoryTool, title: str) -> str:
    (found,) = [t["id"] for t in tool.tickets.values() if t["title"] == title]
    return str(found)


def _copied_request(bridge: Bridge, title: str) -> tuple[str, str]:
    """A request made in hr-tool, and the copy the settled bridge made of it in fac-tool."""
    request = _request(bridge, title)
    bridge.settle()
    return request, _copy(bridge.tools["fac-tool"], title)


def _creates(tool: MemoryTool) -> list[str]:
    return [remote_id for operation, remote_id in tool.writes if operation == "create"]


def _pending(bridge: Bridge, operation: OutboxOperation) -> list[OutboxItem]:
    with bridge.store.begin(readonly=True) as tx:
        return [
            item
            for item in tx.list_outbox(status=OutboxStatus.PENDING, instance="fac-tool")
            if item.operation is operation
        ]


def _letters(bridge: Bridge) -> list[DeadLetter]:
    with bridge.store.begin(readonly=True) as tx:
        return tx.list_dead_letters(stage="push")


def _operation(letter: DeadLetter) -> object:
    assert isinstance(letter.payload, dict)  # a push letter holds the outbox request
    return letter.payload["operation"]


def _fac_calls(bridge: Bridge) -> list[Call]:
    with bridge.store.begin(readonly=True) as tx:
        return [stored.call for stored in tx.list_calls(unit="fac")]


def _retry_all(bridge: Bridge, letters: list[DeadLetter]) -> None:
    outcome = retry_dead_letters(bridge.engine)
    assert sorted(i for i, _ in outcome.resolved) == sorted(letter.id for letter in letters)
    assert not outcome.failed and not outcome.skipped


# -- 1. outbound mapping errors ---------------------------------------------------------------


def test_an_update_the_target_mapping_cannot_express_is_dead_lettered_and_retried_after_the_fix(
    store: Store, tmp_path: Path
) -> None:
    config = make_config(tmp_path)
    good = (tmp_path / "memory.yaml").read_text(encoding="utf-8")
    broken = good.replace("      cancelled: cancelled\n", "")
    assert broken != good
    fac_mapping = tmp_path / "fac.yaml"
    fac_mapping.write_text(broken, encoding="utf-8")  # fac's tool knows no "cancelled"
    config.instances["fac-tool"].mapping = fac_mapping
    bridge = make_bridge(store, config)
    try:
        hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
        ann, ann_copy = _copied_request(bridge, "Chair for Ann")
        # One drain of fac-tool: the cancellation of Ann's copy, and the create of Bob's.
        hr.edit(ann, status="cancelled")
        _request(bridge, "Chair for Bob")
        summary = bridge.engine.run_cycle("hr-tool")
        assert summary.ok, summary.error
        assert summary.dead_letters == 1
        assert sorted(t["title"] for t in fac.tickets.values()) == [
            "Chair for Ann",
            "Chair for Bob",
        ]
        assert fac.tickets[ann_copy]["status"] != "cancelled"
        (letter,) = _letters(bridge)
        assert letter.instance == "fac-tool" and _operation(letter) == "update"
        assert "status" in letter.reason and "'cancelled' has no raw value" in letter.reason
        bridge.settle()  # a dead item stays dead: nothing tries it again by itself
        assert fac.tickets[ann_copy]["status"] != "cancelled"

        # Fixed while the same engine runs: its next cycle maps with the file as it is now.
        fac_mapping.write_text(good, encoding="utf-8")
        done = len(fac.writes)
        _retry_all(bridge, [letter])
        bridge.settle()
        assert fac.tickets[ann_copy]["status"] == "cancelled"
        assert fac.writes[done:] == [("update", ann_copy)]  # exactly once
        assert _letters(bridge) == []
    finally:
        bridge.engine.close()


# -- 2. a mapping plugin's bug ----------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [ValueError("no such chair model"), KeyError("model")], ids=["ValueError", "KeyError"]
)
def test_a_mapping_plugin_raising_dead_letters_its_item_only_and_retry_creates_it_once(
    bridge: Bridge, error: Exception
) -> None:
    fac = bridge.tools["fac-tool"]
    plugin = BuggyOutbound("Odd chair", error, instance="fac-tool")
    bridge.host.register(plugin)
    _request(bridge, "Odd chair")
    _request(bridge, "Plain chair")
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok, summary.error
    assert summary.dead_letters == 1
    assert [t["title"] for t in fac.tickets.values()] == ["Plain chair"]
    (letter,) = _letters(bridge)
    assert _operation(letter) == "create"
    # Given up at once: retrying without a fix of the plugin would fail the same way.
    assert letter.attempts == 1
    assert f"{type(error).__name__}: {error}" in letter.reason

    plugin.armed = False
    _retry_all(bridge, [letter])
    bridge.settle()
    assert sorted(t["title"] for t in fac.tickets.values()) == ["Odd chair", "Plain chair"]
    assert len(_creates(fac)) == 2
    odd = _copy(fac, "Odd chair")
    assert [c.source.remote_id for c in _fac_calls(bridge) if c.source].count(odd) == 1
    assert len(_fac_calls(bridge)) == 2
    assert _letters(bridge) == []


# -- 3. a connector raising something unexpected ----------------------------------------------


def test_a_create_whose_answer_breaks_the_connector_is_retried_and_makes_no_duplicate(
    bridge: Bridge,
) -> None:
    fac = bridge.tools["fac-tool"]
    # The record is made, then the connector chokes on the answer: the outcome is unknown.
    bridge.connectors["fac-tool"].crash_after_create = KeyError("id")
    _request(bridge, "Chair for Ann")
    _request(bridge, "Chair for Bob")
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok, summary.error
    assert summary.dead_letters == 0
    assert sorted(t["title"] for t in fac.tickets.values()) == ["Chair for Ann", "Chair for Bob"]
    (item,) = _pending(bridge, OutboxOperation.CREATE)
    assert "KeyError: 'id'" in (item.last_error or "")
    assert item.next_attempt_at >= bridge.clock() + timedelta(seconds=29)  # backoff

    bridge.clock.advance(minutes=2)  # past the first backoff (30 s)
    counts = bridge.engine.pusher.drain("fac-tool")
    # The retry finds the record by its marker instead of creating it again and, as what the
    # record holds is unknown, writes the call's draft over it.
    assert (counts.pushed, counts.retried, counts.dead) == (2, 0, 0)
    assert len(fac.tickets) == 2 and len(_creates(fac)) == 2
    assert [op for op, _ in fac.writes[2:]] == ["update"]
    bridge.settle()
    assert len(fac.tickets) == 2 and len(_creates(fac)) == 2
    assert len(_fac_calls(bridge)) == 2  # reading the record back made no stranger's call
    assert _pending(bridge, OutboxOperation.CREATE) == []


def test_an_update_that_keeps_breaking_the_connector_is_dead_lettered_after_the_last_attempt(
    bridge: Bridge,
) -> None:
    bridge.engine.pusher.max_attempts = 2
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    connector = bridge.connectors["fac-tool"]
    ann, bob = _request(bridge, "Chair for Ann"), _request(bridge, "Chair for Bob")
    bridge.settle()
    ann_copy, bob_copy = _copy(fac, "Chair for Ann"), _copy(fac, "Chair for Bob")
    hr.edit(ann, title="Red chair for Ann")
    hr.edit(bob, title="Red chair for Bob")
    connector.faults["update"] = [KeyError("fields")]  # Ann's update comes first
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok, summary.error
    assert summary.dead_letters == 0
    assert fac.tickets[ann_copy]["title"] == "Chair for Ann"
    assert fac.tickets[bob_copy]["title"] == "Red chair for Bob"
    (item,) = _pending(bridge, OutboxOperation.UPDATE)
    assert "KeyError: 'fields'" in (item.last_error or "")

    bridge.clock.advance(minutes=2)  # past the first backoff (30 s)
    connector.faults["update"] = [KeyError("fields")]
    counts = bridge.engine.pusher.drain("fac-tool")
    assert counts.dead == 1
    (letter,) = _letters(bridge)
    assert "gave up after 2 attempts: KeyError: 'fields'" in letter.reason
    assert fac.tickets[ann_copy]["title"] == "Chair for Ann"

    done = len(fac.writes)
    _retry_all(bridge, [letter])
    bridge.settle()
    assert fac.tickets[ann_copy]["title"] == "Red chair for Ann"
    assert fac.writes[done:] == [("update", ann_copy)]


def test_a_comment_that_breaks_the_connector_is_retried_once_and_the_update_goes_on(
    bridge: Bridge,
) -> None:
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ann, ann_copy = _copied_request(bridge, "Chair for Ann")
    hr.comment(ann, "Near the window, please")
    hr.edit(ann, description="Blue, if there is one")
    bridge.connectors["fac-tool"].faults["comment"] = [KeyError("id")]
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok, summary.error
    assert summary.dead_letters == 0
    assert fac.tickets[ann_copy]["description"] == "Blue, if there is one"
    assert fac.tickets[ann_copy]["comments"] == []
    (item,) = _pending(bridge, OutboxOperation.COMMENT)
    assert "KeyError: 'id'" in (item.last_error or "")

    bridge.clock.advance(minutes=2)  # past the first backoff (30 s)
    bridge.settle()
    assert [c["body"] for c in fac.tickets[ann_copy]["comments"]] == [
        "Someone at hr wrote:\nNear the window, please"
    ]
    assert [w for w in fac.writes if w[0] == "comment"] == [("comment", ann_copy)]


@pytest.mark.parametrize(
    ("error", "said"),
    [(KeyError("id"), "KeyError: 'id'"), (RetriableRemoteError("read timed out"), "timed out")],
    ids=["KeyError", "timeout"],
)
def test_a_create_given_up_after_making_its_record_links_it_so_nothing_is_duplicated(
    bridge: Bridge, error: Exception, said: str
) -> None:
    bridge.engine.pusher.max_attempts = 1
    fac = bridge.tools["fac-tool"]
    # The last attempt makes the record and never learns it did.
    bridge.connectors["fac-tool"].crash_after_create = error
    _request(bridge, "Chair for Ann")
    summary = bridge.engine.run_cycle("hr-tool")
    assert summary.ok and summary.dead_letters == 1
    (letter,) = _letters(bridge)
    assert "gave up after 1 attempts" in letter.reason and said in letter.reason
    made = fac.only()["id"]
    bridge.settle()
    # The record the last attempt made is known as the supplier call, not read as a new one.
    (supplier,) = _fac_calls(bridge)
    assert supplier.source is not None and supplier.source.remote_id == made

    _retry_all(bridge, [letter])
    bridge.settle()
    assert _creates(fac) == [made]
    assert _letters(bridge) == [] and _pending(bridge, OutboxOperation.CREATE) == []


def test_a_kill_during_a_push_is_never_swallowed_and_the_write_is_made_once_later(
    bridge: Bridge,
) -> None:
    hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
    ann, ann_copy = _copied_request(bridge, "Chair for Ann")
    hr.edit(ann, title="Red chair for Ann")
    bridge.connectors["fac-tool"].faults["update"] = [Crash()]
    with pytest.raises(Crash):
        bridge.engine.run_cycle("hr-tool")
    assert fac.tickets[ann_copy]["title"] == "Chair for Ann"
    done = len(fac.writes)
    bridge.clock.advance(minutes=10)  # the lease of the interrupted claim runs out
    bridge.settle()
    assert fac.tickets[ann_copy]["title"] == "Red chair for Ann"
    assert fac.writes[done:] == [("update", ann_copy)]
    assert _letters(bridge) == []


# -- 4. a target that cannot be pushed to at all ----------------------------------------------


class _ToolSettings(ConnectorSettings):
    tool: str


class _BuiltConnectors:
    """Contributes the kind ``memory-built``: a memory connector built from settings."""

    def __init__(self, tools: dict[str, MemoryTool]) -> None:
        tools_by_name = tools

        class BuiltMemoryConnector(MemoryConnector):
            kind = "memory-built"
            settings_model: ClassVar[type[ConnectorSettings]] = _ToolSettings

            @classmethod
            def from_config(
                cls, name: str, raw_settings: dict[str, Any], *, base_dir: Path | None = None
            ) -> Connector:
                settings = _ToolSettings.model_validate(raw_settings)
                return cls(tools_by_name[settings.tool])

        self.cls = BuiltMemoryConnector

    @hookimpl
    def usm_bridge_connector_types(self) -> list[type[Connector]]:
        return [self.cls]


def _bridge_building(store: Store, tmp_path: Path, instance: str) -> Bridge:
    """A bridge whose engine builds ``instance``'s connector from the config (kind memory-built,
    no settings yet, so building it fails); the other connectors are injected as usual."""
    config = make_config(tmp_path)
    config.instances[instance].kind = "memory-built"
    bridge = make_bridge(store, config)
    bridge.host.register(_BuiltConnectors(bridge.tools))
    bridge.restart({n: c for n, c in bridge.connectors.items() if n != instance})
    return bridge


def test_a_target_whose_connector_cannot_be_built_fails_its_drain_only_and_loses_nothing(
    store: Store, tmp_path: Path
) -> None:
    bridge = _bridge_building(store, tmp_path, "fac-tool")
    try:
        hr, fac = bridge.tools["hr-tool"], bridge.tools["fac-tool"]
        ann = _request(bridge, "Chair for Ann")
        read_up_to = hr.version
        summary = bridge.engine.run_cycle("hr-tool")
        assert not summary.ok
        assert "pushing to fac-tool failed" in (summary.error or "")
        assert "tool" in (summary.error or "")  # the missing setting
        assert summary.stored == 1
        assert hr.tickets[ann]["status"] == "hold"  # the other targets' drains went on
        with bridge.store.begin(readonly=True) as tx:
            assert tx.get_cursor("hr-tool") == str(read_up_to)
            assert len(tx.list_calls(unit="hr")) == 1
        (item,) = _pending(bridge, OutboxOperation.CREATE)
        assert item.attempts == 0  # not claimed: no attempt spent, no lease to wait for
        assert fac.tickets == {}

        broken = bridge.engine.run_cycle("fac-tool")
        assert not broken.ok and fac.tickets == {}

        bridge.config.instances["fac-tool"].settings["tool"] = "fac-tool"  # the admin's fix
        fixed = bridge.engine.run_cycle("fac-tool")
        assert fixed.ok, fixed.error
        assert fixed.pushed == 1
        assert [t["title"] for t in fac.tickets.values()] == ["Chair for Ann"]
        assert _pending(bridge, OutboxOperation.CREATE) == []
    finally:
        bridge.engine.close()


def test_a_target_whose_mapping_does_not_load_hands_its_claimed_items_back(
    store: Store, tmp_path: Path
) -> None:
    config = make_config(tmp_path)
    config.instances["fac-tool"].mapping = tmp_path / "fac.yaml"  # not written yet
    bridge = make_bridge(store, config)
    try:
        fac = bridge.tools["fac-tool"]
        _request(bridge, "Chair for Ann")
        summary = bridge.engine.run_cycle("hr-tool")
        assert not summary.ok and "pushing to fac-tool failed" in (summary.error or "")
        assert "fac.yaml" in (summary.error or "") and summary.stored == 1
        (item,) = _pending(bridge, OutboxOperation.CREATE)
        assert "cannot push to fac-tool" in (item.last_error or "")
        assert _letters(bridge) == []

        (tmp_path / "fac.yaml").write_text(
            (tmp_path / "memory.yaml").read_text(encoding="utf-8"), encoding="utf-8"
        )
        # Handed back, not leased: the next cycle pushes it without waiting out a lease.
        fixed = bridge.engine.run_cycle("fac-tool")
        assert fixed.ok, fixed.error
        assert [t["title"] for t in fac.tickets.values()] == ["Chair for Ann"]
    finally:
        bridge.engine.close()
