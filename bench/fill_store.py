"""Fill a store with N realistic calls, fast: the data of the scale benchmarks (issue #17).

Run: ``.venv/bin/python bench/fill_store.py --calls 1000000 --url URL [--seed 17]``
(without ``--url``: a SQLite file in the current folder, ``million.db``). Importable too, with
``bench/`` on ``sys.path``: :func:`fill_store` fills, :func:`validate_sample` reads back.

The store is opened with ``Store.open(url, schema=UPGRADE)`` (so its schema is the code's),
then written directly through SQLAlchemy Core on the store's tables
(:mod:`usm_bridge.store.schema`): multi-row inserts in batches, one transaction per batch. No
call goes through the model or the store's API on the way in, which is what makes a million
calls take minutes instead of hours; :func:`validate_sample` then reads a sample back through
``tx.get_call`` (the model validates each one) and checks the stored content hash against the
store's own :func:`~usm_bridge.store.store.content_hash`, so the filler cannot write rows the
product could not read or would take for changed.

What a store of an enterprise after a year looks like, as the sample enterprise of
``usm_bridge/data/enterprise`` shapes it:

- four instances: ``facilities-jira`` (Jira Service Management, unit ``facilities``),
  ``it-requests`` and ``it-incidents`` (ServiceNow, unit ``it``), ``hr-mail`` (e-mail, ``hr``);
- calls created over the year before the fill; the types, priorities and statuses vary, older
  calls are mostly closed, recent ones open, a few wait on their customer or supplier;
- chains: HR -> Facilities -> IT and Facilities -> IT, each link a ``chain_links`` row, the
  canonical ``chain`` of both calls filled in as the router fills it, the supplier's record
  created by the bridge (its identity carries the correlation marker and the pushed hash), its
  outbox items done; closed links carry their confirmation as the closure records it, and a
  few recent ones are delivered and wait for their customer's acceptance;
- comments on a share of the calls, public ones copied along the chain (``comment_links``);
- one identity per call, remote states for the records of the tools the bridge writes to,
  audit events for the chains and a share of the calls, a few open and resolved dead letters.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from usm_bridge.model import CallType, Status
from usm_bridge.store import SchemaPolicy, Store
from usm_bridge.store import schema as t
from usm_bridge.store.call_facts import fact_columns, facts_of
from usm_bridge.store.store import content_hash

__all__ = ["FillSummary", "fill_store", "main", "validate_sample"]

#: Calls written per transaction (and per multi-row statement group).
BATCH = 5_000
YEAR = timedelta(days=365)


@dataclass(frozen=True)
class Instance:
    """One connector instance of the filled store and how its records look."""

    name: str
    unit: str
    kind: str
    #: Share of the standalone calls (calls outside any chain) read from this instance.
    share: float


FACILITIES = Instance("facilities-jira", "facilities", "jira", 0.40)
IT_REQUESTS = Instance("it-requests", "it", "servicenow", 0.20)
IT_INCIDENTS = Instance("it-incidents", "it", "servicenow", 0.30)
HR = Instance("hr-mail", "hr", "email", 0.10)
INSTANCES = (FACILITIES, IT_REQUESTS, IT_INCIDENTS, HR)
#: The routes of the chains, as the sample enterprise names them.
ROUTES = {("hr", "facilities"): "hr-to-facilities", ("facilities", "it"): "facilities-to-it"}
#: The chains (upstream first) and their share of the calls' groups; the rest are standalone.
CHAINS: tuple[tuple[tuple[Instance, ...], float], ...] = (
    ((FACILITIES, IT_REQUESTS), 0.06),
    ((HR, FACILITIES), 0.03),
    ((HR, FACILITIES, IT_REQUESTS), 0.02),
)
SERVICES = {"facilities": "workplace", "it": "laptops", "hr": "people"}
AGREEMENTS = {"facilities": "hr-facilities", "it": "facilities-it"}
PRIORITIES = ("critical", "high", "moderate", "low", "planning")
IMPACTS = ("high", "medium", "low")
URGENCIES = ("high", "medium", "low")
TYPES = {
    "facilities": (CallType.SERVICE_REQUEST, CallType.INCIDENT, CallType.RFC, CallType.RISK),
    "it": (CallType.SERVICE_REQUEST, CallType.INCIDENT, CallType.RFC, CallType.WISH),
    "hr": (CallType.SERVICE_REQUEST, CallType.WISH, CallType.UNCLASSIFIED),
}
SUBJECTS = (
    "Desk for a new colleague",
    "Badge does not open the third floor",
    "Laptop for onboarding",
    "Meeting room projector flickers",
    "VPN drops every hour",
    "Move of the finance team",
    "Chair with a broken wheel",
    "Printer on floor 2 jams",
    "Access to the payroll system",
    "Parking permit renewal",
)
PEOPLE = tuple(
    (f"{first} {last}", f"{first.lower()}.{last.lower()}@example.com")
    for first in ("Ada", "Ben", "Chloe", "Dirk", "Eva", "Femke", "Gijs", "Hilda", "Ivo", "Jan")
    for last in ("Jansen", "de Vries", "Bakker", "Visser", "Smit", "Meijer", "Mulder")
)
#: Each tool's status names for the canonical statuses (its remote state's draft).
TOOL_STATUS = {
    "jira": {
        "registered": "Open",
        "classified": "Open",
        "in_progress": "In Progress",
        "waiting": "Pending",
        "fulfilled": "Resolved",
        "confirmed": "Closed",
        "closed": "Closed",
        "cancelled": "Canceled",
    },
    "servicenow": {
        "registered": "1",
        "classified": "1",
        "in_progress": "2",
        "waiting": "-5",
        "fulfilled": "6",
        "confirmed": "7",
        "closed": "7",
        "cancelled": "8",
    },
    "email": {},
}


@dataclass
class FillSummary:
    """How many rows a fill wrote into each table, and how long it took."""

    #: Rows written, by table name (``calls``, ``identities``, ``chain_links`` ...).
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: Calls by instance and by status (what a benchmark reports the load by).
    by_instance: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def calls(self) -> int:
        return self.rows.get("calls", 0)

    def as_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _iso(moment: datetime) -> str:
    # As pydantic dumps an aware UTC datetime: the hash of the content must be the model's.
    return moment.isoformat().replace("+00:00", "Z")


def _dumps(canonical: dict[str, Any]) -> tuple[str, str]:
    """The call's stored JSON and its content hash, from one serialisation.

    The hash is the store's (:func:`~usm_bridge.store.store.content_hash`): the sha256 of the
    content (the dump without ``id`` and ``updated``) as sorted, compact JSON. The stored text
    is that same JSON with the two keys put in front: JSON objects have no order, so the row
    reads back as the call, and the call is serialised once instead of twice.
    """
    content = {key: value for key, value in canonical.items() if key not in ("id", "updated")}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    head = json.dumps(
        {"id": canonical["id"], "updated": canonical["updated"]}, separators=(",", ":")
    )
    return f"{head[:-1]},{text[1:]}", hashlib.sha256(text.encode("ascii")).hexdigest()


def _raw_table(table: sa.Table) -> sa.Table:
    """``table`` (on SQLite) with column types that leave the values to the driver: JSON and
    timestamps as text (rows carry them serialised, :func:`_raw_stamp`). SQLAlchemy's per-value
    processing would cost more than the database's work."""

    def raw(column: sa.Column[Any]) -> Any:
        if isinstance(column.type, (sa.JSON, t.UTCDateTime)):
            return sa.Text()
        return column.type

    columns = [sa.Column(c.name, raw(c), primary_key=c.primary_key) for c in table.columns]
    return sa.Table(table.name, sa.MetaData(), *columns)


