"""A report over a store of ``bench/fill_store.py`` (the data of the scale benchmark): read
page by page it says, byte for byte, what the report holding every call in memory says; and a
stored call the model refuses is listed with its id, never a crash, never silently dropped."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from usm_bridge.config import BridgeConfig
from usm_bridge.conformance.context import (
    ReportContext,
    build_context,
    parsed_safe_link,
    safe_link,
)
from usm_bridge.conformance.engine import build_report
from usm_bridge.conformance.period import Period
from usm_bridge.conformance.renderers import (
    HtmlRenderer,
    JsonRenderer,
    JunitRenderer,
    MarkdownRenderer,
    markdown_escape,
)
from usm_bridge.conformance.unreadable_calls import CHECK_ID
from usm_bridge.plugins import PluginHost
from usm_bridge.store import Store
from usm_bridge.store import schema as tables
from usm_bridge.store.call_facts import fact_columns, facts_of

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

from fill_store import fill_store
from whole_context import whole_context

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CALLS = 1500


def _config(url: str) -> BridgeConfig:
    units = {name: {"name": name} for name in ("facilities", "it", "hr")}
    return BridgeConfig.model_validate({"store": {"url": url}, "units": units})


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


def _streamed(store: Store, host: PluginHost) -> ReportContext:
    config = _config(str(store.engine.url))
    context = build_context(store, config, Period(), host=host, vocabularies={}, now=NOW)
    assert context.source is not None  # a store on disk is read page by page
    return context


def _standalone_calls(store: Store) -> list[str]:
    """Two closed calls of one unit outside every chain (their loss changes no other call's
    findings)."""
    calls, links = tables.calls, tables.chain_links
    chained = sa.select(links.c.upstream_call_id).union(sa.select(links.c.supplier_call_id))
    with store.begin(readonly=True) as tx:
        found = tx.connection.execute(
            sa.select(calls.c.id)
            .where(
                calls.c.id.not_in(chained),
                calls.c.status == "closed",
                calls.c.unit == "facilities",
            )
            .order_by(calls.c.id)
            .limit(2)
        ).scalars()
        return [str(call_id) for call_id in found]


def _corrupt(store: Store, victim: str, how: str) -> None:
    """The victim's row as another version of the bridge (or a hand edit of both the document
    and its facts) left it, its fact columns derived as revision 0016 derives them;
    ``no-facts``: the document broken and no facts, as revision 0015 leaves a row whose
    document was not JSON (the report then reads the document)."""
    calls = tables.calls
    with store.begin() as tx:
        conn = tx.connection
        canonical = dict(
            conn.execute(sa.select(calls.c.canonical).where(calls.c.id == victim)).scalar_one()
        )
        if how == "updated-before-created":
            canonical["updated"] = "2000-01-01T00:00:00Z"
        else:
            canonical["colour"] = "red"  # a key the model does not know
        facts = None if how == "no-facts" else facts_of(canonical)
        # A row without facts has no fact columns either (what the upgrade leaves).
        columns = fact_columns({} if facts is None else canonical)
        conn.execute(
            calls.update()
            .where(calls.c.id == victim)
            .values(canonical=canonical, facts=facts, **columns)
        )


def test_the_streamed_report_is_the_whole_report_and_an_unreadable_call_is_listed_by_id(
    store_url: str, host: PluginHost
) -> None:
    fill_store(store_url, CALLS, seed=17, now=NOW)
    with Store.open(store_url) as store:
        streamed = _streamed(store, host)
        whole = whole_context(store, streamed)
        paged, held = (
            JsonRenderer().render(build_report(streamed, host)),
            JsonRenderer().render(build_report(whole, host)),
        )
        # Byte for byte what the report holding every call, read by the store, says.
        assert paged == held
        before = json.loads(paged)
        assert sum(len(o["evidence"]) for o in before["outcomes"]) > CALLS // 2
        assert sum(u["calls"] for u in before["units"]) == CALLS
        assert CHECK_ID not in paged

        victims = _standalone_calls(store)
        for victim, how in zip(victims, ["updated-before-created", "no-facts"], strict=True):
            _corrupt(store, victim, how)
        built = build_report(_streamed(store, host), host)
    # Every format shows the calls nobody could judge, by their ids.
    for renderer in (HtmlRenderer(), MarkdownRenderer(), JunitRenderer()):
        text = renderer.render(built)
        for victim in victims:
            assert victim in text or markdown_escape(victim) in text, renderer.format
    after = json.loads(JsonRenderer().render(built))
    (outcome,) = [o for o in after["outcomes"] if o["check_id"] == CHECK_ID]
    assert (outcome["unit"], outcome["verdict"]) == ("facilities", "fail")
    assert sorted(e["call_id"] for e in outcome["evidence"]) == sorted(victims)
    assert outcome["count"] == 2 and outcome["population"]["exceptions"] == 2
    assert all("no longer validates" in e["detail"] for e in outcome["evidence"])
    assert CHECK_ID in [c["id"] for c in after["checks"]]
    # Every other outcome lists what it listed, less the calls nobody could judge.
    others = [o for o in after["outcomes"] if o["check_id"] != CHECK_ID]
    assert len(others) == len(before["outcomes"])
    for old, new in zip(before["outcomes"], others, strict=True):
        assert (old["check_id"], old["unit"]) == (new["check_id"], new["unit"])
        assert new["evidence"] == [e for e in old["evidence"] if e["call_id"] not in victims]
        if old["unit"] != "facilities":
            assert new == old
    calls = {u["name"]: u["calls"] for u in after["units"]}
    assert calls == {
        u["name"]: u["calls"] - 2 * (u["name"] == "facilities") for u in before["units"]
    }


@pytest.mark.parametrize(
    "url",
    [
        "https://jira.example.com/browse/FAC-1",
        "http://sn.example.com:8080/nav_to.do?uri=incident.do",
        "https://a.example#top",
        "HTTPS://A.EXAMPLE/x",
        "https://",
        "https:///path",
        "https://:80/x",
        "https://[::1]/x",
        "https://[::1/x",
        "https://user:secret@host/x",
        "javascript:alert(1)",
        "data:text/html,<script>",
        "/relative/path",
        " https://a.example",
        "https://a.example/\n",
        "https://a.example\n",
        "https://a.example/x y",
        "https://a.example/\x00",
        "https://a.example?q=\t",
        "https://a.example#\r",
        "http://a.example:/x",
        "https://a.example:80x/",
        "",
    ],
)
def test_the_quick_path_of_safe_link_says_what_parsing_says(url: str) -> None:
    assert safe_link(url) == parsed_safe_link(url)
