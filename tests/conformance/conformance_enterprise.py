"""A three-unit enterprise whose store holds known defects, for the conformance tests.

:func:`make_enterprise` writes the config, the mapping files and a saved discovery into a folder,
fills the store at ``store_url`` (SQLite and PostgreSQL) and returns an :class:`Enterprise`
that knows every call by its tool key, so tests can say exactly which calls a check must find.

Units: hr (a mailbox whose mapping is poor), facilities (a Jira whose mapping is complete),
it (a ServiceNow-like tool without a saved discovery). Routes: hr -> facilities, hr -> it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from usm_bridge.config import BridgeConfig, load_config
from usm_bridge.conformance.api import CheckOutcome
from usm_bridge.conformance.context import build_context, discover_vocabularies
from usm_bridge.conformance.context import load_discovery as load_saved
from usm_bridge.conformance.period import Period
from usm_bridge.model import Call, CallType, ChainLinks, Impact, SourceRef, Status, Urgency
from usm_bridge.plugins import PluginHost
from usm_bridge.store import Store

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
#: The period the exact-defect tests use: it leaves out the call of 2025 (HR-OLD).
LAST_30_DAYS = Period(since=NOW - timedelta(days=30), until=None, label="last 30d")

HOSTILE_TITLE = (
    "<script>document.body.setAttribute('data-pwned','1')</script>"
    "<img src=x onerror=\"document.title='pwned'\">"
)
HOSTILE_URL = "javascript:document.title='pwned'"

HR_MAPPING = """\
version: 1
tool: testtool
name: hr-mailbox
fields:
  title: {path: subject, required: true}
  description: {path: body}
  status:
    path: status
    values: {new: registered, open: in_progress, done: closed}
"""

FACILITIES_MAPPING = """\
version: 1
tool: testtool
name: facilities-jira
fields:
  title: {path: summary, required: true}
  description: {path: description}
  status:
    path: status
    values:
      New: registered
      Triaged: classified
      In Progress: in_progress
      Waiting for customer: waiting:customer
      Waiting for vendor: waiting:supplier
      Waiting for change: waiting:secondary_process
      Resolved: fulfilled
      Confirmed: confirmed
      Closed: closed
      Cancelled: cancelled
  service: {path: service}
  impact: {path: impact, values: {"1": high, "2": medium, "3": low, "4": nil}}
  urgency: {path: urgency, values: {"1": high, "2": medium, "3": low}}
  created: {path: created, read_only: true}
  updated: {path: updated, read_only: true}
people:
  requester: {email: {path: reporter}}
classify:
  rules:
    - {type: incident, when: {path: type, in: [Incident]}}
    - {type: service_request, when: {path: type, equals: Service request}}
  default: service_request
"""

IT_MAPPING = """\
version: 1
tool: testtool
name: it-servicenow
fields:
  title: {path: short_description, required: true}
  description: {path: description}
  status:
    path: state
    values: {"1": registered, "2": in_progress, "3": "waiting:customer", "6": fulfilled,
             "7": closed, "8": cancelled}
  impact: {path: impact, values: {"1": high, "2": medium, "3": low}}
  urgency: {path: urgency, values: {"1": high, "2": medium, "3": low}}
  created: {path: opened_at, read_only: true}
  updated: {path: sys_updated_on, read_only: true}
people:
  requester: {ref: {path: caller_id}}
classify:
  default: incident
"""

DISCOVERY = {
    "hr-mail": {
        "statuses": [{"value": "new"}, {"value": "open"}, {"value": "done"}, {"value": "pending"}],
        "types": [{"value": "Question"}],
    },
    "fac-jira": {
        "statuses": [
            {"value": "10", "label": "New"},
            {"value": "11", "label": "In Progress"},
            {"value": "12", "label": "Closed"},
        ],
        "types": [{"value": "Incident"}, {"value": "Service request"}, {"value": "Task"}],
        "other": {"impact": [{"value": "1"}, {"value": "2"}, {"value": "3"}, {"value": "4"}]},
    },
}

CONFIG = """\
[store]
url = "{url}"

[units.hr]
title = "Human Resources"

[units.facilities]
title = "Facilities"

[units.it]
title = "IT"

[instances.hr-mail]
unit = "hr"
kind = "testtool"
mapping = "mappings/hr.yaml"

[instances.fac-jira]
unit = "facilities"
kind = "testtool"
mapping = "mappings/facilities.yaml"

