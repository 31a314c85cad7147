"""Each tool's own service field maps onto a registered service, and back.

ServiceNow names a service twice (the offering, else the business service: ``fallback``), JSM
by the request type, a mailbox by the address a mail was sent to. The JSM and e-mail tables are
the examples the shipped files show in comments (site-specific values): enabled here, so the
example a file shows is one that works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from usm_bridge.connector import RawRecord
from usm_bridge.errors import MappingError, MappingFileError
from usm_bridge.mapping import (
    Mapping,
    MappingContext,
    apply_inbound,
    apply_outbound,
    loads_mapping,
    unmapped_values,
)
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR


def _shipped(name: str) -> str:
    return (SHIPPED_MAPPINGS_DIR / f"{name}.yaml").read_text(encoding="utf-8")


def _commented_service(text: str) -> dict[str, Any]:
    """The ``service:`` example a shipped file shows in comments under ``# service:``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  # service:"))
    example: list[str] = []
    for line in lines[start + 1 :]:
        if not line.startswith("  #"):
            break
        if line.startswith("  #   "):
            example.append(line[len("  #   ") :])
        elif example:
            break  # the prose after the example
    loaded = yaml.safe_load("\n".join(example))
    assert isinstance(loaded, dict)
    return loaded


def _with_service(name: str, service: dict[str, Any]) -> Mapping:
    data = yaml.safe_load(_shipped(name))
    data["fields"]["service"] = service
    return loads_mapping(yaml.safe_dump(data, sort_keys=False), source=f"{name}+service")


def _snow_incident(**fields: Any) -> RawRecord:
    data = {
        "sys_id": "inc1",
        "number": "INC0010001",
        "short_description": "Laptop will not boot",
        "state": "2",
        "impact": "2",
        "urgency": "2",
        "priority": "3",
        "opened_at": "2026-01-22 14:28:24",
        "sys_updated_on": "2026-01-22 15:00:00",
        **fields,
    }
    return RawRecord(remote_id="inc1", data=data)


SNOW_TABLE = {
    "path": "service_offering",
    "fallback": ["business_service"],
    "transform": "servicenow_value",
    "values": {"off-laptops": "laptops", "bs-devices": "laptops", "bs-network": "network"},
    "write": {"laptops": "off-laptops"},
}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # the offering names the service more precisely: it wins over the business service
        (
            {
                "service_offering": {"link": "x", "value": "off-laptops"},
                "business_service": {"link": "x", "value": "bs-network"},
            },
            "laptops",
        ),
        # no offering (empty, as the Table API sends it): the business service
        ({"service_offering": "", "business_service": "bs-network"}, "network"),
        # an instance without offerings at all
        ({"business_service": {"link": "x", "value": "bs-devices"}}, "laptops"),
        # neither: no service
        ({"business_service": ""}, None),
    ],
    ids=["offering", "business-service", "no-offerings", "none"],
)
def test_servicenow_service_from_offering_else_business_service(
    context: MappingContext, fields: dict[str, Any], expected: str | None
) -> None:
    mapping = _with_service("servicenow-incident", SNOW_TABLE)
    assert apply_inbound(mapping, _snow_incident(**fields), context).service == expected


def test_servicenow_service_round_trip_writes_the_offering(context: MappingContext) -> None:
    mapping = _with_service("servicenow-incident", SNOW_TABLE)
    call = apply_inbound(mapping, _snow_incident(business_service="bs-devices"), context)
    draft = apply_outbound(mapping, call, context)
    # written is the path only (the offering), the value the write table chose
    assert draft.fields["service_offering"] == "off-laptops"
    assert "business_service" not in draft.fields
    again = apply_inbound(mapping, _snow_incident(**draft.fields), context)
    assert again.service == call.service == "laptops"


