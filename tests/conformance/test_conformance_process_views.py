"""The per-process views of the report: each figure recomputed here from the fixture's own
facts (docs/conformance-process-views.md), and shown in every renderer."""

from __future__ import annotations

import json
import math
import statistics
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from itertools import count, pairwise
from typing import Any

import pytest

from usm_bridge.agreements import Agreements
from usm_bridge.conformance.context import ReportContext
from usm_bridge.conformance.engine import build_report
from usm_bridge.conformance.period import Period
from usm_bridge.conformance.process_view_models import ProcessView, TimeFigures
from usm_bridge.conformance.process_views import nearest_rank_p90, process_views
from usm_bridge.conformance.renderers import (
    HtmlRenderer,
    JsonRenderer,
    JunitRenderer,
    MarkdownRenderer,
)
from usm_bridge.model import (
    Agreement,
    Call,
    CallType,
    Confirmation,
    ConfirmationKind,
    ForkRole,
    PriorityMatrix,
    ProcessLink,
    ServiceTargets,
    Status,
    Unit,
    UsmProcess,
)
from usm_bridge.store import AuditEvent, StoredCall

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PERIOD = Period(since=datetime(2026, 3, 1, tzinfo=UTC), until=datetime(2026, 4, 1, tzinfo=UTC))
HOUR = 3600.0


class Fixture:
    """Calls with their recorded status moves and type changes, built like the store does."""

    def __init__(self) -> None:
        self.calls: list[StoredCall] = []
        self.audit: list[AuditEvent] = []
        self._ids = count(1)

    def call(
        self,
        key: str,
        unit: str,
        call_type: CallType,
        statuses: list[tuple[Status, float]],
        **fields: Any,
    ) -> Call:
        """A call registered at T0 (unless ``created`` says) whose recorded statuses are
        ``statuses``: (status, hours after registration) each, the first at registration."""
        created = fields.pop("created", T0)
        final = statuses[-1][0]
        call = Call(
            unit=unit,
            title=key,
            call_type=call_type,
            status=final,
            created=created,
            updated=created + timedelta(hours=statuses[-1][1]),
            source={"instance": f"{unit}-tool", "remote_id": key, "remote_key": key},
            **fields,
        )
        self.calls.append(
            StoredCall(call=call, version=1, content_hash="x", created_at=T0, updated_at=T0)
        )
        for (before, _), (after, hours) in pairwise(statuses):
            self.event(call, created + timedelta(hours=hours), {"status": before.value},
                       {"status": after.value})  # fmt: skip
        return call

    def event(self, call: Call, at: datetime, before: dict[str, Any], after: dict[str, Any]) -> int:
        event_id = next(self._ids)
        self.audit.append(
            AuditEvent(
                id=event_id,
                at=at,
                call_id=call.id,
                instance=None,
                kind="call_updated",
                actor="sync",
                before=before,
                after=after,
                detail=None,
            )
        )
        return event_id

    def context(self, agreements: Agreements | None = None) -> ReportContext:
        return ReportContext(
            period=PERIOD,
            now=datetime(2026, 4, 2, tzinfo=UTC),
            units={"it": Unit(name="it"), "hr": Unit(name="hr")},
            instances={},
            routes=[],
            priority=PriorityMatrix(),
            calls=self.calls,
            audit=sorted(self.audit, key=lambda event: event.id),
            dead_letters=[],
            chain_links=[],
            identities=[],
            agreements=agreements,
        )


S = Status
TARGETS = {"high": ServiceTargets(response=HOUR / 2, fulfilment=4 * HOUR)}


def _agreements() -> Agreements:
    return Agreements(
        services={},
        agreements={"hr-it": Agreement(id="hr-it", customer="hr", provider="it", targets=TARGETS)},
        units={"it": Unit(name="it"), "hr": Unit(name="hr")},
        default_matrix=PriorityMatrix(),
    )