[instances.it-snow]
unit = "it"
kind = "testtool"
mapping = "mappings/it.yaml"

[[routes]]
from = "hr"
to = "facilities"
when = {{ call_type = ["service_request", "risk"] }}
# A risk is no support request: what HR asks Facilities for is a service request (check refuses
# a route whose supplier call would inherit the type risk).
call_type = "service_request"

[[routes]]
from = "hr"
to = "it"
when = {{ call_type = ["incident"] }}
"""

INSTANCE = {"hr": "hr-mail", "facilities": "fac-jira", "it": "it-snow"}


@dataclass
class Enterprise:
    """The enterprise under test: its config, its store, and its calls by tool key."""

    root: Path
    config_path: Path
    config: BridgeConfig
    store: Store
    discovery_path: Path
    ids: dict[str, str] = field(default_factory=dict)

    def report_command(self, *args: str) -> tuple[int, str, str]:
        """``usm-bridge report conformance --offline ARGS`` on this enterprise's config:
        (exit code, stdout, stderr)."""
        from click.testing import CliRunner

        from usm_bridge.cli import cli

        result = CliRunner().invoke(
            cli, ["report", "conformance", "-c", str(self.config_path), "--offline", *args]
        )
        return result.exit_code, result.stdout, result.stderr

    def key_of(self, call_id: str | None) -> str | None:
        return next((key for key, cid in self.ids.items() if cid == call_id), None)

    def context(self, period: Period = LAST_30_DAYS, host: PluginHost | None = None) -> Any:
        host = host or PluginHost()
        vocabularies = discover_vocabularies(
            self.config, host, load_saved(self.discovery_path), live=False
        )
        return build_context(
            self.store, self.config, period, host=host, vocabularies=vocabularies, now=NOW
        )


def findings(outcomes: list[CheckOutcome], enterprise: Enterprise) -> dict[str, set[str]]:
    """``{"check@unit": {tool keys or details}}`` for every outcome that found something."""
    found: dict[str, set[str]] = {}
    for outcome in outcomes:
        if outcome.verdict in ("pass", "n/a"):  # n/a: nothing tested, nothing found
            continue
        key = f"{outcome.check_id}@{outcome.unit}"
        found.setdefault(key, set()).update(
            item.remote_key if item.call_id and item.remote_key else item.detail
            for item in outcome.evidence
        )
    return found


def _call(unit: str, key: str, **fields: Any) -> Call:
    values: dict[str, Any] = {
        "unit": unit,
        "title": f"{key} needs attention",
        "source": SourceRef(
            instance=INSTANCE[unit],
            remote_id=f"id-{key}",
            remote_key=key,
            url=f"https://{unit}.example.com/browse/{key}",
        ),
        "call_type": CallType.SERVICE_REQUEST,
        "status": Status.IN_PROGRESS,
        "service": f"{unit}-service",
        "created": NOW - timedelta(days=3),
        "updated": NOW - timedelta(days=1),
    }
    values.update(fields)
    return Call(**values)


def _fill(store: Store, ids: dict[str, str]) -> None:
    def put(call: Call) -> Call:
        with store.begin() as tx:
            tx.upsert_call(call, instance=call.source.instance if call.source else None)
        if call.source and call.source.remote_key:
            ids[call.source.remote_key] = call.id
        return call

    # --- hr: two unclassified calls (one too old), two without a service, one hostile title
    put(
        _call(
            "hr",
            "HR-1",
            call_type=CallType.UNCLASSIFIED,
            status=Status.REGISTERED,
            created=NOW - timedelta(days=10),
        )
    )
    put(
        _call(
            "hr",
            "HR-2",
            call_type=CallType.UNCLASSIFIED,
            status=Status.REGISTERED,
            created=NOW - timedelta(hours=2),
            updated=NOW - timedelta(hours=1),
        )
    )
    put(_call("hr", "HR-3", service=None))
    hr4 = put(_call("hr", "HR-4", status=Status.WAITING, waiting_on="supplier"))
    hr5 = _call("hr", "HR-5", service=None, title=HOSTILE_TITLE)
    hr5 = hr5.model_copy(
        update={
            "source": SourceRef(
                instance="hr-mail", remote_id="id-HR-5", remote_key="HR-5", url=HOSTILE_URL
            )
        }
    )
    put(hr5)
    hr6 = put(
        _call(
            "hr", "HR-6", call_type=CallType.INCIDENT, status=Status.WAITING, waiting_on="supplier"
        )
    )
    hr7 = put(_call("hr", "HR-7"))
    # Outside the 30-day period: would fail classification and service if it counted.
    put(
        _call(
            "hr",
            "HR-OLD",
            call_type=CallType.UNCLASSIFIED,
            status=Status.REGISTERED,  # nobody works on an unclassified call
            service=None,
            created=datetime(2025, 1, 1, tzinfo=UTC),
            updated=datetime(2025, 1, 2, tzinfo=UTC),
        )
    )

    # --- facilities: a contradicting priority, an illegal move, three broken supplier calls
    put(_call("facilities", "FAC-1", impact=Impact.HIGH, urgency=Urgency.HIGH, priority="low"))
    put(_call("facilities", "FAC-0", impact=Impact.HIGH, urgency=Urgency.LOW, priority="moderate"))
    fac2 = put(_call("facilities", "FAC-2", status=Status.REGISTERED))
    put(fac2.model_copy(update={"status": Status.CLOSED, "closed": NOW - timedelta(hours=5)}))
    put(_call("facilities", "FAC-3", chain=ChainLinks(upstream=ids["HR-3"])))
    fac4 = put(_call("facilities", "FAC-4"))
    fac5 = put(
        _call(
            "facilities",
            "FAC-5",
            chain=ChainLinks(upstream=hr4.id),
            created=hr4.created + timedelta(hours=2),
        )
    )
    fac6 = put(
        _call(
            "facilities",
            "FAC-6",
            call_type=CallType.RISK,
            chain=ChainLinks(upstream=hr7.id),
            created=hr7.created + timedelta(hours=4),
            status=Status.FULFILLED,
        )
    )

    # --- it: an incident closed without confirmation, one closed properly, an rfc without
    # an agreement, and a linked supplier incident
    put(_call("it", "IT-1", call_type=CallType.INCIDENT, status=Status.CLOSED))
    put(
        _call(
            "it",
            "IT-2",
            call_type=CallType.INCIDENT,
            status=Status.CLOSED,
            confirmed=NOW - timedelta(days=1, hours=2),
        )
    )
    put(_call("it", "IT-3", call_type=CallType.RFC))
    it4 = put(
        _call(
            "it",
            "IT-4",
            call_type=CallType.INCIDENT,
            chain=ChainLinks(upstream=hr6.id),
            created=hr6.created + timedelta(minutes=30),
        )
    )

    with store.begin() as tx:
        tx.link_chain(hr4.id, fac5.id, "hr-to-facilities")
        tx.link_chain(hr7.id, fac6.id, "hr-to-facilities")
        tx.link_chain(hr6.id, it4.id, "hr-to-it")
        for call, correlation in ((fac4, "corr-4"), (fac5, "corr-5"), (it4, "corr-it4")):
            assert call.source is not None
            tx.link_identity(
                call.id, call.source.instance, call.source.remote_id, correlation=correlation
            )
        tx.add_dead_letter(
            "hr-mail",
            "map",
            {"remote_id": "m-9", "data": {"subject": "Hello", "status": "weird"}},
            "field status: value 'weird' at path 'status' is not in the mapping 'hr-mailbox'",
        )
        tx.add_dead_letter(
            "fac-jira",
            "push",
            {"operation": "update", "call_id": fac5.id},
            "HTTP 400 from Jira: field 'customfield_10010' is not on the screen",
            call_id=fac5.id,
        )


def make_enterprise(store_url: str, root: Path) -> Enterprise:
    """Write the files into ``root``, fill the store; the caller closes ``enterprise.store``."""
    (root / "mappings").mkdir(exist_ok=True)
    (root / "mappings" / "hr.yaml").write_text(HR_MAPPING)
    (root / "mappings" / "facilities.yaml").write_text(FACILITIES_MAPPING)
    (root / "mappings" / "it.yaml").write_text(IT_MAPPING)
    discovery = root / "discovery.json"
    discovery.write_text(json.dumps(DISCOVERY))
    config_path = root / "usm-bridge.toml"
    config_path.write_text(CONFIG.format(url=store_url))
    config = load_config(config_path)
    store = Store.open(store_url)
    ids: dict[str, str] = {}
    try:
        _fill(store, ids)
    except BaseException:
        store.close()
        raise
    return Enterprise(root, config_path, config, store, discovery, ids)
