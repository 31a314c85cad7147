"""Plugin discovery, the typed façade, blocking, and third-party connectors."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from sync.memory_tool import IdleConnector

from usm_bridge.connector import Connector
from usm_bridge.errors import MappingError, PluginError
from usm_bridge.hookspecs import hookimpl
from usm_bridge.model import CallType
from usm_bridge.plugins import DISABLE_ENV, TRACE_ENV, PluginHost


class _Dummy(IdleConnector):
    kind = "dummy"
    description = "dummy"


class DummyPlugin:
    @hookimpl
    def usm_bridge_connector_types(self) -> list[type[Connector]]:
        return [_Dummy]


def test_third_party_distribution_is_discovered_and_its_hooks_called() -> None:
    # usm-bridge-acme is installed as its own distribution (tests/plugins/thirdparty_connector)
    # by `make install`, exactly as an admin would pip install a connector.
    import usm_bridge_acme.plugin as acme

    acme.CALLS.clear()
    host = PluginHost()
    assert host.connector_type("acme").__name__ == "AcmeConnector"
    assert "acme_shout" in host.transforms()
    assert host.transforms()["acme_shout"]("hi") == "HI"
    assert acme.CALLS.count("usm_bridge_connector_types") >= 1
    assert "usm_bridge_mapping_transforms" in acme.CALLS
    info = {i.name: i for i in host.plugin_info()}["acme"]
    assert (info.distribution, info.version) == ("usm-bridge-acme", "1.2.3")
    assert info.connector_kinds == ("acme",)
    assert "usm_bridge_connector_types" in info.hooks


def test_builtin_plugins_load_through_the_same_entry_points() -> None:
    host = PluginHost()
    infos = {i.name: i for i in host.plugin_info()}
    assert infos["builtin_mapping"].distribution == "usm-bridge"
    assert "usm_bridge_map_inbound" in infos["builtin_mapping"].hooks


def test_connectors_command_lists_the_third_party_connector() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "usm_bridge", "connectors", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = {row["plugin"]: row for row in json.loads(result.stdout)}
    assert rows["acme"]["distribution"] == "usm-bridge-acme"
    assert rows["acme"]["version"] == "1.2.3"
    assert rows["acme"]["connector_kinds"] == ["acme"]


def test_blocking_by_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISABLE_ENV, "acme, jira")
    host = PluginHost()
    assert "acme" not in host.connector_types() and "jira" not in host.connector_types()
    # A connector's transforms go with it; the core's tool-neutral ones stay.
    assert "acme_shout" not in host.transforms() and "adf_to_text" not in host.transforms()
    assert "strip" in host.transforms() and "servicenow_datetime" in host.transforms()
    assert {"acme", "jira"} <= set(host.blocked)
    names = {i.name for i in host.plugin_info()}
    assert "acme" not in names and "builtin_mapping" in names


def test_blocked_plugin_is_reported_by_the_cli_as_missing_kind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DISABLE_ENV, "acme")
    with pytest.raises(PluginError, match="no connector of kind 'acme' is installed"):
        PluginHost().connector_type("acme")


def test_registered_plugin_contributes_a_connector() -> None:
    host = PluginHost(load_entrypoints=False, plugins=[DummyPlugin()])
    assert host.connector_types() == {"dummy": _Dummy}


def test_two_plugins_claiming_one_kind_is_an_error() -> None:
    class Other(_Dummy):
        pass

    class OtherPlugin:
        @hookimpl
        def usm_bridge_connector_types(self) -> list[type[Connector]]:
            return [Other]

    host = PluginHost(load_entrypoints=False, plugins=[DummyPlugin(), OtherPlugin()])
    with pytest.raises(PluginError, match="'dummy' is already provided"):
        host.connector_types()


def test_two_plugins_claiming_one_transform_name_is_an_error() -> None:
    def plugin(name: str) -> object:
        class P:
            @hookimpl
            def usm_bridge_mapping_transforms(self) -> dict[str, Callable[..., Any]]:
                return {"twice": str}

        P.__name__ = name
        return P()

    host = PluginHost(load_entrypoints=False, plugins=[plugin("a"), plugin("b")])
    with pytest.raises(PluginError, match="transform 'twice' is already provided"):
        host.transforms()


def test_a_misspelt_hook_is_refused_at_registration() -> None:
    class Typo:
        @hookimpl
        def usm_bridge_conector_types(self) -> list[type[Connector]]:
            return []

    with pytest.raises(PluginError, match="unknown hook 'usm_bridge_conector_types'"):
        PluginHost(load_entrypoints=False, plugins=[Typo()])


def test_a_hook_with_a_wrong_argument_is_refused() -> None:
    class Wrong:
        @hookimpl
        def usm_bridge_before_cycle(self, instance: str, nonsense: int) -> None:
            return None

    with pytest.raises(PluginError, match="nonsense"):
        PluginHost(load_entrypoints=False, plugins=[Wrong()])


def test_classifiers_first_result_wins_and_later_registered_are_asked_first() -> None:
    asked: list[str] = []

    class Abstains:
        @hookimpl
        def usm_bridge_classify_call(self, call: object, record: object) -> CallType | None:
            asked.append("abstains")
            return None

    class SaysIncident:
        @hookimpl
        def usm_bridge_classify_call(self, call: object, record: object) -> CallType | None:
            asked.append("incident")
            return CallType.INCIDENT

    class SaysRfc:
        @hookimpl
        def usm_bridge_classify_call(self, call: object, record: object) -> CallType | None:
            asked.append("rfc")
            return CallType.RFC

    host = PluginHost(load_entrypoints=False, plugins=[SaysRfc(), SaysIncident(), Abstains()])
    assert host.classify(call=None, record=None) is CallType.INCIDENT  # type: ignore[arg-type]
    assert asked == ["abstains", "incident"]


def test_no_mapper_is_a_mapping_error_naming_the_mapping() -> None:
    class FakeMapping:
        name = "exotic"

    host = PluginHost(load_entrypoints=False)
    with pytest.raises(MappingError, match="'exotic'"):
        host.map_inbound(FakeMapping(), None, None)  # type: ignore[arg-type]


def test_lifecycle_events_reach_plugins() -> None:
    seen: list[tuple[str, object]] = []

    class Listener:
        @hookimpl
        def usm_bridge_before_cycle(self, instance: str) -> None:
            seen.append(("before", instance))

        @hookimpl
        def usm_bridge_after_cycle(self, instance: str, summary: dict[str, int]) -> None:
            seen.append(("after", summary))

        @hookimpl
        def usm_bridge_dead_letter(
            self, instance: str, stage: str, reason: str, payload: object
        ) -> None:
            seen.append(("dead", (stage, reason, payload)))

    host = PluginHost(load_entrypoints=False, plugins=[Listener()])
    host.before_cycle("hr-mail")
    host.after_cycle("hr-mail", {"read": 3})
    host.dead_letter("hr-mail", "map", "bad status", {"id": 1})
    assert seen == [
        ("before", "hr-mail"),
        ("after", {"read": 3}),
        ("dead", ("map", "bad status", {"id": 1})),
    ]


def test_conformance_checks_and_renderers_come_from_plugins() -> None:
    class Check:
        id = "org.custom"
        title = "custom"

        def run(self, context: object) -> list[object]:
            return []

    class Renderer:
        format = "csv"

        def render(self, report: object) -> str:
            return ""

    class P:
        @hookimpl
        def usm_bridge_conformance_checks(self) -> list[object]:
            return [Check()]

        @hookimpl
        def usm_bridge_report_renderers(self) -> list[object]:
            return [Renderer()]

    host = PluginHost(load_entrypoints=False, plugins=[P()])
    assert [c.id for c in host.conformance_checks()] == ["org.custom"]
    assert list(host.report_renderers()) == ["csv"]
    host.register(
        type("Q", (), {"usm_bridge_conformance_checks": hookimpl(lambda self: [Check()])})()
    )
    with pytest.raises(PluginError, match=r"share the id 'org\.custom'"):
        host.conformance_checks()


def test_hook_tracing(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(TRACE_ENV, "1")
    caplog.set_level(logging.DEBUG, logger="usm_bridge.plugins")
    host = PluginHost(load_entrypoints=False, plugins=[DummyPlugin()])
    host.before_cycle("x")
    assert any("usm_bridge_before_cycle" in r.getMessage() for r in caplog.records)


def test_every_hook_is_documented_and_has_a_facade_method() -> None:
    import inspect

    from usm_bridge import hookspecs

    specs = [n for n, f in vars(hookspecs).items() if n.startswith("usm_bridge_") and callable(f)]
    assert len(specs) >= 9
    facade = inspect.getsource(PluginHost)
    for name in specs:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert ":param" in doc or ":returns:" in doc, f"{name} is not documented"
        assert f"hook.{name}" in facade, f"{name} has no typed method on PluginHost"