@pytest.fixture
def built() -> tuple[Fixture, ReportContext]:
    f = Fixture()
    work = [(S.REGISTERED, 0), (S.IN_PROGRESS, 0.25)]
    # change: R1 worked and fulfilled in 3 h (within 4 h); R2 fulfilled after 6 h without
    # ever being in progress (an rfc that never passed change)
    f.call("R1", "it", CallType.RFC, [*work, (S.FULFILLED, 3)], priority="high",
           customer_unit="hr", fulfilled=T0 + timedelta(hours=3))  # fmt: skip
    f.call("R2", "it", CallType.RFC, [(S.REGISTERED, 0), (S.FULFILLED, 6)], priority="high",
           agreement="hr-it", fulfilled=T0 + timedelta(hours=6))  # fmt: skip
    # recover: I1 rejected once (fulfilled -> in_progress), then confirmed explicitly after
    # 10 h and closed; it forked to change (W3). I2 forked to operate (W4) and to improve
    # (outside the patterns), is closed, and first responded after 1 h (over 30 min).
    f.call("I1", "it", CallType.INCIDENT,
           [*work, (S.FULFILLED, 2), (S.IN_PROGRESS, 3), (S.FULFILLED, 5), (S.CONFIRMED, 10),
            (S.CLOSED, 11)],
           priority="high", customer_unit="hr", fulfilled=T0 + timedelta(hours=5),
           confirmation=Confirmation(kind=ConfirmationKind.EXPLICIT, at=T0 + timedelta(hours=10)),
           chain={"forks": [ProcessLink(role=ForkRole.SECONDARY, process=UsmProcess.CHANGE,
                                        ref="CHG1")]})  # fmt: skip
    f.call("I2", "it", CallType.INCIDENT,
           [(S.REGISTERED, 0), (S.IN_PROGRESS, 1), (S.FULFILLED, 8), (S.CLOSED, 30)],
           priority="high", customer_unit="hr",
           confirmation=Confirmation(kind=ConfirmationKind.IMPLICIT, at=T0 + timedelta(hours=30)),
           chain={"forks": [
               ProcessLink(role=ForkRole.SECONDARY, process=UsmProcess.OPERATE, ref="REQ1"),
               ProcessLink(role=ForkRole.SECONDARY, process=UsmProcess.IMPROVE, ref="PRB1"),
               ProcessLink(role=ForkRole.PRIMARY, process=UsmProcess.RECOVER, ref="INC9"),
           ]})  # fmt: skip
    # operate: S1 was an incident until after its fulfilment (retyped), no priority
    s1 = f.call("S1", "it", CallType.SERVICE_REQUEST, [*work, (S.FULFILLED, 4)])
    f.event(s1, T0 + timedelta(hours=5), {"call_type": "incident"},
            {"call_type": "service_request"})  # fmt: skip
    # S2 first read already closed: its work is not recorded, so it is not judged on it
    f.call("S2", "it", CallType.SERVICE_REQUEST, [(S.CLOSED, 0)])
    # unclassified: U1 fulfilled while unclassified; U2 still open
    f.call("U1", "it", CallType.UNCLASSIFIED, [(S.REGISTERED, 0), (S.FULFILLED, 1)])
    f.call("U2", "it", CallType.UNCLASSIFIED, [(S.REGISTERED, 0)])
    # hr: a wish under no agreement; and a call registered before the period (not counted)
    f.call("W1", "hr", CallType.WISH, [*work, (S.FULFILLED, 2)], priority="high")
    f.call("OLD", "it", CallType.RFC, [(S.REGISTERED, 0)], created=T0 - timedelta(days=30))
    return f, f.context(_agreements())


def _views(context: ReportContext) -> dict[tuple[str, str], ProcessView]:
    return {(view.unit, view.process): view for view in process_views(context)}


def _times(view: ProcessView, priority: str = "high") -> dict[str, TimeFigures]:
    row = next(row for row in view.by_priority if row.priority == priority)
    return {"response": row.response, "fulfilment": row.fulfilment,
            "confirmation": row.confirmation}  # fmt: skip


