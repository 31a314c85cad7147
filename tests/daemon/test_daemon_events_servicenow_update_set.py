"""The update set the docs ship (docs/servicenow-events-update-set.xml) sends what the
receiver checks: the same signature header and scheme, the same delivery id, the same body
fields in the same order, through the REST message it ships, configured by the properties
the docs name. Parsed as ServiceNow does: an ``unload`` of ``sys_update_xml`` rows, each
with its record as escaped XML in ``payload``."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

from usm_bridge.events.kinds import SERVICENOW_EVENTS
from usm_bridge.events.servicenow import BODY_FIELDS, DELIVERY_HEADER, SIGNATURE_HEADER

DOCS = Path(__file__).resolve().parents[2] / "docs"
UPDATE_SET = DOCS / "servicenow-events-update-set.xml"
PAGE = DOCS / "servicenow-events.md"


@cache
def records() -> dict[str, list[ET.Element]]:
    """Table -> the records the update set installs."""
    root = ET.parse(UPDATE_SET).getroot()
    assert root.tag == "unload"
    assert root.find("sys_remote_update_set/state") is not None
    found: dict[str, list[ET.Element]] = {}
    for row in root.iter("sys_update_xml"):
        assert row.get("action") == "INSERT_OR_UPDATE"
        payload = row.findtext("payload")
        assert payload, "a sys_update_xml row without its payload"
        update = ET.fromstring(payload.encode())
        assert update.tag == "record_update"
        (record,) = list(update)
        assert record.tag == update.get("table")
        found.setdefault(record.tag, []).append(record)
    return found


def rule() -> ET.Element:
    (found,) = records()["sys_script"]
    return found


def script() -> str:
    return rule().findtext("script") or ""


def test_the_rule_runs_async_after_insert_and_update_of_task_records() -> None:
    found = rule()
    assert found.findtext("collection") == "task"  # incident, sc_req_item ... extend task
    assert found.findtext("when") == "async"  # the user's transaction never waits
    flags = {
        name: found.findtext(name)
        for name in ("action_insert", "action_update", "action_delete", "action_query", "active")
    }
    assert flags == {
        "action_insert": "true",
        "action_update": "true",
        "action_delete": "false",
        "action_query": "false",
        "active": "true",
    }


def test_the_rule_signs_the_body_as_the_receiver_checks_it() -> None:
    text = script()
    scheme = SERVICENOW_EVENTS.scheme
    assert scheme.header == SIGNATURE_HEADER and scheme.encoding == "base64"
    assert f"setRequestHeader('{SIGNATURE_HEADER}', 'sha256=' + mac)" in text
    # generateMac keyed with the secret in Base64, answering Base64: the receiver's scheme.
    assert re.search(
        r"var mac = new GlideCertificateEncryption\(\)\.generateMac\(\s*"
        r"GlideStringUtil\.base64Encode\(secret\), 'HmacSHA256', body\);",
        text,
    )
    assert "request.setRequestBody(body);" in text  # the very string that was signed


def test_the_rule_sends_the_delivery_id_and_the_body_fields_the_receiver_expects() -> None:
    text = script()
    assert f"setRequestHeader('{DELIVERY_HEADER}', sysId + ':' + modCount)" in text
    assert "var sysId = current.getUniqueValue();" in text
    assert "var modCount = current.getValue('sys_mod_count');" in text
    literal = re.search(r"JSON\.stringify\(\{(.*?)\}\)", text, re.DOTALL)
    assert literal is not None
    keys = re.findall(r"^\s*(\w+):", literal.group(1), re.MULTILINE)
    assert tuple(keys) == BODY_FIELDS  # a hint only: which record, which version, when


def test_the_rule_sends_through_the_rest_message_the_update_set_ships() -> None:
    (message,) = records()["sys_rest_message"]
    (function,) = records()["sys_rest_message_fn"]
    name = message.findtext("name")
    assert f"new sn_ws.RESTMessageV2('{name}', '{function.findtext('function_name')}')" in (
        script()
    )
    assert function.findtext("http_method") == "post"
    assert function.findtext("rest_message") == message.findtext("sys_id")


def test_the_condition_lets_through_the_tables_of_the_property_only() -> None:
    condition = rule().findtext("condition") or ""
    # Checked before the async job is queued: other task tables cost no job.
    assert "gs.getProperty('usm_bridge.events.tables', 'incident')" in condition
    assert ".indexOf(',' + current.getRecordClassName() + ',') >= 0" in condition


def test_the_properties_are_shipped_but_never_the_secret() -> None:
    text = script() + (rule().findtext("condition") or "")
    named = set(re.findall(r"gs\.getProperty\('([\w.]+)'", text))
    assert named == {
        "usm_bridge.events.endpoint",
        "usm_bridge.events.tables",
        "usm_bridge.events.secret",
    }
    shipped = {p.findtext("name"): p for p in records()["sys_properties"]}
    assert set(shipped) == named - {"usm_bridge.events.secret"}  # made by hand, see the docs
    assert shipped["usm_bridge.events.endpoint"].findtext("value") in ("", None)
    for element in ET.parse(UPDATE_SET).getroot().iter():
        assert "password" not in element.tag


def test_the_docs_page_names_what_the_receiver_expects() -> None:
    page = PAGE.read_text(encoding="utf-8")
    for name in (SIGNATURE_HEADER, DELIVERY_HEADER, "usm_bridge.events.secret",
                 "usm_bridge.events.endpoint", "usm_bridge.events.tables", "password2",
                 UPDATE_SET.name, "/events/servicenow/", *BODY_FIELDS):  # fmt: skip
        assert name in page, name
