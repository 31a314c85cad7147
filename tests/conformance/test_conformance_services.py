"""The report against the registry: every call naming an unregistered service or agreement is a
finding with its reason, an agreement the registry finds counts as named, and each priority is
judged by the matrix of its agreement (else unit, else the default), which the finding names."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from registry_toml import REGISTRY, matrix_toml

from usm_bridge.agreements import Agreements
from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.conformance.api import CheckOutcome
from usm_bridge.conformance.checks import PriorityCheck, ServiceAgreementCheck
from usm_bridge.conformance.context import ReportContext
from usm_bridge.conformance.engine import run_checks
from usm_bridge.conformance.period import Period
from usm_bridge.model import Call
from usm_bridge.store import StoredCall

AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

CONFIG = (
    "[units.hr]\n[units.facilities]\n[units.it]\n"
    + matrix_toml("units.it", ("u1", "u2", "u3"))
    + REGISTRY
)


def _config(tmp_path: Path) -> BridgeConfig:
    path = tmp_path / "usm-bridge.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return load_config(path)


def _stored(index: int, **fields: Any) -> StoredCall:
    call = Call.model_validate(
        {"title": f"call {index}", "call_type": "service_request", "created": AT, "updated": AT,
         "source": {"instance": "tool", "remote_id": f"r{index}", "remote_key": f"K-{index}"},
         **fields}
    )  # fmt: skip
    return StoredCall(call=call, version=1, content_hash="h", created_at=AT, updated_at=AT)


def _context(config: BridgeConfig, calls: list[StoredCall]) -> ReportContext:
    return ReportContext(
        period=Period(), now=AT, units=dict(config.units), instances={}, routes=[],
        priority=config.priority, calls=calls, audit=[], dead_letters=[], chain_links=[],
        identities=[], agreements=Agreements.of(config),
    )  # fmt: skip


def _by_unit(outcomes: list[CheckOutcome]) -> dict[str | None, CheckOutcome]:
    return {outcome.unit: outcome for outcome in outcomes}


def test_every_call_naming_an_unregistered_service_or_agreement_is_a_finding(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    calls = [
        # fine: facilities' service, and the agreement the registry finds for the pair
        _stored(1, unit="facilities", service="workplace", customer_unit="hr"),
        _stored(2, unit="facilities", service="espresso", customer_unit="hr"),
        _stored(3, unit="facilities", service="laptops", customer_unit="hr"),
        _stored(4, unit="facilities", service="workplace", agreement="hr-facilities-2024"),
        _stored(5, unit="facilities", service="workplace", agreement="facilities-it"),
        # names no agreement and the registry finds none (no customer unit)
        _stored(6, unit="facilities", service="workplace"),
    ]
    outcome = _by_unit(run_checks(_context(config, calls), [ServiceAgreementCheck()]))["facilities"]
    details = {e.remote_key: e.detail for e in outcome.evidence}
    assert details == {
        # hr-facilities covers workplace only: these find no agreement either
        "K-2": "no agreement, service 'espresso' is not registered",
        "K-3": "no agreement, service 'laptops' is provided by 'it', not by 'facilities'",
        "K-4": "agreement 'hr-facilities-2024' is not registered",
        "K-5": "agreement 'facilities-it' is with provider 'it', not 'facilities'",
        "K-6": "no agreement",
    }
    assert outcome.population is not None and outcome.population.size == 6
    assert outcome.metrics["unknown_references"] == 4
    # the registry's agreement counts as named for call 1 (and it is not written anywhere)
    assert outcome.metrics["share_with_agreement"] == 50.0  # calls 1 (found), 4 and 5
    assert calls[0].call.agreement is None


def test_a_call_is_judged_by_its_agreements_matrix_and_the_finding_names_it(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    calls = [
        # it under facilities-it: its own classes p1..p3; medium x low gives p3
        _stored(1, unit="it", customer_unit="facilities", service="laptops",
                impact="medium", urgency="low", priority="p3"),
        _stored(2, unit="it", customer_unit="facilities", service="laptops",
                impact="medium", urgency="low", priority="u3"),
        # it without an agreement (none with hr): the unit's matrix
        _stored(3, unit="it", customer_unit="hr", service="network",
                impact="high", urgency="high", priority="u1"),
        _stored(4, unit="it", service="network", impact="high", urgency="high", priority="p1"),
        # facilities: no matrix of its own or its agreement's: the default
        _stored(5, unit="facilities", customer_unit="hr", service="workplace",
                impact="low", urgency="low", priority="low"),
    ]  # fmt: skip
    outcomes = _by_unit(run_checks(_context(config, calls), [PriorityCheck()]))
    it = {e.remote_key: e.detail for e in outcomes["it"].evidence}
    assert it == {
        "K-2": "priority u3, but impact medium x urgency low gives p3 "
        "(matrix of agreement 'facilities-it')",
        "K-4": "priority p1, but impact high x urgency high gives u1 (matrix of unit 'it')",
    }
    assert outcomes["it"].population is not None and outcomes["it"].population.size == 4
    facilities = {e.remote_key: e.detail for e in outcomes["facilities"].evidence}
    assert facilities == {
        "K-5": "priority low, but impact low x urgency low gives planning "
        "(matrix of the default [priority])"
    }
