"""A ServiceNow Table API on loopback: the instance tests, demos and benchmarks talk to.

Built from ServiceNow's documented behaviour (``shared/design/API-FACTS.md``), not from what the
connector sends: string values only, 32-hex ``sys_id``, UTC second-precision timestamps,
reference fields as ``{"link", "value"}``, encoded queries whose unknown parts are silently
ignored, ``X-Total-Count`` and ``Link`` paging headers, v1's 404 for an empty match against v2's
empty 200, journal fields that read empty and land in ``sys_journal_field``, the business rules
an integration meets (an incident is not resolved without close code and notes; its priority
is looked up from impact x urgency), basic auth and an OAuth token endpoint, ServiceNow's error
bodies, and faults switched on at will.

It stays out of a benchmark's way: ``TCP_NODELAY`` on every connection (``http.server`` writes
headers and body separately, which Nagle and delayed ACKs turn into 40 ms stalls), the request
body always read, and query results cached per data version so paging by offset is not O(N^2).
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import ssl
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import parse_qs, urlencode, urlsplit

from requests.structures import CaseInsensitiveDict

from .attachments import Attachments, Refusal, Upload
from .autoclose import AutoClose
from .events import BusinessRuleEvents
from .query import Query, parse_query
from .ratelimit import RateLimiter, RateLimitRule
from .tables import CHOICES, INTEGER_FIELDS, PRIORITY_MATRIX, TABLES, TableSpec

__all__ = ["ServiceNowSimulator", "SimClock", "SimFault", "SimulatorError"]

TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
DEFAULT_USER: Final = "usm.bridge"
_API_PREFIXES: Final = ("/api/now/v1/table/", "/api/now/v2/table/", "/api/now/table/")
_ATTACHMENT_PREFIXES: Final = ("/api/now/v1/attachment", "/api/now/attachment")

logger = logging.getLogger(__name__)


class SimClock:
    """The simulator's wall clock: real time, or frozen and moved by hand (for tests)."""

    def __init__(self, frozen_at: datetime | None = None) -> None:
        self._frozen = frozen_at
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current time, UTC."""
        with self._lock:
            base = self._frozen if self._frozen is not None else datetime.now(UTC)
            return base + self._offset

    def stamp(self) -> str:
        """The current time as ServiceNow stores it: ``2016-01-22 14:28:24``."""
        return self.now().strftime(TIME_FORMAT)

    def advance(self, seconds: float) -> None:
        """Move the clock on (frozen or not)."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)


@dataclass
class SimFault:
    """What the next request is answered with instead of being served.

    ``kind``: ``"429"`` (with ``Retry-After: retry_after``), ``"429-bare"`` (no Retry-After),
    ``"500"``, ``"503"``, ``"slow"`` (served after ``delay`` seconds), ``"drop"`` (connection
    closed without an answer), ``"lose-create"`` (the next POST is carried out, then the
    connection is closed without an answer), ``"reject"`` (``status`` with ``message`` in
    ServiceNow's error shape), ``"cut"`` (the next file download sends its headers and only
    ``after`` bytes of its content, then the connection is closed: a network dropped
    mid-download; other requests are served as usual meanwhile).
    """

    kind: str
    retry_after: int = 1
    delay: float = 0.0
    status: int = 400
    message: str = ""
    after: int = 0