def test_one_view_per_unit_and_process_with_calls_registered_in_the_period(
    built: tuple[Fixture, ReportContext],
) -> None:
    views = process_views(built[1])
    assert [(v.unit, v.process) for v in views] == [
        ("it", "change"), ("it", "recover"), ("it", "operate"), ("it", "unclassified"),
        ("hr", "agree"),
    ]  # fmt: skip
    # OLD was registered before the period: 2 rfcs, not 3
    assert {(v.unit, v.process): v.registered for v in views} == {
        ("it", "change"): 2, ("it", "recover"): 2, ("it", "operate"): 2,
        ("it", "unclassified"): 2, ("hr", "agree"): 1,
    }  # fmt: skip


def test_times_against_the_agreement_targets(built: tuple[Fixture, ReportContext]) -> None:
    views = _views(built[1])
    change = _times(views[("it", "change")])
    fulfil = [3 * HOUR, 6 * HOUR]
    assert change["fulfilment"].measured == 2
    assert change["fulfilment"].median_seconds == statistics.median(fulfil)
    assert change["fulfilment"].p90_seconds == 6 * HOUR  # rank ceil(0.9 x 2) = 2
    # both calls fall under hr-it (R1 by its customer unit, R2 by name): 4 h target
    assert (change["fulfilment"].with_target, change["fulfilment"].within_target) == (2, 1)
    assert change["fulfilment"].share_within_target == 0.5
    assert change["fulfilment"].targets_seconds == [4 * HOUR]
    # R1 responded after 15 min (target 30 min); R2 went straight to fulfilled after 6 h
    assert change["response"].measured == 2
    assert (change["response"].with_target, change["response"].within_target) == (2, 1)
    recover = _times(views[("it", "recover")])
    # I1: fulfilled at 5 h (its last fulfilment), I2 at 8 h (the last move into fulfilled)
    assert recover["fulfilment"].median_seconds == statistics.median([5 * HOUR, 8 * HOUR])
    assert recover["fulfilment"].within_target == 0
    # confirmation: I1 explicit at 10 h; I2's implicit close does not confirm (hr-it allows
    # no implicit confirmation); agreements set no confirmation target
    assert recover["confirmation"].measured == 1
    assert recover["confirmation"].median_seconds == 10 * HOUR
    assert recover["confirmation"].share_within_target is None
    # the wish is under no agreement: measured, but no target
    agree = _times(views[("hr", "agree")])
    assert agree["fulfilment"].measured == 1 and agree["fulfilment"].with_target == 0
    assert agree["fulfilment"].share_within_target is None


def test_an_implicit_confirmation_counts_where_the_agreement_allows_it(
    built: tuple[Fixture, ReportContext],
) -> None:
    fixture, _ = built
    agreements = _agreements()
    agreements.agreements["hr-it"] = agreements.agreements["hr-it"].model_copy(
        update={"implicit_confirmation": 86400.0}
    )
    recover = _times(_views(fixture.context(agreements))[("it", "recover")])
    assert recover["confirmation"].measured == 2
    assert recover["confirmation"].median_seconds == statistics.median([10 * HOUR, 30 * HOUR])


def test_reopens_outside_the_process_and_forks(built: tuple[Fixture, ReportContext]) -> None:
    views = _views(built[1])
    recover = views[("it", "recover")]
    assert (recover.fulfilled, recover.reopened, recover.reopen_moves) == (2, 1, 1)
    assert recover.reopen_rate == 1 / 2
    assert recover.forks == {"primary recover": 1, "secondary change": 1,
                             "secondary improve": 1, "secondary operate": 1}  # fmt: skip
    assert recover.patterns == {"W3": 1, "W4": 1, "outside the patterns": 1}
    change = views[("it", "change")]
    assert change.reopened == 0 and change.reopen_rate == 0
    assert change.outside_process == 1
    assert change.outside_reasons == {"fulfilled without ever being in progress": 1}
    [r2] = change.outside_evidence
    assert r2.remote_key == "R2" and "registered -> fulfilled" in r2.detail
    operate = views[("it", "operate")]
    assert (operate.fulfilled, operate.first_read_done, operate.outside_process) == (2, 1, 1)
    assert operate.outside_reasons == {"type changed after fulfilment": 1}
    assert "incident -> service_request" in operate.outside_evidence[0].detail
    unclassified = views[("it", "unclassified")]
    assert unclassified.outside_reasons == {"fulfilled while unclassified": 1}
    assert [e.remote_key for e in unclassified.outside_evidence] == ["U1"]
    # nothing was fulfilled in hr's view but the wish, worked on: inside its process
    assert views[("hr", "agree")].outside_process == 0


