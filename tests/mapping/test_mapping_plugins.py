"""The built-in mapping plugin, overriding it in code for an exotic unit, classifiers, and the
function behind ``usm-bridge mapping apply``."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shipped_transforms import TOOL_PLUGINS, TRANSFORMS

from usm_bridge.connector import RawRecord, RemoteDraft
from usm_bridge.errors import ConfigurationError, MappingError, MappingFileError
from usm_bridge.hookspecs import hookimpl
from usm_bridge.mapping import Mapping, MappingContext, load_mapping, loads_mapping
from usm_bridge.mapping import plugin as mapping_plugin
from usm_bridge.mapping.cli import apply_file, parse_record
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.model import Call, CallType
from usm_bridge.plugins import PluginHost

MAPPINGS = SHIPPED_MAPPINGS_DIR
EMAIL = load_mapping(MAPPINGS / "email-service-desk.yaml")
MAIL = {
    "message_id": "<m1@x.org>",
    "subject": "Printer jams",
    "from": "ann@x.org",
    "date": "Tue, 01 Mar 2016 10:00:00 +0100",
    "body": "Again.",
}
EXOTIC = loads_mapping(
    "version: 1\nname: exotic\ntool: acme\nfields:\n  title: {path: t}\n", source="exotic.yaml"
)


class ExoticUnit:
    """A unit whose records are too odd for a file: maps its own mapping in code."""

    @hookimpl
    def usm_bridge_map_inbound(
        self, mapping: Mapping, record: RawRecord, context: MappingContext
    ) -> Call | None:
        if mapping.name != "exotic":
            return None
        when = datetime.fromtimestamp(int(str(record.data["epoch"])), UTC)
        return Call(
            unit=context.unit, title=str(record.data["t"])[::-1], created=when, updated=when
        )

    @hookimpl
    def usm_bridge_map_outbound(
        self, mapping: Mapping, call: Call, context: MappingContext
    ) -> RemoteDraft | None:
        return RemoteDraft(fields={"t": call.title[::-1]}) if mapping.name == "exotic" else None


def host(*extra: object) -> PluginHost:
    return PluginHost(load_entrypoints=False, plugins=[mapping_plugin, *TOOL_PLUGINS, *extra])


def test_builtin_plugin_maps_through_the_host() -> None:
    h = host()
    context = MappingContext.from_host(h, unit="hr", instance="hr-mail")
    call = h.map_inbound(EMAIL, RawRecord(remote_id="m1", data=MAIL), context)
    assert call.title == "Printer jams" and call.unit == "hr"
    assert h.map_outbound(EMAIL, call, context).fields == {
        "subject": "Printer jams",
        "body": "Again.",
    }


def test_code_mapping_wins_for_its_mapping_and_abstains_for_others() -> None:
    h = host(ExoticUnit())
    context = MappingContext.from_host(h, unit="lab", instance="lab-acme")
    odd = RawRecord(remote_id="7", data={"t": "olleh", "epoch": 1456790400})
    call = h.map_inbound(EXOTIC, odd, context)
    assert call.title == "hello"  # the built-in would have taken "olleh" as is
    assert h.map_outbound(EXOTIC, call, context).fields == {"t": "olleh"}
    mail = h.map_inbound(EMAIL, RawRecord(remote_id="m1", data=MAIL), context)
    assert mail.title == "Printer jams"  # the plugin returned None: the built-in answered


def test_code_mapping_registered_first_still_wins() -> None:
    h = PluginHost(load_entrypoints=False, plugins=[ExoticUnit(), mapping_plugin, *TOOL_PLUGINS])
    context = MappingContext.from_host(h, unit="lab", instance="lab-acme")
    call = h.map_inbound(EXOTIC, RawRecord(remote_id="7", data={"t": "ba", "epoch": 0}), context)
    assert call.title == "ab"  # the built-in is trylast


def test_classifier_is_asked_only_for_unclassified_calls() -> None:
    asked: list[str] = []

    class Keywords:
        @hookimpl
        def usm_bridge_classify_call(self, call: Call, record: RawRecord) -> CallType | None:
            asked.append(call.title)
            return CallType.INCIDENT if "jams" in call.title else None

    h = host(Keywords())
    context = MappingContext.from_host(h, unit="hr", instance="hr-mail")
    call = h.map_inbound(EMAIL, RawRecord(remote_id="1", data=MAIL), context)
    assert call.call_type is CallType.INCIDENT
    tagged = {**MAIL, "subject": "[request] new badge"}
    assert (
        h.map_inbound(EMAIL, RawRecord(remote_id="2", data=tagged), context).call_type
        == "service_request"
    )
    other = {**MAIL, "subject": "hello"}
    assert (
        h.map_inbound(EMAIL, RawRecord(remote_id="3", data=other), context).call_type
        == "unclassified"
    )
    assert asked == ["Printer jams", "hello"]


def test_a_record_in_progress_is_classified_before_it_is_validated() -> None:
    """The classifier is asked for a record the tool already works on (as registered), and
    the call keeps the tool's status with the type the classifier gave."""
    seen: list[str] = []

    class Keywords:
        @hookimpl
        def usm_bridge_classify_call(self, call: Call, record: RawRecord) -> CallType | None:
            seen.append(call.status.value)
            return CallType.INCIDENT if "jams" in call.title else None

    h = host(Keywords())
    context = MappingContext.from_host(h, unit="hr", instance="hr-mail")
    working = RawRecord(remote_id="<m1@x.org>", data={**MAIL, "status": "in_progress"})
    call = h.map_inbound(EMAIL, working, context)
    assert (call.call_type, call.status.value) == (CallType.INCIDENT, "in_progress")
    idle = {**MAIL, "subject": "hello", "status": "waiting:customer"}
    with pytest.raises(MappingError) as refused:
        h.map_inbound(
            EMAIL, RawRecord(remote_id="<m2@x.org>", remote_key="HR-7", data=idle), context
        )
    assert str(refused.value).startswith(
        "record 'HR-7' is waiting but unclassified: USM does no work on a call before it is "
        "classified; add a classify rule"
    )
    assert seen == ["registered", "registered"]