def test_servicenow_unknown_service_names_the_path_it_was_read_from(
    context: MappingContext,
) -> None:
    mapping = _with_service("servicenow-incident", SNOW_TABLE)
    record = _snow_incident(service_offering="", business_service="bs-unknown")
    with pytest.raises(MappingError, match=r"value 'bs-unknown' at path 'business_service'"):
        apply_inbound(mapping, record, context)
    assert unmapped_values(mapping, record, context) == {"service": "bs-unknown"}


def test_the_shipped_incident_mapping_reads_the_offering_else_the_business_service(
    context: MappingContext,
) -> None:
    mapping = loads_mapping(_shipped("servicenow-incident"))
    both = _snow_incident(service_offering="off-1", business_service="bs-1")
    assert apply_inbound(mapping, both, context).service == "off-1"
    assert apply_inbound(mapping, _snow_incident(business_service="bs-1"), context).service == (
        "bs-1"
    )


def _jsm_issue(request_type: str | None) -> RawRecord:
    fields: dict[str, Any] = {
        "summary": "A desk for Maria",
        "status": {"name": "Waiting for support", "statusCategory": {"key": "new"}},
        "issuetype": {"name": "[System] Service request"},
        "created": "2026-01-17T12:34:00.000+0000",
        "updated": "2026-01-17T13:00:00.000+0000",
    }
    if request_type is not None:
        fields["request_type"] = {"requestType": {"name": request_type}}
    return RawRecord(remote_id="10001", remote_key="FAC-1", data={"id": "10001", "fields": fields})


@pytest.mark.parametrize(
    ("request_type", "expected"),
    [
        ("Request a desk", "workplace"),
        ("Report a broken chair", "workplace"),
        ("Something new", None),  # on_unknown: default: no service, reported by the report
        (None, None),
    ],
)
def test_jsm_request_type_maps_to_a_service(
    context: MappingContext, request_type: str | None, expected: str | None
) -> None:
    example = _commented_service(_shipped("jira-service-management"))
    mapping = _with_service("jira-service-management", example)
    call = apply_inbound(mapping, _jsm_issue(request_type), context)
    assert call.service == expected
    # read only: the request type is never written (the tool's own)
    written = apply_outbound(mapping, call, context).fields.get("fields", {})
    assert isinstance(written, dict) and "request_type" not in written


def _mail(to: list[str]) -> RawRecord:
    data = {
        "message_id": "<a1@x.org>",
        "subject": "Onboarding",
        "from": "hannah@example.com",
        "to": to,
        "date": "Tue, 01 Mar 2026 10:00:00 +0100",
        "body": "Maria starts Monday.",
    }
    return RawRecord(remote_id="<a1@x.org>", data=data)


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        (["Service desk <servicedesk@HR.example>"], "people"),
        (["onboarding@hr.example", "servicedesk@hr.example"], "onboarding"),
        (["somebody@else.example"], None),
        ([], None),
    ],
    ids=["display-name-and-case", "first-address-counts", "unknown", "no-to"],
)
def test_mailbox_address_maps_to_a_service(
    context: MappingContext, to: list[str], expected: str | None
) -> None:
    example = _commented_service(_shipped("email-service-desk"))
    mapping = _with_service("email-service-desk", example)
    call = apply_inbound(mapping, _mail(to), context)
    assert call.service == expected
    assert "to" not in apply_outbound(mapping, call, context).fields


def test_a_fallback_that_is_not_a_path_is_refused_with_its_line() -> None:
    data = yaml.safe_load(_shipped("servicenow-incident"))
    data["fields"]["service"]["fallback"] = ["business service"]
    text = yaml.safe_dump(data, sort_keys=False)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "business service" in ln)
    with pytest.raises(MappingFileError) as caught:
        loads_mapping(text, source="bad.yaml")
    assert f"bad.yaml:{line}: key fields.service.fallback.0" in str(caught.value)
    assert "is not a dotted path" in str(caught.value)


def test_commented_examples_exist_in_the_shipped_files(tmp_path: Path) -> None:
    # The tests above enable them; a file that loses its example would silently skip them.
    for name in ("jira-service-management", "email-service-desk"):
        assert _commented_service(_shipped(name))["read_only"] is True
