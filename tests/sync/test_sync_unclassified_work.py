"""A tool record the bridge cannot classify but the tool works on (USM: no work while
unclassified) is accounted for as a ``map`` dead letter naming the record and the way out: the
tool classifies it (the next read stores it) or the mapping gets a rule (a retry stores it).
Nothing is stored invalid meanwhile."""

from __future__ import annotations

from pathlib import Path

from sync.memory_tool import make_bridge, make_config
from usm_bridge.dead_letters import retry_dead_letters
from usm_bridge.model import CallType, Status
from usm_bridge.store import DeadLetterStage, Store


def test_a_record_worked_on_while_unclassified_is_a_dead_letter_naming_it(
    store: Store, tmp_path: Path
) -> None:
    config = make_config(tmp_path, routes=[], units=("hr",))
    # A unit whose mapping leaves other kinds of ticket unclassified (a custom work type).
    mapping = tmp_path / "memory.yaml"
    text = mapping.read_text(encoding="utf-8")
    mapping.write_text(
        text.replace(
            "  default: service_request",
            "    - {type: service_request, when: [{path: kind, equals: request}]}\n"
            "  default: unclassified",
        )
    )
    bridge = make_bridge(store, config)
    hr = bridge.tools["hr-tool"]
    working = hr.add(title="Printer jams", status="open", kind="other")
    waiting = hr.add(title="Toner", status="hold_customer", kind="other")
    idle = hr.add(title="Hello", status="new", kind="other")
    bridge.settle()
    with store.begin(readonly=True) as tx:
        letters = {letter.subject: letter for letter in tx.list_dead_letters()}
        stored = [s.call for s in tx.list_calls(unit="hr")]
    assert set(letters) == {working, waiting}
    assert {letter.stage for letter in letters.values()} == {DeadLetterStage.MAP}
    assert letters[working].reason == (
        f"record {working!r} is in_progress but unclassified: USM does no work on a call "
        "before it is classified; add a classify rule to the mapping file that gives it a "
        "type, or classify it in the tool, then retry the dead letter"
    )
    assert letters[waiting].reason.startswith(f"record {waiting!r} is waiting but unclassified")
    # The record nobody works on yet is an ordinary unclassified call.
    assert [(c.title, c.call_type, c.status) for c in stored] == [
        ("Hello", CallType.UNCLASSIFIED, Status.REGISTERED)
    ]
    assert idle in {c.source.remote_id for c in stored if c.source}

    # Classified in the tool: the next read stores it, working as the tool says.
    hr.edit(working, kind="incident")
    bridge.settle()
    with store.begin(readonly=True) as tx:
        calls = {s.call.title: s.call for s in tx.list_calls(unit="hr")}
    assert (calls["Printer jams"].call_type, calls["Printer jams"].status) == (
        CallType.INCIDENT,
        Status.IN_PROGRESS,
    )

    # Or the mapping file gets the rule, and the dead letter is retried: stored, resolved.
    fixed = mapping.read_text(encoding="utf-8").replace(
        "  default: unclassified",
        "    - {type: service_request, when: [{path: kind, equals: other}]}\n"
        "  default: unclassified",
    )
    mapping.write_text(fixed, encoding="utf-8")
    outcome = retry_dead_letters(bridge.engine, ids=[letters[waiting].id])
    assert [letter_id for letter_id, _ in outcome.resolved] == [letters[waiting].id]
    with store.begin(readonly=True) as tx:
        calls = {s.call.title: s.call for s in tx.list_calls(unit="hr")}
    assert (calls["Toner"].call_type, calls["Toner"].status) == (
        CallType.SERVICE_REQUEST,
        Status.WAITING,
    )
