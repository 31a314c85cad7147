"""A record that keeps failing holds one open dead letter, counted and announced once."""

from __future__ import annotations

from typing import Any

from sync.memory_tool import Bridge
from usm_bridge.hookspecs import hookimpl
from usm_bridge.store import DeadLetterStage


def test_a_failing_re_read_counts_an_attempt_on_the_open_letter_not_a_new_letter(
    bridge: Bridge,
) -> None:
    seen: list[tuple[str, str, str]] = []

    class Watcher:
        @hookimpl
        def usm_bridge_dead_letter(
            self, instance: str, stage: str, reason: str, payload: Any
        ) -> None:
            seen.append((instance, stage, payload["data"]["title"]))

    bridge.host.register(Watcher())
    hr = bridge.tools["hr-tool"]
    bad = hr.add(title="Desk please", status="weird")
    other = hr.add(title="Chair please", status="weird")
    first = bridge.engine.run_cycle("hr-tool")
    assert first.ok and (first.read, first.dead_letters) == (2, 2)
    # A person edits the record twice more, still with a status the mapping cannot read.
    hr.edit(bad, title="Desk please, urgent")
    second = bridge.engine.run_cycle("hr-tool")
    hr.edit(bad, title="Desk please, very urgent")
    third = bridge.engine.run_cycle("hr-tool")
    assert (second.read, second.dead_letters) == (1, 0)
    assert (third.read, third.dead_letters) == (1, 0)
    assert seen == [
        ("hr-tool", "map", "Desk please"),
        ("hr-tool", "map", "Chair please"),
    ]
    with bridge.store.begin(readonly=True) as tx:
        letters = tx.list_dead_letters(status=None)
        added = [e for e in tx.list_audit(instance="hr-tool") if e.kind == "dead_letter_added"]
    assert [(d.subject, d.attempts) for d in letters] == [(bad, 3), (other, 1)]
    (letter, _) = letters
    assert letter.stage is DeadLetterStage.MAP and "weird" in letter.reason
    # The letter holds the newest read, so a retry maps what the tool holds now.
    assert letter.payload["data"]["title"] == "Desk please, very urgent"  # type: ignore[index]
    assert letter.last_seen > letter.created_at
    assert len(added) == 2