@pytest.mark.parametrize("size", [1, 2, 9, 10, 11, 19, 20, 70])
def test_the_p90_is_the_nearest_rank(size: int) -> None:
    values = [float(v) for v in range(size, 0, -1)]
    assert nearest_rank_p90(values) == float(math.ceil(0.9 * size - 1e-9))
    assert nearest_rank_p90([]) is None


def test_no_calls_no_views() -> None:
    assert process_views(Fixture().context()) == []


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and found.get("class") in ("process-view", "process-times"):
            self.rows.append(found)


def test_every_renderer_shows_the_section(built: tuple[Fixture, ReportContext]) -> None:
    report = build_report(built[1], checks=[])
    parser = _Cells()
    parser.feed(HtmlRenderer().render(report))
    volumes = [row for row in parser.rows if row["class"] == "process-view"]
    assert [(r["data-unit"], r["data-process"], r["data-registered"]) for r in volumes] == [
        ("it", "change", "2"), ("it", "recover", "2"), ("it", "operate", "2"),
        ("it", "unclassified", "2"), ("hr", "agree", "1"),
    ]  # fmt: skip
    assert any(r["data-priority"] == "high" for r in parser.rows if r["class"] == "process-times")
    data = json.loads(JsonRenderer().render(report))
    first = data["process_views"][0]
    assert {"unit", "process", "registered", "fulfilled", "reopened", "reopen_rate",
            "outside_process", "forks", "patterns", "by_priority"} <= set(first)  # fmt: skip
    assert set(first["by_priority"][0]) == {"priority", "calls", "response", "fulfilment",
                                            "confirmation"}  # fmt: skip
    markdown = MarkdownRenderer().render(report)
    assert "## Processes" in markdown
    assert "| it | change | 2 | 2 | 0 | 0 (0.00%) | 1 |" in markdown
    assert "no target" in markdown and "50.0% of 2" in markdown
    ET.fromstring(JunitRenderer().render(report))  # still well-formed XML


def test_a_call_first_read_done_is_judged_only_on_later_type_changes() -> None:
    f = Fixture()
    # X: met closed (not judged on its work), then retyped: that is after its fulfilment
    x = f.call("X", "it", CallType.RFC, [(S.CLOSED, 0)])
    f.event(x, T0 + timedelta(hours=1), {"call_type": "service_request"}, {"call_type": "rfc"})
    # Y: met closed, never retyped, with a fork whose process the tool does not say
    f.call("Y", "it", CallType.RFC, [(S.CLOSED, 0)],
           chain={"forks": [ProcessLink(role=ForkRole.SECONDARY, ref="OTHER-1")]})  # fmt: skip
    change = _views(f.context())[("it", "change")]
    assert (change.registered, change.fulfilled, change.first_read_done) == (2, 2, 2)
    assert change.outside_reasons == {"type changed after fulfilment": 1}
    assert [e.remote_key for e in change.outside_evidence] == ["X"]
    assert change.forks == {"secondary unknown": 1}
    assert change.patterns == {"process unknown": 1}
    # without a registry: every time is measured against no target
    times = _times(change, "none")
    assert times["fulfilment"].measured == 0  # no fulfilment time recorded for either
    assert times["response"].measured == 0 and times["response"].share_within_target is None
