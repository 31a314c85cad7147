"""The registry examples users start from: the starter's commented services and agreements, and
the demo enterprise's, are accepted as written and mean what their comments say."""

from __future__ import annotations

from pathlib import Path

import pytest

from usm_bridge.agreements import Agreements
from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.model import Call
from usm_bridge.plugins import PluginHost
from usm_bridge.starter import render_starter

ENTERPRISE = Path(SHIPPED_MAPPINGS_DIR).parent / "enterprise" / "usm-bridge.toml"
DEMO_ENV = {
    "USM_DEMO_MAIL": "/tmp/mail",
    "USM_DEMO_SMTP_PORT": "2525",
    "USM_DEMO_JIRA_URL": "http://127.0.0.1:8081",
    "USM_DEMO_JIRA_TOKEN": "sim-cloud-api-token-0123456789",
    "USM_DEMO_SNOW_URL": "http://127.0.0.1:8082",
    "USM_DEMO_SNOW_USER": "admin",
    "USM_DEMO_SNOW_PASSWORD": "pw",
}


def _uncommented(block: str) -> str:
    lines = []
    for line in block.splitlines():
        if line.startswith("## "):
            continue
        lines.append(line[2:] if line.startswith("# ") else "" if line == "#" else line)
    return "\n".join(lines)


def test_the_starters_services_and_agreements_example_is_a_valid_registry(
    tmp_path: Path,
) -> None:
    text = render_starter(PluginHost()).text
    start = text.index("# [services.")
    block = text[start : text.index("\n\n", start)]
    units = "[units.hr]\n[units.facilities]\n"
    path = tmp_path / "usm-bridge.toml"
    path.write_text(units + _uncommented(block) + "\n", encoding="utf-8")
    config = load_config(path)
    assert set(config.services) == {"workplace"}
    (agreement,) = config.agreements.values()
    assert (agreement.customer, agreement.provider, agreement.services) == (
        "hr",
        "facilities",
        ["workplace"],
    )
    assert agreement.implicit_confirmation == 3 * 86400
    assert "by-service" in text  # the routes part explains choosing by service


@pytest.fixture
def enterprise(monkeypatch: pytest.MonkeyPatch) -> BridgeConfig:
    for name, value in DEMO_ENV.items():
        monkeypatch.setenv(name, value)
    return load_config(ENTERPRISE)


def test_the_demo_enterprise_registers_a_service_per_provider_and_an_agreement_per_link(
    enterprise: BridgeConfig,
) -> None:
    registry = Agreements.of(enterprise)
    assert registry.provider_of("workplace") == "facilities"
    assert registry.provider_of("laptops") == "it"
    # each route's pair has exactly one agreement, which covers the service asked of it
    for route, service in (("hr-to-facilities", "workplace"), ("facilities-to-it", "laptops")):
        (config,) = [r for r in enterprise.routes if r.name == route]
        (agreement,) = registry.between(provider=config.to_unit, customer=config.from_unit)
        assert agreement.services == [service]
        assert agreement.implicit_confirmation is not None
        # a target for every priority class of the matrix that applies
        assert set(agreement.targets) == set(enterprise.priority.classes)


def test_a_laptop_item_at_it_is_under_the_facilities_agreement(enterprise: BridgeConfig) -> None:
    registry = Agreements.of(enterprise)
    item = Call.model_validate(
        {"unit": "it", "customer_unit": "facilities", "service": "laptops", "title": "Laptop",
         "created": "2026-03-02T09:00:00Z", "updated": "2026-03-02T09:00:00Z"}
    )  # fmt: skip
    agreement = registry.agreement_of(item)
    assert agreement is not None and agreement.id == "facilities-it"
    assert registry.unknown_references(item) == []
    targets = registry.targets_for(item.model_copy(update={"priority": "high"}))
    assert targets is not None and targets.fulfilment == 3 * 86400