def test_without_a_classifier_a_record_in_progress_is_refused_naming_it() -> None:
    context = MappingContext(unit="hr", instance="hr-mail", transforms=TRANSFORMS)
    working = RawRecord(remote_id="<m1@x.org>", data={**MAIL, "status": "in_progress"})
    with pytest.raises(
        MappingError, match=re.escape("record '<m1@x.org>' is in_progress but unclassified")
    ):
        mapping_plugin.usm_bridge_map_inbound(EMAIL, working, context)
    # Ended work stays readable unclassified (the report counts such calls).
    done = RawRecord(remote_id="<m1@x.org>", data={**MAIL, "status": "fulfilled"})
    assert mapping_plugin.usm_bridge_map_inbound(EMAIL, done, context).status.value == "fulfilled"


def test_without_a_classifier_the_call_stays_unclassified() -> None:
    context = MappingContext(unit="hr", instance="hr-mail", transforms=TRANSFORMS)
    call = mapping_plugin.usm_bridge_map_inbound(
        EMAIL, RawRecord(remote_id="1", data=MAIL), context
    )
    assert call.call_type is CallType.UNCLASSIFIED


def test_apply_file_like_the_cli() -> None:
    result = apply_file(
        MAPPINGS / "email-service-desk.yaml", json.dumps(MAIL), outbound=True, host=host()
    )
    assert result["call"]["title"] == "Printer jams"
    assert result["call"]["source"]["remote_id"] == "<m1@x.org>"
    assert result["draft"]["fields"] == {"subject": "Printer jams", "body": "Again."}
    envelope = json.dumps({"remote_id": "x1", "data": MAIL})
    assert (
        apply_file(MAPPINGS / "email-service-desk.yaml", envelope, host=host())["call"]["source"][
            "remote_id"
        ]
        == "x1"
    )


def test_apply_file_errors_are_clean(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        parse_record("{nope")
    with pytest.raises(ConfigurationError, match="JSON object"):
        parse_record("[1, 2]")
    with pytest.raises(MappingFileError, match="not found"):
        apply_file(tmp_path / "none.yaml", "{}", host=host())
    bad_date = json.dumps({**MAIL, "date": "whenever"})
    with pytest.raises(MappingError, match="field created: transform 'rfc2822_datetime'"):
        apply_file(MAPPINGS / "email-service-desk.yaml", bad_date, host=host())