class SimulatorError(Exception):
    """A request the simulated instance refuses: HTTP ``status`` with ServiceNow's error body."""

    def __init__(self, status: int, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "detail"}, "status": "failure"}``."""
        return {"error": {"message": self.message, "detail": self.detail}, "status": "failure"}


@dataclass
class _Table:
    spec: TableSpec
    records: dict[str, dict[str, str]] = field(default_factory=dict)
    counter: int = 10000


@dataclass
class _Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    #: An open stored file sent (then closed) as the body instead of JSON (an attachment's).
    file: IO[bytes] | None = None
    #: Bytes of ``file`` sent before the connection is dropped (``SimFault("cut")``).
    cut: int | None = None


class ServiceNowSimulator:
    """A simulated ServiceNow instance, with a Python API for tests and an HTTP server.

    Use as a context manager, or :meth:`start` / :meth:`stop`. ``base_url``, ``username``,
    ``password``, ``client_id`` and ``client_secret`` are what a client needs.

    :param clock: the instance's clock (:class:`SimClock`); real time by default.
    :param max_limit: the most records one page holds whatever ``sysparm_limit`` asks (a real
        instance caps it too).
    :param token_lifetime: seconds an OAuth access token lives.
    :param rate_limit: a rate limit rule applied to every user's Table API requests (none by
        default); :meth:`set_rate_limit` changes it on a running instance.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: SimClock | None = None,
        username: str = DEFAULT_USER,
        password: str | None = None,
        client_id: str = "usm-bridge-client",
        client_secret: str | None = None,
        max_limit: int = 10_000,
        token_lifetime: int = 1800,
        ssl_context: ssl.SSLContext | None = None,
        rate_limit: RateLimitRule | None = None,
    ) -> None:
        self.host = host
        #: Serve HTTPS with this server context (clients such as pysnc insist on https).
        self.ssl_context = ssl_context
        self.port = port
        self.clock = clock or SimClock()
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(16)
        self.max_limit = max_limit
        self.token_lifetime = token_lifetime
        #: Fields a field-level read ACL hides from the integration user: the Table API leaves
        #: them out of every record it shows (some instances restrict ``sys_mod_count``).
        self.unreadable: set[str] = set()
        self.lock = threading.RLock()
        self.tables: dict[str, _Table] = {name: _Table(spec) for name, spec in TABLES.items()}
        self.version = 0
        self.faults: deque[SimFault] = deque()
        #: Requests served per path kind (``table``, ``token`` ...), for tests and benchmarks.
        self.request_count = 0
        self._tokens: dict[str, float] = {}
        self._refresh_tokens: set[str] = set()
        self._cache: OrderedDict[tuple[str, str], tuple[int, list[dict[str, str]]]] = OrderedDict()
        self._index: dict[str, tuple[int, list[tuple[str, str]], list[dict[str, str]]]] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.rate_limiter: RateLimiter | None = None
        self.set_rate_limit(rate_limit)
        #: The incident auto-close job (``autoclose.days``: glide.ui.autoclose.time; off).
        self.autoclose = AutoClose()
        #: The usm-bridge business rule: signed events to the targets registered on it.
        self.events = BusinessRuleEvents()
        #: The Attachment API: files on records, their settings (``attachments.settings``).
        self.attachments = Attachments(self)
        self._seed_choices()
        #: Basic-auth passwords by user name: the integration user, and people added later.
        self._passwords: dict[str, str] = {username: self.password}
        self.user_id = self.insert(
            "sys_user", {"user_name": username, "name": "USM Bridge Integration"}, rules=False
        )
        #: sys_user sys_ids by user name: whose reference ``opened_by`` / ``closed_by`` hold.
        self._user_ids: dict[str, str] = {username: self.user_id}

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` once started (``https`` when serving TLS)."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self, *, tls: ssl.SSLContext | None = None) -> ServiceNowSimulator:
        """Bind the port and serve in a background thread; over HTTPS with a ``tls`` context
        (clients such as ``pysnc`` refuse plain ``http://`` instance URLs)."""
        simulator = self

        class Handler(_Handler):
            sim = simulator

        server = _Server((self.host, self.port), Handler)
        if tls is not None:
            self.ssl_context = tls
        if self.ssl_context is not None:
            server.socket = self.ssl_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (the events queued are still delivered); the
        attachments' files are removed."""
        self.events.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.attachments.close()

    def __enter__(self) -> ServiceNowSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------------------

    def inject(self, fault: SimFault, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``fault``."""
        with self.lock:
            self.faults.extend([fault] * times)

    def set_rate_limit(self, rule: RateLimitRule | None) -> None:
        """Apply ``rule`` to each user's requests from now on (``None``: no limit)."""
        with self.lock:
            self.rate_limiter = (
                RateLimiter(rule, lambda: self.clock.now().timestamp()) if rule else None
            )

    def clear_faults(self) -> None:
        """Serve normally again."""
        with self.lock:
            self.faults.clear()

    # -- data: the Python API ------------------------------------------------------------------

    def _seed_choices(self) -> None:
        for (table, element), values in CHOICES.items():
            for sequence, (value, label) in enumerate(values):
                self.add_choice(table, element, value, label, sequence)

    def add_choice(self, table: str, element: str, value: str, label: str, sequence: int) -> None:
        """Add a ``sys_choice`` row (an instance's own choice, say)."""
        self.insert(
            "sys_choice",
            {
                "name": table,
                "element": element,
                "value": value,
                "label": label,
                "sequence": str(sequence),
            },
            rules=False,
        )

    def _touch(self) -> None:
        self.version += 1

    def table(self, name: str) -> _Table:
        """The table ``name``, or a 400 "Invalid table" as ServiceNow answers."""
        try:
            return self.tables[name]
        except KeyError:
            raise SimulatorError(400, f"Invalid table {name}", "") from None

    def get(self, table: str, sys_id: str) -> dict[str, str] | None:
        """A copy of the record, or ``None``."""
        with self.lock:
            record = self.table(table).records.get(sys_id)
            return dict(record) if record is not None else None

    def journal(self, sys_id: str) -> list[dict[str, str]]:
        """The journal entries of a record, oldest first."""
        with self.lock:
            entries = self.tables["sys_journal_field"].records.values()
            return [dict(e) for e in entries if e["element_id"] == sys_id]

    def ids(self, table: str) -> list[str]:
        """Every sys_id of ``table``."""
        with self.lock:
            return list(self.table(table).records)

    def insert(
        self,
        table: str,
        values: Mapping[str, Any],
        *,
        user: str | None = None,
        rules: bool = True,
        input_display: bool = False,
    ) -> str:
        """Create a record as the instance would (business rules unless ``rules=False``).

        ``input_display``: choice fields may be given by label (``sysparm_input_display_value``).
        """
        with self.lock:
            tab = self.table(table)
            spec = tab.spec
            now = self.clock.stamp()
            user_name = user or self.username
            record = dict(spec.defaults)
            record["sys_id"] = uuid.uuid4().hex
            record.update(
                sys_created_on=now,
                sys_created_by=user_name,
                sys_updated_on=now,
                sys_updated_by=user_name,
                sys_mod_count="0",
            )
            if spec.task:
                record.update(
                    sys_class_name=table, opened_at=now, opened_by=self._user_id(user_name)
                )
            journal = self._assign(table, record, values, input_display)
            if spec.prefix and not record.get("number"):
                tab.counter += 1
                record["number"] = f"{spec.prefix}{tab.counter:07d}"
            if rules:
                self._business_rules(table, None, record, user_name)
            tab.records[record["sys_id"]] = record
            for element, text in journal:
                self._add_journal(table, record["sys_id"], element, text, user_name, now)
            self._touch()
            if rules:
                self.events.fire(table, record)
            return record["sys_id"]

    def update(
        self,
        table: str,
        sys_id: str,
        values: Mapping[str, Any],
        *,
        user: str | None = None,
        rules: bool = True,
        input_display: bool = False,
    ) -> dict[str, str]:
        """Change a record as the instance would; a write that changes nothing changes nothing."""
        with self.lock:
            tab = self.table(table)
            current = tab.records.get(sys_id)
            if current is None:
                raise SimulatorError(
                    404, "No Record found", "Record doesn't exist or ACL restricts the record"
                )
            user_name = user or self.username
            record = dict(current)
            journal = self._assign(table, record, values, input_display)
            if rules:
                self._business_rules(table, current, record, user_name)
            if record == current and not journal:
                return dict(current)
            now = self.clock.stamp()
            record.update(
                sys_updated_on=now,
                sys_updated_by=user_name,
                sys_mod_count=str(int(current.get("sys_mod_count") or 0) + 1),
            )
            tab.records[sys_id] = record
            for element, text in journal:
                self._add_journal(table, sys_id, element, text, user_name, now)
            self._touch()
            if rules:
                self.events.fire(table, record)
            return dict(record)

    def delete(self, table: str, sys_id: str) -> None:
        """Delete a record."""
        with self.lock:
            if self.table(table).records.pop(sys_id, None) is None:
                raise SimulatorError(404, "No Record found", "Record doesn't exist")
            self._touch()

    def put_raw(self, table: str, record: dict[str, str]) -> None:
        """Store a record exactly as given (a replay of history: no rules, no clock)."""
        with self.lock:
            self.table(table).records[record["sys_id"]] = record
            self._touch()

    def _assign(
        self,
        table: str,
        record: dict[str, str],
        values: Mapping[str, Any],
        input_display: bool = False,
    ) -> list[tuple[str, str]]:
        """Write values as strings; unknown fields are ignored as ServiceNow ignores them, and so
        is a value an integer field cannot hold (``"state": "In Progress"`` leaves the state as
        it was, unless labels are allowed by ``input_display``)."""
        spec = self.tables[table].spec
        journal: list[tuple[str, str]] = []
        for name, value in values.items():
            if name in {"sys_id", "sys_created_on", "sys_updated_on", "sys_mod_count"}:
                continue
            if name not in spec.defaults:
                continue
            text = _as_string(value)
            if name in {"comments", "work_notes"}:
                if text.strip():
                    journal.append((name, text))
                continue
            if input_display:
                text = _choice_value(table, name, text)
            if name in INTEGER_FIELDS and not _INTEGER.fullmatch(text.strip()):
                continue
            record[name] = text.strip() if name in INTEGER_FIELDS else text
        return journal

    def _add_journal(
        self, table: str, sys_id: str, element: str, text: str, user: str, now: str
    ) -> None:
        entry = {
            "sys_id": uuid.uuid4().hex,
            "element": element,
            "element_id": sys_id,
            "name": table,
            "value": text,
            "sys_created_on": now,
            "sys_created_by": user,
        }
        self.tables["sys_journal_field"].records[entry["sys_id"]] = entry

    def _business_rules(
        self, table: str, before: dict[str, str] | None, record: dict[str, str], user: str
    ) -> None:
        now = self.clock.stamp()
        if table == "incident":
            key = (record.get("impact", "3"), record.get("urgency", "3"))
            record["priority"] = PRIORITY_MATRIX.get(key, record.get("priority", "5"))
            entering = before is None or before.get("state") != record.get("state")
            if record.get("state") == "6" and entering:
                missing = [
                    label
                    for name, label in (
                        ("close_code", "Resolution code"),
                        ("close_notes", "Resolution notes"),
                    )
                    if not record.get(name, "").strip()
                ]
                if missing:
                    raise SimulatorError(
                        403,
                        "Operation Failed",
                        "Data Policy Exception: \n\tThe following fields are mandatory: "
                        + ", ".join(missing),
                    )
                record["resolved_at"], record["resolved_by"] = now, self._user_id(user)
            if record.get("state") == "3" and entering and not record.get("hold_reason"):
                record["hold_reason"] = "1"
            if record.get("state") != "3":
                record["hold_reason"] = ""
        state_field = "request_state" if table == "sc_request" else "state"
        closed = {
            "incident": {"7", "8"},
            "change_request": {"3", "4"},
            "problem": {"107"},
            "sc_req_item": {"3", "4", "7"},
            "sc_request": {
                "closed_complete",
                "closed_incomplete",
                "closed_cancelled",
                "closed_rejected",
                "closed_skipped",
            },
        }.get(table, set())
        if closed and record.get(state_field) in closed:
            if before is None or before.get(state_field) not in closed:
                record["closed_at"], record["closed_by"] = now, self._user_id(user)
            record["active"] = "false"
        elif closed:
            record["active"] = "true"

    # -- queries -------------------------------------------------------------------------------

    def _sorted_index(self, table: str) -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
        cached = self._index.get(table)
        if cached is not None and cached[0] == self.version:
            return cached[1], cached[2]
        records = sorted(
            self.tables[table].records.values(),
            key=lambda r: (r.get("sys_updated_on", ""), r.get("sys_id", "")),
        )
        keys = [(r.get("sys_updated_on", ""), r.get("sys_id", "")) for r in records]
        self._index[table] = (self.version, keys, records)
        return keys, records

    def select(self, table: str, query_text: str) -> list[dict[str, str]]:
        """The records matching an encoded query, in its order (cached per data version)."""
        with self.lock:
            tab = self.table(table)
            key = (table, query_text)
            hit = self._cache.get(key)
            if hit is not None and hit[0] == self.version:
                self._cache.move_to_end(key)
                return hit[1]
            known = set(tab.spec.defaults) | {"sys_id"}
            query = parse_query(query_text, known)
            candidates = self._candidates(table, query)
            matched = [r for r in candidates if query.matches(r)]
            if query.order and not self._index_ordered(query):
                for name, descending in reversed(query.order):
                    matched.sort(key=_field_key(name), reverse=descending)
            self._cache[key] = (self.version, matched)
            if len(self._cache) > 64:
                self._cache.popitem(last=False)
            return matched

    @staticmethod
    def _index_ordered(query: Query) -> bool:
        return query.order in (
            [("sys_updated_on", False)],
            [("sys_updated_on", False), ("sys_id", False)],
        )

    def _candidates(self, table: str, query: Query) -> list[dict[str, str]]:
        """Every record, or fewer when an AND condition on sys_updated_on allows a bisect."""
        keys, records = self._sorted_index(table)
        bound = query.updated_lower_bound()
        if bound is None:
            if self._index_ordered(query):
                return records
            return list(self.tables[table].records.values())
        value, inclusive = bound
        start = (
            bisect.bisect_left(keys, (value, ""))
            if inclusive
            else bisect.bisect_right(keys, (value, "\uffff"))
        )
        return records[start:]

    # -- rendering -----------------------------------------------------------------------------

    def render(
        self, table: str, record: Mapping[str, str], params: Mapping[str, str]
    ) -> dict[str, Any]:
        """A record as the Table API shows it for these ``sysparm_`` parameters."""
        spec = self.tables[table].spec
        fields_param = params.get("sysparm_fields", "")
        names = [n.strip() for n in fields_param.split(",") if n.strip()] or list(record)
        display = params.get("sysparm_display_value", "false").lower()
        no_links = params.get("sysparm_exclude_reference_link", "false").lower() == "true"
        out: dict[str, Any] = {}
        for name in names:
            if name not in record or name in self.unreadable:
                continue
            value = record[name]
            reference = spec.references.get(name)
            shown = self._display(table, name, value) if display in {"true", "all"} else value
            if display == "all":
                item: dict[str, str] = {"display_value": shown, "value": value}
                if reference and value and not no_links:
                    item["link"] = self._link(reference, value)
                out[name] = item
            elif reference and value and not no_links:
                out[name] = {"link": self._link(reference, value), "value": shown}
            else:
                out[name] = shown
        return out

    def _link(self, table: str, sys_id: str) -> str:
        return f"{self.base_url}/api/now/table/{table}/{sys_id}"

    def _display(self, table: str, name: str, value: str) -> str:
        if not value:
            return ""
        spec = self.tables[table].spec
        reference = spec.references.get(name)
        if reference is not None and reference in self.tables:
            target = self.tables[reference].records.get(value)
            return target.get(self.tables[reference].spec.display, value) if target else value
        for scope in (table, "task"):
            labels = CHOICES.get((scope, name))
            if labels:
                return dict(labels).get(value, value)
        return value

    # -- HTTP ----------------------------------------------------------------------------------

    def add_user(self, user_name: str, name: str, password: str) -> str:
        """A person who can sign in (basic auth) and whose writes are theirs; their sys_id."""
        with self.lock:
            self._passwords[user_name] = password
            sys_id = self.insert("sys_user", {"user_name": user_name, "name": name}, rules=False)
            self._user_ids[user_name] = sys_id
            return sys_id

    def _user_id(self, user_name: str) -> str:
        """The sys_user sys_id of ``user_name``; the integration user's for a name never added
        (a replayed log's people are names only)."""
        return self._user_ids.get(user_name, self.user_id)

    def authenticate(self, header: str | None) -> bool:
        """Basic with a known user, or a live OAuth bearer token (the integration user's)."""
        return self.user_of(header) is not None

    def user_of(self, header: str | None) -> str | None:
        """The user name an ``Authorization`` header signs in, or ``None``."""
        if not header:
            return None
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "basic":
            basic = _basic_credentials(header)
            if basic is None:
                return None
            user, password = basic
            with self.lock:
                known = self._passwords.get(user)
            if known is not None and secrets.compare_digest(password, known):
                return user
            return None
        if scheme.lower() == "bearer":
            with self.lock:
                expires = self._tokens.get(credentials.strip())
            if expires is not None and self.clock.now().timestamp() < expires:
                return self.username
        return None

    def token(self, form: Mapping[str, str], authorization: str | None = None) -> _Answer:
        """``POST /oauth_token.do``: password and refresh_token grants.

        The client authenticates with ``client_id`` / ``client_secret`` in the form or in an HTTP
        Basic ``authorization`` header (RFC 6749, section 2.3.1: what requests-oauthlib, so
        pysnc's ``ServiceNowPasswordGrantFlow``, sends).
        """
        client_id, client_secret = form.get("client_id"), form.get("client_secret", "")
        basic = _basic_credentials(authorization)
        if basic is not None and "client_secret" not in form:
            client_id, client_secret = basic
        if client_id != self.client_id or not secrets.compare_digest(
            client_secret, self.client_secret
        ):
            return _Answer(401, {"error_description": "access_denied", "error": "server_error"})
        grant = form.get("grant_type")
        with self.lock:
            if grant == "password":
                ok = form.get("username") == self.username and secrets.compare_digest(
                    form.get("password", ""), self.password
                )
            elif grant == "refresh_token":
                ok = form.get("refresh_token", "") in self._refresh_tokens
            else:
                ok = False
            if not ok:
                return _Answer(401, {"error_description": "access_denied", "error": "server_error"})
            access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            self._tokens[access] = self.clock.now().timestamp() + self.token_lifetime
            self._refresh_tokens.add(refresh)
        return _Answer(
            200,
            {
                "access_token": access,
                "refresh_token": refresh,
                "scope": "useraccount",
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
            },
        )

    def answer(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes | Upload
    ) -> _Answer:
        """Serve one HTTP request (faults first).

        Header names are matched case-insensitively (RFC 9110, section 5.1): ``authorization``
        signs in as ``Authorization`` does.
        """
        headers = CaseInsensitiveDict(headers)
        with self.lock:
            self.request_count += 1
            fault = self.faults.popleft() if self.faults else None
        if fault is not None:
            early = self._fault(fault, method)
            if early is not None:
                return early
        try:
            answer = self._route(method, raw_path, headers, body)
        except SimulatorError as error:
            answer = _Answer(error.status, error.body())
        except Refusal as refusal:
            answer = _Answer(refusal.status, _error_body(refusal.message, refusal.detail))
        if fault is not None and fault.kind == "cut":
            if answer.file is None:
                with self.lock:
                    self.faults.appendleft(fault)  # waits for the download it is meant for
            else:
                answer.cut = fault.after
        if fault is not None and fault.kind == "lose-create" and method == "POST":
            # Only the POST it waited for: a request before it was put back in the queue above
            # and is answered as usual.
            answer.drop = True
        return answer

    def _fault(self, fault: SimFault, method: str) -> _Answer | None:
        if fault.kind == "429":
            return _Answer(
                429,
                _error_body("Rate limit exceeded", "Too many requests"),
                {"Retry-After": str(fault.retry_after), "X-RateLimit-Limit": "1000"},
            )
        if fault.kind == "429-bare":
            return _Answer(429, _error_body("Rate limit exceeded", "Too many requests"))
        if fault.kind in {"500", "503"}:
            message = "Internal Server Error" if fault.kind == "500" else "Service Unavailable"
            return _Answer(int(fault.kind), _error_body(message, "The instance failed"))
        if fault.kind == "drop":
            return _Answer(0, drop=True)
        if fault.kind == "slow":
            time.sleep(fault.delay)
            return None
        if fault.kind == "reject":
            return _Answer(fault.status, _error_body(fault.message, "Rejected by the simulator"))
        if fault.kind == "lose-create" and method != "POST":
            with self.lock:
                self.faults.appendleft(fault)  # waits for the POST it is meant for
        return None

    def _route(
        self, method: str, raw_path: str, headers: CaseInsensitiveDict[str], body: bytes | Upload
    ) -> _Answer:
        parts = urlsplit(raw_path)
        path = parts.path
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        upload = body if isinstance(body, Upload) else None
        body = body if isinstance(body, bytes) else b""
        if path == "/oauth_token.do" and method == "POST":
            form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
            return self.token(form, headers.get("Authorization"))
        prefix = next((p for p in _API_PREFIXES if path.startswith(p)), None)
        attachment = _attachment_route(path)
        if prefix is None and attachment is None:
            raise SimulatorError(400, "Requested URI does not represent any resource", path)
        user = self.user_of(headers.get("Authorization"))
        if user is None:
            raise SimulatorError(
                401, "User Not Authenticated", "Required to provide Auth information"
            )
        # The instance's scheduled jobs have run by the time anyone asks (its clock, no sleep).
        self.autoclose.run(self)
        limited: dict[str, str] = {}
        if self.rate_limiter is not None:
            decision = self.rate_limiter.check(user)
            if not decision.allowed:
                return _Answer(
                    429,
                    _error_body(
                        "Rate limit exceeded",
                        f"Too many requests from user {user}; retry after the window resets",
                    ),
                    decision.headers,
                )
            limited = decision.headers
        if attachment is not None:
            answer = self._serve_attachment(method, attachment, params, headers, upload, user)
            answer.headers.update(limited)
            return answer
        assert prefix is not None
        if not _accepts_json(headers.get("Accept")):
            raise SimulatorError(
                406, "Not Acceptable", "The simulator answers application/json only"
            )
        v1 = "/v1/" in prefix
        rest = path[len(prefix) :].strip("/").split("/")
        table = rest[0]
        sys_id = rest[1] if len(rest) > 1 else None
        self.table(table)
        payload: dict[str, Any] = {}
        if method in {"POST", "PATCH", "PUT"}:
            media_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
            if media_type != "application/json":
                raise SimulatorError(415, "Unsupported Media Type", "Content-Type must be JSON")
            try:
                decoded = json.loads(body or b"{}")
            except ValueError:
                raise SimulatorError(
                    400, "Exception while reading request", "Invalid JSON"
                ) from None
            if not isinstance(decoded, dict):
                raise SimulatorError(400, "Exception while reading request", "Not an object")
            payload = decoded
            if table in {"sys_journal_field", "sys_choice", "sys_attachment"}:
                raise SimulatorError(403, "Operation Failed", "ACL Exception Insert Failed")
        answer = self._serve_table(method, table, sys_id, params, payload, user, v1)
        answer.headers.update(limited)
        if method in {"POST", "PATCH", "PUT"} and _is_true(headers.get("X-no-response-body")):
            answer.body = None  # the write is done; its record is not sent back
        return answer

    def _serve_table(
        self,
        method: str,
        table: str,
        sys_id: str | None,
        params: Mapping[str, str],
        payload: Mapping[str, Any],
        user: str,
        v1: bool,
    ) -> _Answer:
        by_label = _is_true(params.get("sysparm_input_display_value"))
        if sys_id is None:
            if method == "GET":
                return self._list(table, params, v1)
            if method == "POST":
                new_id = self.insert(table, payload, user=user, input_display=by_label)
                record = self.tables[table].records[new_id]
                location = f"{self.base_url}/api/now/table/{table}/{new_id}"
                return _Answer(
                    201, {"result": self.render(table, record, params)}, {"Location": location}
                )
            raise SimulatorError(405, "Method not Supported", f"{method} on a table")
        if method == "GET":
            with self.lock:
                found = self.tables[table].records.get(sys_id)
                if found is None:
                    raise SimulatorError(
                        404,
                        "No Record found",
                        "Record doesn't exist or ACL restricts the record retrieval",
                    )
                return _Answer(200, {"result": self.render(table, found, params)})
        if method in {"PATCH", "PUT"}:
            record = self.update(table, sys_id, payload, user=user, input_display=by_label)
            return _Answer(200, {"result": self.render(table, record, params)})
        if method == "DELETE":
            self.delete(table, sys_id)
            return _Answer(204)
        raise SimulatorError(405, "Method not Supported", method)

    def _serve_attachment(
        self,
        method: str,
        rest: list[str],
        params: Mapping[str, str],
        headers: CaseInsensitiveDict[str],
        upload: Upload | None,
        user: str,
    ) -> _Answer:
        """The Attachment API (see :mod:`.attachments`)."""
        files = self.attachments
        wants_json = _accepts_json(headers.get("Accept"))
        match method, rest:
            case "GET", [sys_id, "file"]:
                where, file_headers = files.download(sys_id)
                return _Answer(200, None, file_headers, file=where)
            case _ if not wants_json:
                raise SimulatorError(406, "Not Acceptable", "The metadata is JSON")
            case "GET", []:
                return self._list(
                    "sys_attachment",
                    params,
                    False,
                    path="/api/now/attachment",
                    show=lambda record: files.metadata(record["sys_id"]),
                )
            case "GET", [sys_id]:
                return _Answer(200, {"result": files.metadata(sys_id)})
            case "POST", ["file"]:
                sys_id = files.post_file(params, upload, user)
            case "POST", ["upload"]:
                sys_id = files.post_upload(upload, user)
            case "DELETE", [sys_id]:
                files.metadata(sys_id)  # 404 first
                files.delete(sys_id)
                return _Answer(204)
            case _:
                raise SimulatorError(405, "Method not Supported", f"{method} on attachments")
        location = f"{self.base_url}/api/now/attachment/{sys_id}"
        return _Answer(201, {"result": files.metadata(sys_id)}, {"Location": location})

    def _list(
        self,
        table: str,
        params: Mapping[str, str],
        v1: bool,
        *,
        path: str = "",
        show: Callable[[dict[str, str]], dict[str, Any]] | None = None,
    ) -> _Answer:
        """A page of ``table``'s records matching ``sysparm_query``, with the paging headers
        (``path``: the list's own path in the ``Link`` URLs; ``show``: how a record is shown)."""
        limit = _int(params.get("sysparm_limit"), 10_000)
        limit = max(1, min(limit, self.max_limit))
        offset = max(0, _int(params.get("sysparm_offset"), 0))
        with self.lock:
            matched = self.select(table, params.get("sysparm_query", ""))
            shown = show or (lambda record: self.render(table, record, params))
            page = [shown(r) for r in matched[offset : offset + limit]]
        total = len(matched)
        if not page and v1:
            raise SimulatorError(404, "No Record found", "Records not found")
        headers = {"X-Total-Count": str(total)}
        # pysnc asks for no Link header (sysparm_suppress_pagination_header) on large queries.
        suppressed = _is_true(params.get("sysparm_suppress_pagination_header"))
        where = path or f"/api/now/table/{table}"
        link = "" if suppressed else self._links(where, params, offset, limit, total)
        if link:
            headers["Link"] = link
        return _Answer(200, {"result": page}, headers)

    def _links(
        self, path: str, params: Mapping[str, str], offset: int, limit: int, total: int
    ) -> str:
        def url(at: int) -> str:
            query = {**params, "sysparm_offset": str(at), "sysparm_limit": str(limit)}
            return f"{self.base_url}{path}?{urlencode(query)}"

        last = max(0, ((total - 1) // limit) * limit) if total else 0
        links = [f'<{url(0)}>;rel="first"']
        if offset > 0:
            links.append(f'<{url(max(0, offset - limit))}>;rel="prev"')
        if offset + limit < total:
            links.append(f'<{url(offset + limit)}>;rel="next"')
        links.append(f'<{url(last)}>;rel="last"')
        return ",".join(links)


_INTEGER: Final = re.compile(r"(-?[0-9]+)?")  # an empty value clears the field


def _attachment_route(path: str) -> list[str] | None:
    """The path's parts after ``/api/now[/v1]/attachment``, or ``None`` for another API."""
    for prefix in _ATTACHMENT_PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return [part for part in path[len(prefix) :].split("/") if part]
    return None


def _choice_value(table: str, name: str, text: str) -> str:
    """The stored value of a choice given by its label (or by its value), as the table's own
    choice list, else the one of ``task``, says; ``text`` itself when no choice matches."""
    for scope in (table, "task"):
        choices = CHOICES.get((scope, name))
        if choices:
            by_label = {label.lower(): value for value, label in choices}
            return by_label.get(text.strip().lower(), text)
    return text


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(user, password)`` of an HTTP Basic ``Authorization`` value (scheme in any case)."""
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(credentials.strip()).decode().partition(":")
    except ValueError:
        return None
    return user, password


def _accepts_json(accept: str | None) -> bool:
    """Whether an ``Accept`` header admits JSON (absent, ``*/*``, ``application/*`` or JSON)."""
    if not accept:
        return True
    for item in accept.split(","):
        media_type, *parameters = (part.strip().lower() for part in item.split(";"))
        weights = [p.removeprefix("q=") for p in parameters if p.startswith("q=")]
        if weights and _float(weights[0]) == 0.0:
            continue  # q=0 means "not acceptable" (RFC 9110, section 12.4.2)
        if media_type in {"*/*", "application/*", "application/json"}:
            return True
    return False


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() == "true"


def _error_body(message: str, detail: str) -> dict[str, Any]:
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _as_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return _as_string(value.get("value", ""))
    return str(value)


def _field_key(name: str) -> Callable[[dict[str, str]], tuple[int, float, str]]:
    def key(record: dict[str, str]) -> tuple[int, float, str]:
        return _sort_key(record.get(name, ""))

    return key


def _sort_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


class _Handler(BaseHTTPRequestHandler):
    """One connection; keep-alive, no Nagle, the body always read."""

    sim: ServiceNowSimulator
    protocol_version = "HTTP/1.1"
    server_version = "ServiceNow-Simulator"
    timeout = 30

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a benchmark must not pay for an access log."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self._upload(length) if self._is_upload() else self._bytes(length)
        if body is None:
            # The client went away mid-request (killed between the headers and the body): a
            # real instance never acts on half a request, so neither does the simulator.
            self.close_connection = True
            return
        try:
            answer = self.sim.answer(self.command, self.path, dict(self.headers.items()), body)
        finally:
            if isinstance(body, Upload):
                body.path.unlink(missing_ok=True)  # adopted files were moved away already
        if answer.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if answer.file is not None:
            self._send_file(answer)
            return
        payload = b"" if answer.body is None else json.dumps(answer.body).encode()
        self.send_response(answer.status)
        if answer.body is not None:
            self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _is_upload(self) -> bool:
        path = urlsplit(self.path).path
        return self.command == "POST" and _attachment_route(path) is not None

    def _bytes(self, length: int) -> bytes | None:
        body = self.rfile.read(length) if length else b""
        return body if len(body) == length else None

    def _upload(self, length: int) -> Upload | None:
        """An attachment upload's body, spooled to a file of the store a block at a time."""
        with self.sim.attachments.spool() as target:
            left = length
            while left > 0 and (block := self.rfile.read(min(left, 1 << 20))):
                target.write(block)
                left -= len(block)
        spooled = Path(target.name)
        if left > 0:
            spooled.unlink(missing_ok=True)
            return None
        return Upload(spooled, self.headers.get("Content-Type") or "")

    def _send_file(self, answer: _Answer) -> None:
        assert answer.file is not None
        with answer.file as stream:
            self.send_response(answer.status)
            self.send_header("Content-Length", str(os.fstat(stream.fileno()).st_size))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if answer.cut is None:
                shutil.copyfileobj(stream, self.wfile, 1 << 20)
                return
            self.wfile.write(stream.read(answer.cut))
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    """Serves :class:`_Handler` connections, each in a daemon thread."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-request (killed, or done waiting) is routine: a broken pipe
        # or a reset is worth a debug line, not a traceback on the terminal; anything else is.
        if isinstance(error := sys.exc_info()[1], ConnectionError | ssl.SSLEOFError):
            logger.info("client %s went away mid-request: %r", client_address, error)
        else:
            super().handle_error(request, client_address)


def iter_records(sim: ServiceNowSimulator, table: str) -> Iterable[dict[str, str]]:
    """Every record of ``table`` (a snapshot)."""
    with sim.lock:
        return [dict(r) for r in sim.tables[table].records.values()]
