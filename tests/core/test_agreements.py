"""Services and agreements: registered in the config, refused when inconsistent, and what they
decide for a call (its agreement, priority matrix, targets, implicit confirmation)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from registry_toml import REGISTRY

from usm_bridge.agreements import Agreements
from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.errors import ConfigurationError
from usm_bridge.model import Call, Impact, Urgency

UNITS = """\
[units.hr]
[units.facilities]
[units.it]
"""

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def load(tmp_path: Path, text: str) -> BridgeConfig:
    path = tmp_path / "usm-bridge.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ={})


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def call(**fields: object) -> Call:
    return Call.model_validate({"title": "t", "created": NOW, "updated": NOW, **fields})


def test_registered_services_and_agreements_are_loaded_with_their_names(tmp_path: Path) -> None:
    config = load(tmp_path, UNITS + REGISTRY)
    assert set(config.services) == {"workplace", "laptops", "network"}
    assert config.services["workplace"].id == "workplace"
    assert config.services["workplace"].provider == "facilities"
    agreement = config.agreements["hr-facilities"]
    assert (agreement.id, agreement.provider, agreement.customer) == (
        "hr-facilities",
        "facilities",
        "hr",
    )
    assert agreement.implicit_confirmation == 3 * 86_400
    assert agreement.targets["high"].response == 3600
    assert agreement.targets["low"].response is None


def test_a_call_finds_its_agreement_by_name_or_by_its_parties_and_service(tmp_path: Path) -> None:
    registry = Agreements.of(load(tmp_path, UNITS + REGISTRY))
    named = call(unit="facilities", agreement="hr-facilities")
    assert registry.agreement_of(named) is not None
    by_parties = call(unit="facilities", customer_unit="hr", service="workplace")
    found = registry.agreement_of(by_parties)
    assert found is not None and found.id == "hr-facilities"
    # A blanket agreement (no services listed) covers every service of its provider.
    blanket = registry.agreement_of(call(unit="it", customer_unit="facilities", service="network"))
    assert blanket is not None and blanket.id == "facilities-it"
    # No agreement between these parties; a service the agreement does not cover.
    assert registry.agreement_of(call(unit="it", customer_unit="hr")) is None
    assert registry.agreement_of(call(unit="facilities", customer_unit="hr", service="x")) is None
    assert registry.agreement_of(call(unit="it")) is None


def test_the_priority_matrix_is_the_agreements_then_the_units_then_the_default(
    tmp_path: Path,
) -> None:
    text = UNITS.replace(
        "[units.hr]\n",
        '[units.hr]\npriority.classes = ["urgent", "normal"]\n'
        + "".join(
            f'priority.table.{i} = {{ high = "urgent", medium = "normal", low = "normal" }}\n'
            for i in ("high", "medium", "low", "nil")
        ),
    )
    registry = Agreements.of(load(tmp_path, text + REGISTRY))
    supplier = call(unit="it", customer_unit="facilities", impact="high", urgency="low")
    assert registry.matrix_for(supplier).derive(Impact.HIGH, Urgency.LOW) == "p2"
    hr_call = call(unit="hr", impact="high", urgency="low")
    assert registry.matrix_for(hr_call).derive(Impact.HIGH, Urgency.LOW) == "normal"
    plain = call(unit="facilities", impact="high", urgency="low")
    assert registry.matrix_for(plain).derive(Impact.HIGH, Urgency.LOW) == "moderate"


def test_targets_follow_the_stated_or_derived_priority(tmp_path: Path) -> None:
    registry = Agreements.of(load(tmp_path, UNITS + REGISTRY))
    derived = call(unit="it", customer_unit="facilities", impact="high", urgency="high")
    targets = registry.targets_for(derived)
    assert targets is not None and targets.fulfilment == 4 * 3600
    stated = call(unit="facilities", customer_unit="hr", service="workplace", priority="low")
    targets = registry.targets_for(stated)
    assert targets is not None and targets.fulfilment == 10 * 86_400
    assert registry.targets_for(call(unit="facilities", agreement="hr-facilities")) is None


def test_implicit_confirmation_only_where_the_agreement_allows_it(tmp_path: Path) -> None:
    registry = Agreements.of(load(tmp_path, UNITS + REGISTRY))
    allowed = call(unit="facilities", agreement="hr-facilities")
    assert registry.implicit_confirmation_after(allowed) == timedelta(days=3)
    assert registry.implicit_confirmation_after(call(unit="it", customer_unit="facilities")) is None
    assert registry.implicit_confirmation_after(call(unit="hr")) is None


def test_unknown_or_misplaced_references_are_reported(tmp_path: Path) -> None:
    registry = Agreements.of(load(tmp_path, UNITS + REGISTRY))
    assert registry.unknown_references(call(unit="it", service="laptops")) == []
    assert registry.unknown_references(call(unit="it", service="printers", agreement="nope")) == [
        "service 'printers' is not registered",
        "agreement 'nope' is not registered",
    ]
    assert registry.unknown_references(
        call(unit="hr", service="laptops", agreement="facilities-it")
    ) == [
        "service 'laptops' is provided by 'it', not by 'hr'",
        "agreement 'facilities-it' is with provider 'it', not 'hr'",
    ]
    # Nothing registered at all: nothing to report against.
    empty = Agreements.of(load(tmp_path, UNITS))
    assert empty.unknown_references(call(unit="it", service="x", agreement="y")) == []


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (('provider = "facilities"\ntitle', 'provider = "legal"\ntitle'), "services.workplace",
         "provider unit 'legal', which is not defined"),
        (('services = ["workplace"]', 'services = ["printers"]'),
         "agreements.hr-facilities.services.0", "service 'printers' is not registered"),
        (('services = ["workplace"]', 'services = ["laptops"]'),
         "agreements.hr-facilities.services.0", "provided by 'it', not by this agreement's"),
        (("targets.low = { fulfilment", "targets.urgent = { fulfilment"),
         "agreements.hr-facilities.targets.urgent", "not a priority class"),
        (('targets.high = { response = "1h"', 'targets.high = { response = "2d"'),
         "agreements.hr-facilities.targets.high", "response target is longer"),
        (('customer = "acme"', 'customer = "it"'), "agreements.acme-it-laptops.customer",
         "customer and provider are the same unit"),
        (('implicit_confirmation = "3d"', 'implicit_confirmation = "400d"'),
         "agreements.hr-facilities.implicit_confirmation", "between 1 s and 366 days"),
    ],
)  # fmt: skip
def test_inconsistent_registries_are_refused_naming_the_key(
    tmp_path: Path, change: tuple[str, str], key: str, words: str
) -> None:
    assert change[0] in REGISTRY
    message = refusal(tmp_path, UNITS + REGISTRY.replace(*change, 1))
    assert f"key {key}" in message, message
    assert words in message, message


def test_two_agreements_covering_one_service_for_one_pair_are_refused(tmp_path: Path) -> None:
    extra = (
        '\n[agreements.again]\nprovider = "facilities"\ncustomer = "hr"\nservices = ["workplace"]\n'
    )
    message = refusal(tmp_path, UNITS + REGISTRY + extra)
    assert "'hr-facilities' and 'again' both cover service 'workplace'" in message
    assert "key agreements.again" in message