def _copy(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """``COPY ... FROM STDIN`` the rows into ``table`` (PostgreSQL, psycopg 3), in the
    connection's transaction: several times faster than multi-row inserts."""
    names = [c.name for c in table.columns if c.name in rows[0]]
    driver: Any = conn.connection.dbapi_connection
    quoted = ", ".join(f'"{name}"' for name in names)
    with driver.cursor() as cursor, cursor.copy(f"COPY {table.name} ({quoted}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[name] for name in names])


def _raw_stamp(moment: datetime) -> str:
    """A timestamp as :class:`~usm_bridge.store.schema.UTCDateTime` stores it on SQLite: the
    text of the naive UTC time, in SQLAlchemy's format."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class _Rows:
    """The rows of one batch, per table, in insert order (foreign keys first)."""

    TABLES = (
        t.calls,
        t.identities,
        t.chain_links,
        t.comment_links,
        t.remote_states,
        t.outbox,
        t.dead_letters,
        t.audit_log,
    )

    def __init__(self, *, sqlite: bool) -> None:
        self.sqlite = sqlite
        self.rows: dict[str, list[dict[str, Any]]] = {table.name: [] for table in self.TABLES}
        self._raw = {table.name: _raw_table(table) for table in self.TABLES}
        self._json = {
            table.name: [c.name for c in table.columns if isinstance(c.type, sa.JSON)]
            for table in self.TABLES
        }
        self._stamps = {
            table.name: [c.name for c in table.columns if isinstance(c.type, t.UTCDateTime)]
            for table in self.TABLES
        }

    def add(self, table: sa.Table, row: dict[str, Any]) -> None:
        self.rows[table.name].append(row)

    def __len__(self) -> int:
        return len(self.rows["calls"])

    def write(self, conn: sa.Connection, summary: FillSummary) -> None:
        for table in self.TABLES:
            batch = self.rows[table.name]
            if batch:
                for name in self._json[table.name]:
                    for row in batch:
                        value = row[name]
                        if value is not None and not isinstance(value, str):
                            row[name] = json.dumps(value, allow_nan=False)
                if self.sqlite:
                    for name in self._stamps[table.name]:
                        for row in batch:
                            if row[name] is not None:
                                row[name] = _raw_stamp(row[name])
                    conn.execute(self._raw[table.name].insert(), batch)
                else:
                    _copy(conn, table, batch)
                summary.rows[table.name] = summary.rows.get(table.name, 0) + len(batch)
                batch.clear()


@dataclass
class _Made:
    """One generated call: its row values and what its chain neighbours need of it."""

    id: str
    instance: Instance
    canonical: dict[str, Any]
    created: datetime
    remote_id: str


class _Generator:
    """Makes the calls, deterministically from a seed."""

    def __init__(self, *, seed: int, now: datetime) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - test data, not secrets
        self.now = now
        self.serial = 0
        self._audit_at = now

    # -- one call ------------------------------------------------------------------------------

    def _status(self, age: timedelta) -> str:
        """Older calls are mostly done; the last month's are mostly open."""
        r = self.rng.random()
        table: tuple[tuple[str, float], ...]
        if age > timedelta(days=30):
            table = (("closed", 0.80), ("cancelled", 0.06), ("fulfilled", 0.10), ("waiting", 0.02))
        else:
            table = (
                ("registered", 0.12),
                ("classified", 0.10),
                ("in_progress", 0.25),
                ("waiting", 0.13),
                ("fulfilled", 0.15),
                ("closed", 0.20),
            )
        for status, share in table:
            if r < share:
                return status
            r -= share
        return "in_progress"

    def _person(self) -> dict[str, Any]:
        name, email = self.rng.choice(PEOPLE)
        return {"name": name, "email": email, "ref": None}

    def _remote(self, instance: Instance) -> tuple[str, str, str]:
        """A record's id, key and URL as the instance's tool shapes them."""
        n = self.serial
        if instance.kind == "jira":
            key = f"FAC-{n + 1}"
            return str(10_000 + n), key, f"https://facilities.atlassian.net/browse/{key}"
        if instance.kind == "servicenow":
            sys_id = f"{self.rng.getrandbits(128):032x}"
            prefix = "RITM" if instance is IT_REQUESTS else "INC"
            table = "sc_req_item" if instance is IT_REQUESTS else "incident"
            url = f"https://it.service-now.com/{table}.do?sys_id={sys_id}"
            return sys_id, f"{prefix}{n + 1:07d}", url
        return f"<{f'{self.rng.getrandbits(128):032x}'}@example.com>", f"HR-{n + 1}", ""

    def _comments(self, instance: Instance, created: datetime, count: int) -> list[Any]:
        comments = []
        for k in range(count):
            author = self._person()
            comments.append(
                {
                    "id": f"{self.rng.getrandbits(128):032x}",
                    "author": author,
                    "body": f"Update {k + 1}: {author['name']} looked at it; "
                    "the parts are ordered and the work is planned for this week.",
                    "created": _iso(created + timedelta(hours=4 * (k + 1))),
                    "public": self.rng.random() < 0.7,
                    "origin": instance.name,
                    "remote_id": str(100_000 + self.serial * 4 + k),
                }
            )
        return comments

    def call(
        self,
        instance: Instance,
        created: datetime,
        status: str,
        *,
        upstream: _Made | None = None,
    ) -> _Made:
        """One call of ``instance``, created at ``created``, in ``status``."""
        rng = self.rng
        self.serial += 1
        call_id = f"call_{f'{rng.getrandbits(128):032x}'}"
        remote_id, remote_key, url = self._remote(instance)
        call_type = rng.choice(TYPES[instance.unit])
        if call_type is CallType.UNCLASSIFIED and status not in ("registered", "closed"):
            call_type = CallType.SERVICE_REQUEST
        process = call_type.process
        # Never before created: a chain's later links are created minutes after the first,
        # which may lie after ``now`` for the newest chains.
        updated = max(created, min(created + timedelta(days=rng.randint(0, 20)), self.now))
        subject = rng.choice(SUBJECTS)
        impact, urgency = rng.choice(IMPACTS), rng.choice(URGENCIES)
        done = status in ("fulfilled", "confirmed", "closed")
        comments = self._comments(instance, created, rng.choice((0, 0, 1, 2, 3)))
        attributes: dict[str, Any]
        if instance.kind == "jira":
            attributes = {
                "jira": {
                    "labels": ["needs-it"] if upstream is None and rng.random() < 0.1 else [],
                    "issue_type": "[System] Service request",
                    "status_category": "done" if done else "indeterminate",
                }
            }
        elif instance.kind == "servicenow":
            attributes = {"servicenow": {"number": remote_key, "assignment_group": "Service Desk"}}
        else:
            attributes = {"email": {"message_id": remote_id, "thread": remote_key}}
        canonical: dict[str, Any] = {
            "id": call_id,
            "unit": instance.unit,
            "source": {
                "instance": instance.name,
                "remote_id": remote_id,
                "remote_key": remote_key,
                "url": url or None,
            },
            "call_type": call_type.value,
            "status": status,
            "waiting_on": None,
            "waiting_process": None,
            "title": f"{subject} ({remote_key})",
            "description": f"{subject}. Reported by phone and confirmed by e-mail; "
            "please handle before the end of the week. " * 3,
            "requester": self._person(),
            "customer": None,
            "customer_unit": None if upstream is None else upstream.instance.unit,
            "assignee": self._person() if status != "registered" else None,
            "service": SERVICES[instance.unit],
            "agreement": AGREEMENTS.get(instance.unit) if upstream is not None else None,
            "impact": impact,
            "urgency": urgency,
            "priority": rng.choice(PRIORITIES),
            "created": _iso(created),
            "updated": _iso(updated),
            "fulfilled": _iso(updated) if done else None,
            "confirmed": None,
            "closed": _iso(updated) if status == "closed" else None,
            "confirmation": None,
            "comments": comments,
            "chain": {
                "upstream": None if upstream is None else upstream.id,
                "suppliers": [],
                "forks": [],
            },
            "attributes": attributes,
            "process": None if process is None else process.value,
        }
        if status == "waiting":
            canonical["waiting_on"] = "customer"
        return _Made(call_id, instance, canonical, created, remote_id)

    # -- groups --------------------------------------------------------------------------------

    def group(self) -> list[_Made]:
        """A standalone call, or a chain (upstream first) whose statuses fit together."""
        rng = self.rng
        created = self.now - YEAR * rng.random()
        pick = rng.random()
        for chain, share in CHAINS:
            if pick < share:
                return self._chain(chain, created)
            pick -= share
        r = rng.random()
        for instance in INSTANCES:
            if r < instance.share:
                break
            r -= instance.share
        made = self.call(instance, created, self._status(self.now - created))
        if made.canonical["status"] == "closed" and instance.kind == "servicenow":
            # ServiceNow's auto-close after N days: an implicit confirmation by the tool.
            made.canonical["confirmation"] = {
                "kind": "implicit",
                "by": None,
                "at": made.canonical["closed"],
                "how": "closed by the tool after 5 days without a reply",
            }
        return [made]

    def _chain(self, chain: Sequence[Instance], created: datetime) -> list[_Made]:
        """The calls of one chain: while the last supplier works, its customers wait on it;
        a delivered supplier waits for its customer's acceptance; done chains are closed,
        each supplier's confirmation recorded."""
        status = self._status(self.now - created)
        if status == "fulfilled" and self.now - created > timedelta(hours=12):
            # The closure settles a delivered link within a day (the agreements' implicit
            # term): only the last hours' deliveries still wait for their acceptance.
            status = "closed"
        made: list[_Made] = []
        for depth, instance in enumerate(chain):
            last = depth == len(chain) - 1
            upstream = made[-1] if made else None
            at = created + timedelta(minutes=5 * depth)
            if status in ("closed", "cancelled", "registered", "classified"):
                own = status if last or status in ("closed", "cancelled") else "waiting"
            elif last:
                own = status
            else:
                own = "waiting"
            if own in ("registered", "classified") and not last:
                own = "waiting"
            call = self.call(instance, at, own, upstream=upstream)
            if own == "waiting":
                call.canonical["waiting_on"] = "supplier" if not last else "customer"
            if upstream is not None and own == "closed":
                call.canonical["confirmation"] = {
                    "kind": "explicit",
                    "by": upstream.canonical["requester"],
                    "at": call.canonical["closed"],
                    "how": f"{upstream.canonical['source']['remote_key']} resumed",
                }
                call.canonical["confirmed"] = call.canonical["closed"]
            if upstream is not None:
                upstream.canonical["chain"]["suppliers"].append(call.id)
            made.append(call)
        return made

    # -- the rows of a group --------------------------------------------------------------------

    def rows(self, group: list[_Made], out: _Rows, summary: FillSummary) -> None:
        rng = self.rng
        for position, made in enumerate(group):
            canonical = made.canonical
            stored, digest = _dumps(canonical)
            updated = datetime.fromisoformat(canonical["updated"])
            out.add(
                t.calls,
                {
                    "id": made.id,
                    "unit": made.instance.unit,
                    "call_type": canonical["call_type"],
                    "status": canonical["status"],
                    "canonical": stored,
                    # As the store writes them with the document (call_facts.py).
                    "facts": facts_of(canonical),
                    **fact_columns(canonical),
                    "version": 1 + len(canonical["comments"]),
                    "content_hash": digest,
                    "created_at": made.created,
                    "updated_at": updated,
                    "vanished_at": None,
                },
            )
            summary.by_instance[made.instance.name] = (
                summary.by_instance.get(made.instance.name, 0) + 1
            )
            summary.by_status[canonical["status"]] = (
                summary.by_status.get(canonical["status"], 0) + 1
            )
            source = canonical["source"]
            created_by_bridge = position > 0
            out.add(
                t.identities,
                {
                    "call_id": made.id,
                    "instance": made.instance.name,
                    "remote_id": made.remote_id,
                    "remote_key": source["remote_key"],
                    "url": source["url"],
                    "correlation": f"usm-bridge:{made.id}" if created_by_bridge else None,
                    "pushed_hash": digest if len(group) > 1 else None,
                    "pushed_at": updated if len(group) > 1 else None,
                    "created_at": made.created,
                    "updated_at": updated,
                },
            )
            statuses = TOOL_STATUS[made.instance.kind]
            if statuses:
                out.add(
                    t.remote_states,
                    {
                        "instance": made.instance.name,
                        "remote_id": made.remote_id,
                        "draft": {
                            "fields": {
                                "summary": canonical["title"],
                                "priority": canonical["priority"],
                            },
                            "status": statuses[canonical["status"]],
                            "status_fields": {},
                        },
                        "updated_at": updated,
                    },
                )
            if rng.random() < 0.1 or created_by_bridge:
                out.add(
                    t.audit_log,
                    {
                        "at": made.created,
                        "call_id": made.id,
                        "instance": made.instance.name,
                        "kind": "call_created",
                        "actor": "bridge",
                        "before": None,
                        "after": {"title": canonical["title"], "status": canonical["status"]},
                        "detail": {"version": 1, "process": canonical["process"]},
                    },
                )
            if rng.random() < 0.0015:
                self._dead_letter(made, out)
            if position == 0:
                continue
            upstream = group[position - 1]
            route = ROUTES[(upstream.instance.unit, made.instance.unit)]
            out.add(
                t.chain_links,
                {
                    "upstream_call_id": upstream.id,
                    "supplier_call_id": made.id,
                    "route": route,
                    "created_at": made.created,
                },
            )
            out.add(
                t.audit_log,
                {
                    "at": made.created,
                    "call_id": upstream.id,
                    "instance": None,
                    "kind": "chain_linked",
                    "actor": "router",
                    "before": None,
                    "after": None,
                    "detail": {"supplier_call_id": made.id, "route": route},
                },
            )
            self._outbox(made, "create", made.instance.name, made.created, out)
            self._outbox(upstream, "update", upstream.instance.name, made.created, out)
            public = [c for c in made.canonical["comments"] if c["public"]]
            if public:
                copy = f"{rng.getrandbits(128):032x}"
                out.add(
                    t.comment_links,
                    {
                        "call_id": upstream.id,
                        "instance": upstream.instance.name,
                        "comment_id": copy,
                        "source_comment_id": public[0]["id"],
                        "remote_comment_id": f"copy-{copy[:12]}",
                        "created_at": made.created,
                        "updated_at": made.created,
                    },
                )

    def _outbox(self, made: _Made, operation: str, target: str, at: datetime, out: _Rows) -> None:
        """A write the bridge made into ``target`` (done); now and then a recent update still
        waits, after the tool refused it for a while, for its next attempt (not due yet: a
        cycle with nothing new has nothing to push). Never a create: a tried create that
        waits is looked up in its tool before every read (``OutboxPusher.recover_creates``),
        which is work, not an idle cycle."""
        waits = (
            operation == "update" and self.now - at < timedelta(days=2) and self.rng.random() < 0.5
        )
        key = f"{operation}:{made.id}:{self.rng.getrandbits(128):032x}"
        out.add(
            t.outbox,
            {
                "target_instance": target,
                "call_id": made.id,
                "operation": operation,
                "payload": {"fields": {"summary": made.canonical["title"]}, "status": None},
                "idempotency_key": key,
                "status": "pending" if waits else "done",
                "attempts": 3 if waits else 1,
                "next_attempt_at": self.now + timedelta(hours=1) if waits else at,
                "last_error": "503 Service Unavailable: the tool is in maintenance"
                if waits
                else None,
                "created_at": at,
                "updated_at": at,
                "claimed_by": None,
            },
        )

    def _dead_letter(self, made: _Made, out: _Rows) -> None:
        resolved = self.rng.random() < 0.7
        out.add(
            t.dead_letters,
            {
                "instance": made.instance.name,
                "stage": "map",
                "payload": {"key": made.canonical["source"]["remote_key"], "fields": {}},
                "reason": "no status rule maps 'Awaiting approval'",
                "attempts": 1,
                "status": "resolved" if resolved else "open",
                "call_id": None,
                "outbox_id": None,
                "resolution": "re-read after the mapping was fixed" if resolved else None,
                "created_at": made.created,
                "updated_at": made.created,
                "resolved_at": made.created if resolved else None,
                "subject": made.remote_id,
                "last_seen": made.created,
            },
        )


def _groups(gen: _Generator, count: int) -> Iterator[list[_Made]]:
    """Groups until ``count`` calls are made (the last chain may be cut short)."""
    made = 0
    while made < count:
        group = gen.group()[: count - made]
        made += len(group)
        yield group


def fill_store(
    url: str,
    calls: int,
    *,
    seed: int = 17,
    now: datetime | None = None,
    batch: int = BATCH,
    progress: bool = False,
) -> FillSummary:
    """Write ``calls`` calls (and their identities, links, states, outbox, letters, audit)
    into the store at ``url``, after upgrading its schema; what was written.

    Fill an empty store: the records' ids follow a counter, so a second fill's would collide
    with the first's (the identities' unique key refuses them).
    """
    started = time.perf_counter()
    summary = FillSummary()
    # The year ends now (to the second): the few delivered links the fill leaves waiting for
    # their acceptance are hours old, as in a store the closure keeps up with. Pass ``now``
    # for a fill that is the same every time.
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    gen = _Generator(seed=seed, now=moment)
    store = Store.open(url, schema=SchemaPolicy.UPGRADE)
    try:
        engine = store.engine
        rows = _Rows(sqlite=engine.dialect.name == "sqlite")
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                # A bulk load: no fsync per batch (the benchmark rebuilds a store it loses).
                # (On the driver's connection: the store's engine begins a transaction
                # for every statement, and SQLite refuses the pragma inside one.)
                driver: Any = conn.connection.dbapi_connection
                driver.execute("PRAGMA synchronous=OFF")
            for group in _groups(gen, calls):
                gen.rows(group, rows, summary)
                if len(rows) >= batch:
                    with conn.begin():
                        rows.write(conn, summary)
                    if progress:
                        print(f"  {summary.calls:>9,} calls", file=sys.stderr, flush=True)
            with conn.begin():
                rows.write(conn, summary)
            if engine.dialect.name == "postgresql":
                conn.commit()
                # Planner statistics for the new rows, as autovacuum would gather them later.
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
            else:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
    finally:
        store.close()
    summary.seconds = time.perf_counter() - started
    return summary


def validate_sample(url: str, *, sample: int = 200, seed: int = 1) -> int:
    """Read ``sample`` calls spread over the store back through ``tx.get_call``; how many.

    :raises ValueError: a call reads back different from its row (id, status, type, unit),
        its stored content hash is not what the store computes for it, its identity does not
        find it, or its chain link is not its canonical ``chain.upstream``.
    """
    store = Store.open(url, schema=SchemaPolicy.INSPECT)
    try:
        with store.begin(readonly=True) as tx:
            rng = random.Random(seed)  # noqa: S311 - a sample, not secrets
            calls = t.calls
            checked = 0
            seen: set[str] = set()
            for _ in range(sample):
                # The ids are random: the first at or after a random one is a random call,
                # found through the primary key (an OFFSET would scan the table).
                start = f"call_{rng.getrandbits(128):032x}"
                row = tx.connection.execute(
                    sa.select(
                        calls.c.id,
                        calls.c.status,
                        calls.c.call_type,
                        calls.c.unit,
                        calls.c.content_hash,
                    )
                    .where(calls.c.id >= start)
                    .order_by(calls.c.id)
                    .limit(1)
                ).first()
                if row is None or row.id in seen:
                    continue
                seen.add(row.id)
                stored = tx.get_call(row.id)
                if stored is None:
                    raise ValueError(f"call {row.id} is not found by get_call")
                call = stored.call
                if (call.id, call.status, call.call_type, call.unit) != (
                    row.id,
                    Status(row.status),
                    CallType(row.call_type),
                    row.unit,
                ):
                    raise ValueError(f"call {row.id} reads back different from its row")
                if content_hash(call) != row.content_hash:
                    raise ValueError(f"call {row.id}: its content hash is not the store's")
                source = call.source
                found = None if source is None else tx.find_call(source.instance, source.remote_id)
                if found is None or found.call.id != call.id:
                    raise ValueError(f"call {row.id} is not found by its identity")
                upstream = tx.upstream_of(call.id)
                if (upstream.upstream_call_id if upstream else None) != call.chain.upstream:
                    raise ValueError(f"call {row.id}: its chain link is not its canonical chain")
                checked += 1
            return checked
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--url", default="sqlite:///million.db")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--sample", type=int, default=200, help="calls read back to validate")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    summary = fill_store(
        args.url, args.calls, seed=args.seed, batch=args.batch, progress=not args.quiet
    )
    checked = validate_sample(args.url, sample=args.sample)
    report = summary.as_json() | {
        "validated": checked,
        "rate_calls_per_s": round(summary.calls / summary.seconds),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
