"""The report's pass reads each call as its facts (``calls.facts``: no descriptions, comments
or people); a plugin's check, which runs after the pass and asks for a unit's calls or for one
call, still gets whole calls, on both back ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from usm_bridge.config import BridgeConfig
from usm_bridge.conformance.api import CheckOutcome
from usm_bridge.conformance.context import ReportContext, build_context
from usm_bridge.conformance.engine import build_report
from usm_bridge.conformance.period import Period
from usm_bridge.model import Call, Comment, Person, SourceRef
from usm_bridge.plugins import PluginHost
from usm_bridge.store import Store

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class ReadsTexts:
    """A plugin's rule that reads what the facts leave out."""

    id = "acme.reads-texts"
    title = "Reads descriptions, comments and people"

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str, int, str | None]] = {}

    def run(self, context: ReportContext) -> list[CheckOutcome]:
        for unit in context.unit_names():
            for call in context.calls_of(unit):
                one = context.call(call.id)
                assert one is not None and one == call
                requester = call.requester.name if call.requester else None
                self.seen[call.id] = (call.description, len(call.comments), requester)
        return []


def test_a_plugin_check_after_the_pass_reads_whole_calls(store_url: str) -> None:
    person = Person(name="Anna Öztürk", email="anna@example.com")
    calls = [
        Call(
            unit="it",
            source=SourceRef(instance="it-snow", remote_id=f"IT-{n}"),
            title=f"Drucker {n} kaputt",
            description=f"Beschreibung {n}",
            requester=person,
            comments=[Comment(id=f"c{n}", body="Danke", author=person, created=T0)],
            created=T0,
            updated=T0 + timedelta(minutes=n),
        )
        for n in range(3)
    ]
    check = ReadsTexts()
    with Store.open(store_url) as store:
        with store.begin() as tx:
            for call in calls:
                tx.upsert_call(call, instance="it-snow")
        config = BridgeConfig.model_validate(
            {"store": {"url": store_url}, "units": {"it": {"name": "it"}}}
        )
        context = build_context(store, config, Period(), host=PluginHost(), vocabularies={})
        build_report(context, checks=[check])
    assert check.seen == {call.id: (call.description, 1, "Anna Öztürk") for call in calls}
