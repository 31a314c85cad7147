"""The ServiceNow connector: the Table API on incident, requests, changes and problems.

What it does about ServiceNow's traps (see ``shared/design/API-FACTS.md``):

- **Incremental reads lose nothing at second precision.** ``sys_updated_on`` has whole
  seconds, and more records than fit in a page can share one. The cursor is the last second
  read *plus the records already yielded in that second* (sys_id and a digest of the row's
  content, :mod:`usm_bridge.content_digest`); the next read asks ``sys_updated_on>=<second>``
  and drops only rows whose content is unchanged, so a record changed again within the same
  second still comes through, even where ``sys_mod_count`` cannot be read or does not move.
  When a page is mostly one second, the read drains that second with a keyset
  (``sys_updated_on=<s>^sys_id><last>^ORDERBYsys_id``) instead of offsets, so records changing
  meanwhile can neither be skipped nor hold the read in place, then goes on with
  ``sys_updated_on><s>``.
- **Paging is never silently truncated**: whether another page exists is read from the ``Link``
  header (``rel="next"``) or ``X-Total-Count``, never guessed from a short page, because an
  instance caps ``sysparm_limit`` on its own.
- **Values are normalised**: every value arrives as a string; reference fields as
  ``{"link", "value"}`` (asked without links anyway) and ``display_value=all`` pairs become their
  stored value. Journal fields (``comments``, ``work_notes``) read empty on the record: their
  entries come from ``sys_journal_field`` and are put under ``"journal"`` (the shape the shipped
  mappings read).
- **Writes are idempotent and minimal**: a create carries ``correlation_id`` /
  ``correlation_display`` and is preceded by a lookup (the engine's, when it just made one),
  and a create whose answer was lost is found again instead of repeated; an update reads the
  record first and PATCHes only the fields that differ; a state change brings the fields its
  business rules require (``close_code`` ...) from the mapping's ``status_fields``.
- **Queries cannot be injected**: values go through :mod:`usm_bridge_servicenow.query`.
- **Files travel in chunks, and new ones are found**: the Attachment API lists, streams and
  takes files (:mod:`usm_bridge_servicenow.attachment_api`); attaching does not update a
  record, so each read also lists the files attached since the cursor (``sys_attachment`` by
  ``sys_created_on``, paged by second as records are) and yields their records again (not
  those it yielded with these files already).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar, Final, Literal, Unpack, cast
from urllib.parse import quote, urlencode

import requests
from pydantic import Field, JsonValue, SecretStr, field_validator, model_validator
from usm_bridge.connector import (
    Checkpoint,
    CheckResult,
    CommentDraft,
    CommentFile,
    ConnectorSettings,
    RawRecord,
    RemoteAttachment,
    RemoteDraft,
    RemoteRef,
    Vocabulary,
    VocabularyValue,
)
from usm_bridge.content_digest import content_digest
from usm_bridge.durations import Duration, PageSize
from usm_bridge.errors import PermanentRemoteError, RemoteError, RetriableRemoteError
from usm_bridge.http_connector import HttpConnector, HttpConnectorSettings, HttpSeams
from usm_bridge.mapping.timestamp_shapes import read_fixed_shape

from .attachment_api import (
    ATTACHMENT_PATH,
    BodyMismatch,
    checked_download,
    files_note,
    remote_attachment,
    tied_to_entries,
    upload_body,
)
from .auth import OAuthPasswordAuth
from .query import Condition, OrderBy, encode_query, is_safe_value, safe_prefix

__all__ = ["DEFAULT_TABLES", "ServiceNowConnector", "ServiceNowSettings", "normalise_value"]

_log = logging.getLogger(__name__)

#: The tables a service organisation uses, with the field that holds each one's state.
DEFAULT_TABLES: Final = {
    "incident": "state",
    "sc_request": "request_state",
    "sc_req_item": "state",
    "change_request": "state",
    "problem": "state",
}
JOURNAL_ELEMENTS: Final = ("comments", "work_notes")
CHOICE_ELEMENTS: Final = ("state", "impact", "urgency", "priority", "hold_reason", "close_code")
_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
#: How many of the integration user's newest entries on a record a comment write compares.
_OWN_ENTRIES: Final = 100
#: The digest of a record a page read in an earlier second than its last: forgotten when the
#: page's last second comes (never a digest: were it ever remembered, it is read once more).
_FORGOTTEN: Final = ""
_SEEN_KEY: Final = 16  # sys_id characters kept per record in a cursor (64 bits)
#: The cursor format: 2 remembers content digests; 1 (``sys_mod_count``) still loads.
_CURSOR_VERSION: Final = 2
_TABLE_NAME: Final = r"^[a-z][a-z0-9_]*$"
#: What a file read is remembered by within its second: files do not change, only come and go.
_FILE_SEEN: Final = "file"
#: Where following files starts when an instance holds none yet.
_EPOCH: Final = "1970-01-01 00:00:00"


class ServiceNowSettings(HttpConnectorSettings):
    """Settings of one ServiceNow connector instance (a config file's ``settings`` table).

    Timeouts and the retry policy are :class:`~usm_bridge.http_connector.HttpConnectorSettings`.
    """

    instance_url: str = Field(examples=["https://example.service-now.com"])
    """The instance's address."""
    tables: list[str] = Field(default_factory=lambda: ["incident"], min_length=1)
    """The tables this instance syncs (incident, sc_request, sc_req_item, change_request,
    problem)."""
    create_table: str | None = Field(default=None, examples=["incident"])
    """Where new records go (one of ``tables``); the first of ``tables`` when not set."""
    state_fields: dict[str, str] = Field(default_factory=dict)
    """The state field of a table where it is not the usual one (``sc_request`` keeps it in
    ``request_state``)."""
    auth: Literal["basic", "oauth"] = "basic"
    """``basic`` (username and password) or ``oauth`` (the password grant: ``client_id`` and
    ``client_secret`` too)."""
    username: str = Field(examples=["usm.bridge"])
    """The integration user's name."""
    password: SecretStr
    """The integration user's password."""
    client_id: str | None = Field(default=None, examples=["usm-bridge"])
    """The OAuth client's id (``auth = "oauth"``)."""
    client_secret: SecretStr | None = None
    """The OAuth client's secret (``auth = "oauth"``)."""
    token_margin: Duration = 60.0
    """Renew an OAuth access token this long before it expires."""
    # v2 answers an empty match with 200 and ``[]``.
    api_version: Literal["v1", "v2"] = "v2"
    """The Table API version in the path."""
    page_size: PageSize = 1000
    """Records asked for per request."""
    fields: list[str] | None = Field(default=None, examples=[["number", "short_description"]])
    """The fields read (``sysparm_fields``); every field when not set. The fields the sync needs
    are always added."""
    read_journal: bool = True
    """Read comments and work notes (the journal) with the records."""
    journal_batch: int = Field(default=200, ge=1, le=1000)
    """How many records' journal entries one ``sys_journal_field`` request asks for."""
    correlation_display: str = "usm-bridge"
    """The ``correlation_display`` the bridge writes on the records it creates."""
    read_attachments: bool = True
    """List each record's files with it (``RawRecord.attachments``): one Attachment API request
    per ``journal_batch`` records read, none for a table that held no file when files were last
    followed."""
    follow_attachments: bool = True
    """Also yield, each cycle, the records that got files since the last one (attaching a file
    does not update a record): one Attachment API request per table and cycle, and one Table
    API request per ``journal_batch`` such records."""

    @field_validator("tables")
    @classmethod
    def _table_names(cls, tables: list[str]) -> list[str]:
        import re

        for table in tables:
            if not re.match(_TABLE_NAME, table):
                raise ValueError(f"{table!r} is not a ServiceNow table name")
        if len(set(tables)) != len(tables):
            raise ValueError("a table is listed twice")
        return tables

    @model_validator(mode="after")
    def _oauth_complete(self) -> ServiceNowSettings:
        if self.auth == "oauth" and (self.client_id is None or self.client_secret is None):
            raise ValueError("auth = 'oauth' needs client_id and client_secret")
        if self.create_table is not None and self.create_table not in self.tables:
            raise ValueError("create_table must be one of tables")
        return self

    def state_field(self, table: str) -> str:
        """The field holding ``table``'s state."""
        return self.state_fields.get(table, DEFAULT_TABLES.get(table, "state"))


def normalise_value(value: Any) -> JsonValue:
    """A Table API value as the stored string: references and display pairs to their value."""
    if isinstance(value, dict):
        return normalise_value(value.get("value", ""))
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value
    return cast(JsonValue, value)


def _with_query(path: str, params: Mapping[str, str | int | float]) -> str:
    """``path?query`` with commas left as they are.

    Commas are legal in a query string, and keeping them keeps a long ``IN`` list of sys_ids
    from becoming one 7,000-character token, on which the core's secret-redaction regexes
    (run over every URL) spend time quadratic in the token's length.
    """
    return f"{path}?{urlencode(params, quote_via=quote, safe=',')}"


def _as_text(value: Any) -> str:
    normal = normalise_value(value)
    return normal if isinstance(normal, str) else json.dumps(normal, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# The cursor
# ---------------------------------------------------------------------------------------------


@dataclass
class _Position:
    """How far one table was read: the last second, and what was yielded within it.

    ``seen`` maps the records yielded within ``second`` (sys_id, shortened) to the digest of
    the content they were read with: a record is skipped only with that same content.
    """

    second: str | None = None
    seen: dict[str, str] = field(default_factory=dict)

    def remembers(self, second: str, sys_id: str) -> bool:
        """Whether a record of ``second`` was yielded (only then is its digest compared)."""
        return second == self.second and sys_id[:_SEEN_KEY] in self.seen

    def already(self, second: str, sys_id: str, digest: str) -> bool:
        return second == self.second and self.seen.get(sys_id[:_SEEN_KEY]) == digest

    def advance(self, second: str, sys_id: str, digest: str) -> None:
        if second != self.second:
            self.second, self.seen = second, {}
        self.seen[sys_id[:_SEEN_KEY]] = digest


def _updated_of(row: Mapping[str, Any]) -> datetime | None:
    """``sys_updated_on`` as an aware UTC datetime; ``None`` when absent or unreadable (the
    record is still read: the time only measures lag, the cursor keeps the text)."""
    text = row.get("sys_updated_on")
    if not text:
        return None
    text = str(text)
    moment = read_fixed_shape(text, _TIME_FORMAT)  # the shape the Table API sends
    if moment is None:
        try:
            moment = datetime.strptime(text, _TIME_FORMAT)
        except ValueError:
            return None
    return moment.replace(tzinfo=UTC)


def _second(row: Mapping[str, Any], field: str = "sys_updated_on") -> str:
    return str(row.get(field, ""))


def _positions(items: Any, tables: list[str], version: int) -> dict[str, _Position]:
    if not isinstance(items, dict):
        raise TypeError("positions are not an object")
    positions = {table: _Position() for table in tables}
    for table, item in items.items():
        if table in positions:
            seen = {str(k): str(v) for k, v in dict(item.get("seen", {})).items()}
            # Version 1 remembered sys_mod_count, not content: its last second is read
            # once more (the engine recognises unchanged records), never skipped.
            positions[table] = _Position(item.get("s"), seen if version != 1 else {})
    return positions


@dataclass
class _Cursor:
    """How far each table's records (``tables``) and the files attached to them (``files``,
    by ``sys_attachment.sys_created_on``) were read."""

    tables: dict[str, _Position]
    files: dict[str, _Position]

    @classmethod
    def load(cls, cursor: str | None, tables: list[str]) -> _Cursor:
        if not cursor:
            return cls(_positions({}, tables, _CURSOR_VERSION), _positions({}, tables, 2))
        try:
            state = json.loads(cursor)
            version = state.get("v", 1)
            if version not in (1, _CURSOR_VERSION):
                raise ValueError(f"unknown cursor version {version!r}")
            read = _positions(state["tables"], tables, version)
            files = _positions(state.get("files", {}), tables, version)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ValueError("not a cursor of the ServiceNow connector") from None
        for table, position in files.items():
            if position.second is None and read[table].second is not None:
                # A cursor from before files were followed: the files of the records' last
                # second on are looked at (at most a cycle's worth more than needed).
                position.second = read[table].second
        return cls(read, files)

    def dump(self) -> str:
        def shown(positions: dict[str, _Position]) -> dict[str, Any]:
            return {
                table: {"s": pos.second, "seen": pos.seen}
                for table, pos in positions.items()
                if pos.second is not None
            }

        state = {"v": _CURSOR_VERSION, "tables": shown(self.tables), "files": shown(self.files)}
        return json.dumps(state, separators=(",", ":"), sort_keys=True)


@dataclass
class _Page:
    records: list[dict[str, Any]]
    has_next: bool
    total: int | None


# ---------------------------------------------------------------------------------------------
# The connector
# ---------------------------------------------------------------------------------------------


class ServiceNowConnector(HttpConnector[ServiceNowSettings]):
    """ServiceNow through the Table API; see the module docstring for how it copes."""

    kind: ClassVar[str] = "servicenow"
    #: Reads in the cycle's process, not a child (usm_bridge.sync.child_read): measured side
    #: by side (bench/README.md, 2026-12-08), a child read was slower than main on PostgreSQL
    #: in both rounds and no steadier on SQLite: an incident maps too cheaply for the
    #: transfer of each record to pay. The hooks a child read needs are kept (its
    #: clients let go of inherited connections, HttpConnector.after_fork; the OAuth token is
    #: the child's own; which table holds each record is handed back, read_state).
    reads_in_child: ClassVar[bool] = False
    settings_model: ClassVar[type[ConnectorSettings]] = ServiceNowSettings
    description: ClassVar[str] = "ServiceNow Table API (incident, requests, changes, problems)"

    def __init__(self, name: str, settings: ConnectorSettings, **seams: Unpack[HttpSeams]) -> None:
        super().__init__(name, settings, **seams)
        config = self.config
        self.base_url = config.instance_url.rstrip("/") + "/"
        password = config.password.get_secret_value()
        secrets = [password]
        if config.client_secret is not None:
            secrets.append(config.client_secret.get_secret_value())
        self._oauth: OAuthPasswordAuth | None = None
        if config.auth == "oauth":
            assert config.client_id is not None and config.client_secret is not None
            self._oauth = OAuthPasswordAuth(
                # The token endpoint takes a form, so no JSON Content-Type on this client.
                self.http_client(self.base_url, secrets=secrets),
                client_id=config.client_id,
                client_secret=config.client_secret.get_secret_value(),
                username=config.username,
                password=password,
                margin=config.token_margin,
                clock=self._clock,
            )
        auth = self._oauth if self._oauth is not None else (config.username, password)
        self.http = self.http_client(
            self.base_url, auth=auth, headers={"Content-Type": "application/json"}, secrets=secrets
        )
        self._tables_of: dict[str, str] = {}
        #: Requests sent to the Table API (not counting retries): for benchmarks.
        self.requests = 0

    # -- plumbing ------------------------------------------------------------------------------

    def _path(self, table: str, sys_id: str | None = None) -> str:
        version = f"{self.config.api_version}/" if self.config.api_version else ""
        path = f"api/now/{version}table/{table}"
        return f"{path}/{sys_id}" if sys_id else path

    def _send(self, method: str, path: str, **options: Any) -> requests.Response:
        """One Table API call; with OAuth, a 401 renews the token once and tries again.

        :raises RetriableRemoteError: a 401 on a request whose body could be read only once
            (an upload's chunks given as an iterator): the token is renewed for the next
            request, and the caller sends the body again from its start.
        """
        self.requests += 1
        try:
            return self.http.request(method, path, **options)
        except PermanentRemoteError as error:
            if error.status != 401 or self._oauth is None:
                raise
            self._oauth.invalidate()
            if isinstance(options.get("data"), Iterator) or options.get("once"):
                # Its body went with the refused request: sent again it would be empty under
                # the whole's Content-Length, and the instance would wait for the rest until a
                # timeout. The write is retried from its source (the outbox's next try).
                raise RetriableRemoteError(
                    "the instance refused the access token (a new one is asked for the next "
                    "request); not sent again: its body could be read only once",
                    status=401, remote_message=error.remote_message, method=error.method,
                    url=error.url,
                ) from None  # fmt: skip
            self.requests += 1
            return self.http.request(method, path, **options)

    def _get_page(
        self,
        table: str,
        query: str,
        *,
        limit: int,
        offset: int = 0,
        fields: list[str] | None = None,
    ) -> _Page:
        params: dict[str, str | int | float] = {
            "sysparm_query": query,
            "sysparm_limit": limit,
            "sysparm_offset": offset,
            "sysparm_display_value": "false",
            "sysparm_exclude_reference_link": "true",
        }
        if fields:
            params["sysparm_fields"] = ",".join(fields)
        return self._page_at(self._path(table), table, params, offset, limit)

    def _page_at(
        self, path: str, what: str, params: Mapping[str, str | int | float], offset: int, limit: int
    ) -> _Page:
        """One page of a list (``what``, in errors), its end read from ``Link`` or
        ``X-Total-Count``, never guessed from a short page."""
        try:
            response = self._send("GET", _with_query(path, params))
        except PermanentRemoteError as error:
            # v1 answers an empty match with 404 "No Record found"; v2 with 200 and [].
            if error.status == 404 and "no record" in (error.remote_message or "").lower():
                return _Page([], False, 0)
            raise
        try:
            result = response.json()["result"]
        except (ValueError, KeyError, TypeError):
            raise RetriableRemoteError(
                f"the instance answered {what} without a JSON result (a proxy page?)",
                status=response.status_code,
            ) from None
        if not isinstance(result, list):
            raise RetriableRemoteError(f"the instance answered {what} with a result not a list")
        records = [
            # Most values are text already: kept without a call (a page holds tens of thousands).
            {
                key: value if type(value) is str else normalise_value(value)
                for key, value in row.items()
            }
            for row in result
            if isinstance(row, dict)
        ]
        total_header = response.headers.get("X-Total-Count")
        total = int(total_header) if total_header and total_header.isdigit() else None
        if response.headers.get("Link"):
            has_next = "next" in response.links
        elif total is not None:
            has_next = offset + len(records) < total
        else:
            has_next = len(records) >= limit
        if has_next and not records:
            raise RetriableRemoteError(
                f"the instance announced another page of {what} but sent an empty one"
            )
        return _Page(records, has_next, total)

    def _all(self, table: str, query: str, fields: list[str] | None = None) -> list[dict[str, Any]]:
        """Every record of a small, stable result (choices, journal entries), paged by offset."""
        rows: list[dict[str, Any]] = []
        while True:
            page = self._get_page(
                table, query, limit=self.config.page_size, offset=len(rows), fields=fields
            )
            rows.extend(page.records)
            if not page.has_next:
                return rows

    # -- reaching the tool ---------------------------------------------------------------------

    def check(self) -> CheckResult:
        """Read one record of every configured table with the configured credentials."""
        counts: dict[str, str] = {}
        try:
            for table in self.config.tables:
                page = self._get_page(table, "", limit=1, fields=["sys_id"])
                counts[f"records in {table}"] = "?" if page.total is None else str(page.total)
        except RemoteError as error:
            return CheckResult(ok=False, detail=self.http.redact(str(error)))
        return CheckResult(
            ok=True,
            detail=f"read {', '.join(self.config.tables)} as {self.config.username}",
            facts={
                "instance": self.base_url,
                "account": self.config.username,
                "auth": self.config.auth,
                "api": f"Table API {self.config.api_version}",
                **counts,
            },
        )

    def discover(self) -> Vocabulary:
        """The choice lists of every table, from ``sys_choice`` (a table's own before task's)."""
        vocabulary = Vocabulary()
        other: dict[str, list[VocabularyValue]] = {}
        for table in self.config.tables:
            state_field = self.config.state_field(table)
            elements = sorted({*CHOICE_ELEMENTS, state_field})
            query = encode_query(
                [
                    Condition("name", "IN", (table, "task")),
                    Condition("element", "IN", tuple(elements)),
                    Condition("inactive", "=", "false"),
                ],
                [OrderBy("element"), OrderBy("sequence"), OrderBy("value")],
            )
            rows = self._all(
                "sys_choice", query, fields=["name", "element", "value", "label", "sequence"]
            )
            # A table's own choice list for an element replaces the one it inherits from task.
            own = {str(row.get("element")) for row in rows if row.get("name") == table}
            by_element: dict[str, dict[str, dict[str, Any]]] = {}
            for row in rows:
                element = str(row.get("element", ""))
                value = str(row.get("value", ""))
                if not value or (element in own and row.get("name") != table):
                    continue
                by_element.setdefault(element, {})[value] = row
            for element, choices in by_element.items():
                values = [
                    VocabularyValue(
                        value=value, label=str(row.get("label") or "") or None, scope=table
                    )
                    for value, row in choices.items()
                ]
                if element == state_field:
                    vocabulary.statuses.extend(values)
                elif element == "priority":
                    vocabulary.priorities.extend(values)
                else:
                    other.setdefault(element, []).extend(values)
            vocabulary.types.append(VocabularyValue(value=table, label=table, scope=table))
        vocabulary.other = other
        return vocabulary

    # -- reading -------------------------------------------------------------------------------

    def _read_fields(self) -> list[str] | None:
        if self.config.fields is None:
            return None
        wanted = [*self.config.fields, "sys_id", "sys_updated_on", "sys_mod_count", "number"]
        return list(dict.fromkeys(wanted))

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        """Every record changed since ``cursor``, table after table, a checkpoint per page;
        then, per table, the records that got files since ``cursor`` (attaching a file does
        not update a record, so its ``sys_updated_on`` never shows it), yielded again.

        :raises ValueError: ``cursor`` was not made by this connector.
        """
        state = _Cursor.load(cursor, self.config.tables)
        for table in self.config.tables:
            files = state.files[table]
            if files.second is None and self.config.follow_attachments:
                # A first read: files from the newest one there now on are looked at after it
                # (an older file is on a record this read yields anyway).
                files.second = self._newest_file_second(table)
            # The files each record was yielded with in this read, of those following files
            # looks at: such a record is not yielded again for them (see _Given).
            given = _Given(files.second) if self.config.follow_attachments else None
            follow_page: Callable[[str, int], _Page] = partial(self._file_page, table)
            list_files, listed = True, None
            if self.config.follow_attachments and files.second == _EPOCH:
                # A table that held no file when files were last looked at needs no listing
                # per page: following files' first page, asked now instead of after the
                # records, says which of them got one since (a backfill of such a table costs
                # no request more), so a record edited and given its first file in this cycle
                # is yielded once, with it, not bare and then again.
                first_query = encode_query(
                    [Condition("sys_created_on", ">=", _EPOCH)],
                    [OrderBy("sys_created_on"), OrderBy("sys_id")],
                )
                first = self._file_page(table, first_query, self.config.page_size)
                follow_page = _AskedOnce(follow_page, first_query, first)
                # More files than a page: the table's pages are listed as any table's.
                list_files, listed = first.has_next, None if first.has_next else first.records
            yield from self._read_by_time(
                table,
                state.tables[table],
                "sys_updated_on",
                partial(self._table_page, table),
                content_digest,
                partial(self._records_of, table, list_files=list_files, listed=listed, given=given),
                state,
            )
            if self.config.follow_attachments:
                yield from self._read_by_time(
                    f"the files of {table}",
                    files,
                    "sys_created_on",
                    follow_page,
                    _file_seen,
                    partial(self._records_with_files, table, given=given),
                    state,
                )
        yield Checkpoint(cursor=state.dump())

    def _table_page(self, table: str, query: str, limit: int) -> _Page:
        return self._get_page(table, query, limit=limit, fields=self._read_fields())

    def _records_of(
        self,
        table: str,
        rows: list[dict[str, Any]],
        *,
        list_files: bool = True,
        listed: list[dict[str, Any]] | None = None,
        given: _Given | None = None,
    ) -> Iterator[RawRecord]:
        """``rows`` as records with their journal and (``list_files``) their files, each
        asked for a ``journal_batch`` of records at a time: never a request per record.
        ``listed``: every file of the table, listed already (no request). ``given`` notes the
        files each record is yielded with."""
        journals = self._journals(rows) if self.config.read_journal else {}
        file_rows: list[dict[str, Any]] = []
        if listed is not None:
            asked = {str(row.get("sys_id", "")) for row in rows}
            file_rows = [f for f in listed if str(f.get("table_sys_id") or "") in asked]
        elif list_files and self.config.read_attachments:
            file_rows = self._file_rows(table, rows)
        files: dict[str, list[RemoteAttachment]] = {}
        for row in file_rows:
            record = str(row.get("table_sys_id") or "")
            files.setdefault(record, []).append(remote_attachment(row, record))
            if given is not None:
                given.note(record, row)
        for row in rows:
            sys_id = str(row.get("sys_id", ""))
            yield self._record(table, row, journals.get(sys_id, []), files.get(sys_id, []))

    def _read_by_time(
        self,
        what: str,
        position: _Position,
        field: str,
        page_of: Callable[[str, int], _Page],
        digest: Callable[[dict[str, Any]], str],
        emit: Callable[[list[dict[str, Any]]], Iterator[RawRecord]],
        state: _Cursor,
    ) -> Iterator[RawRecord | Checkpoint]:
        """Rows of one list by the second in ``field``, from ``position`` on, each page's fresh
        rows handed to ``emit`` and followed by a checkpoint (see the module docstring)."""
        limit = self.config.page_size
        order = [OrderBy(field), OrderBy("sys_id")]
        phase = "from" if position.second else "all"
        after_id = ""  # the keyset while draining one second
        while True:
            second = position.second or ""
            if phase == "drain":
                conditions = [Condition(field, "=", second)]
                if after_id:
                    conditions.append(Condition("sys_id", ">", after_id))
                query = encode_query(conditions, [OrderBy("sys_id")])
            elif phase == "after":
                query = encode_query([Condition(field, ">", second)], order)
            elif phase == "from":
                query = encode_query([Condition(field, ">=", second)], order)
            else:
                query = encode_query([], order)
            page = page_of(query, limit)
            fresh = []
            for row in page.records:
                stamp, sys_id = _second(row, field), str(row.get("sys_id", ""))
                if position.second and stamp < position.second:
                    continue  # an instance that ignored the condition: never go back
                # The digest, not sys_mod_count, tells versions apart: a field-level ACL can hide
                # sys_mod_count from the integration user (it then reads empty for every one).
                if position.remembers(stamp, sys_id) and position.already(
                    stamp, sys_id, digest(row)
                ):
                    continue
                fresh.append(row)
            # Only the rows of the page's last second stay remembered (advancing to a new
            # second forgets the others): only theirs is the digest, a JSON walk of the whole
            # record, taken.
            last_second = _second(fresh[-1], field) if fresh else None
            for row in fresh:
                stamp, sys_id = _second(row, field), str(row.get("sys_id", ""))
                position.advance(stamp, sys_id, digest(row) if stamp == last_second else _FORGOTTEN)
            # Advanced before the rows are yielded: the cursor is read only at the checkpoint.
            yield from emit(fresh)
            yield Checkpoint(cursor=state.dump())
            if not page.has_next:
                if phase == "drain":
                    phase, after_id = "after", ""
                    continue
                return
            if phase == "drain":
                next_id = str(page.records[-1].get("sys_id", ""))
                if next_id <= after_id:
                    raise RetriableRemoteError(
                        f"the instance ignored the sys_id keyset while reading {what}"
                    )
                after_id = next_id
                continue
            last = _second(page.records[-1], field)
            in_last = sum(1 for row in page.records if _second(row, field) == last)
            if in_last * 2 > len(page.records) or not fresh:
                # Mostly one second: re-asking ">=" would bring the same rows back; drain it.
                phase, after_id = "drain", str(page.records[-1].get("sys_id", ""))
            else:
                phase = "from"

    # -- files ---------------------------------------------------------------------------------

    def _file_page(self, table: str, query: str, limit: int, offset: int = 0) -> _Page:
        """A page of the Attachment API's listing of ``table``'s files matching ``query``."""
        scoped = f"table_name={table}^{query}" if query else f"table_name={table}"
        params: dict[str, str | int | float] = {
            "sysparm_query": scoped,
            "sysparm_limit": limit,
            "sysparm_offset": offset,
        }
        return self._page_at(ATTACHMENT_PATH, f"the files of {table}", params, offset, limit)

    def _newest_file_second(self, table: str) -> str:
        """When the newest file of ``table`` was attached (or the epoch, when none is)."""
        query = encode_query([], [OrderBy("sys_created_on", descending=True)])
        rows = self._file_page(table, query, 1).records
        return _second(rows[0], "sys_created_on") if rows else _EPOCH

    def _records_with_files(
        self, table: str, files: list[dict[str, Any]], *, given: _Given | None = None
    ) -> Iterator[RawRecord]:
        """The records ``files`` were attached to, read now (a request per ``journal_batch``
        records, not one per record); a record gone meanwhile is left out (nothing to yield),
        and so is one this read yielded with these files already (``given``)."""
        ids = list(
            dict.fromkeys(
                str(row.get("table_sys_id") or "")
                for row in files
                if str(row.get("table_sys_id") or "").isalnum()
                and (given is None or not given.had(row))
            )
        )
        batch = self.config.journal_batch
        for start in range(0, len(ids), batch):
            query = encode_query(
                [Condition("sys_id", "IN", tuple(ids[start : start + batch]))], [OrderBy("sys_id")]
            )
            yield from self._records_of(
                table, self._all(table, query, self._read_fields()), given=given
            )

    def remote_ids(self) -> Iterator[str]:
        """The sys_id of every record in every configured table, for the census.

        Each table is paged with ``sysparm_fields=sys_id`` by a keyset
        (``sys_id><last>^ORDERBYsys_id``), so a record deleted or added meanwhile cannot shift
        the pages and hide another one. Whether another page exists is read as for every read
        (``Link`` / ``X-Total-Count``); an announced page that comes empty, an instance that
        ignores the keyset or the order, or any failed request raises, so a listing is never
        quietly cut short and the census marks nothing on an incomplete one.
        """
        for table in self.config.tables:
            yield from self._table_ids(table)

    def _table_ids(self, table: str) -> Iterator[str]:
        after = ""
        while True:
            conditions = [Condition("sys_id", ">", after)] if after else []
            query = encode_query(conditions, [OrderBy("sys_id")])
            page = self._get_page(table, query, limit=self.config.page_size, fields=["sys_id"])
            ids = [str(row.get("sys_id") or "") for row in page.records]
            if any(not sys_id for sys_id in ids):
                raise RetriableRemoteError(
                    f"the Table API listed a record of {table} without sys_id"
                )
            if ids != sorted(ids) or (ids and ids[0] <= after):
                raise RetriableRemoteError(
                    f"the instance ignored the sys_id keyset while listing {table}: the census "
                    "stops rather than judge from an incomplete listing"
                )
            yield from ids
            if not page.has_next:
                return
            after = ids[-1]

    def _journals(self, rows: list[dict[str, Any]]) -> dict[str, list[JsonValue]]:
        """The journal entries of ``rows``' records, oldest first, by record sys_id."""
        ids = [str(row["sys_id"]) for row in rows if row.get("sys_id")]
        found: dict[str, list[JsonValue]] = {}
        batch = self.config.journal_batch
        for start in range(0, len(ids), batch):
            query = encode_query(
                [
                    Condition("element_id", "IN", tuple(ids[start : start + batch])),
                    Condition("element", "IN", JOURNAL_ELEMENTS),
                ],
                [OrderBy("sys_created_on"), OrderBy("sys_id")],
            )
            fields = [
                "sys_id",
                "element",
                "element_id",
                "value",
                "sys_created_on",
                "sys_created_by",
            ]
            for entry in self._all("sys_journal_field", query, fields):
                found.setdefault(str(entry.get("element_id")), []).append(
                    {key: normalise_value(value) for key, value in entry.items()}
                )
        return found

    def _file_rows(self, table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The ``sys_attachment`` rows of the files on ``rows``' records, oldest first: one
        Attachment API listing per ``journal_batch`` records, paged by offset. Each file goes
        to the record its ``table_sys_id`` names, never by its place in the answer (an
        instance that ignored the condition lists other records' files too: no record asked
        for gets them)."""
        ids = [str(row["sys_id"]) for row in rows if str(row.get("sys_id") or "").isalnum()]
        asked = set(ids)
        found: list[dict[str, Any]] = []
        batch = self.config.journal_batch
        for start in range(0, len(ids), batch):
            query = encode_query(
                [Condition("table_sys_id", "IN", tuple(ids[start : start + batch]))],
                [OrderBy("sys_created_on"), OrderBy("sys_id")],
            )
            offset, limit = 0, self.config.page_size
            while True:
                page = self._file_page(table, query, limit, offset)
                found.extend(
                    row for row in page.records if str(row.get("table_sys_id") or "") in asked
                )
                offset += len(page.records)
                if not page.has_next:
                    break
        return found

    def _record(
        self,
        table: str,
        row: dict[str, Any],
        journal: list[JsonValue],
        files: Iterable[RemoteAttachment] = (),
    ) -> RawRecord:
        sys_id = str(row["sys_id"])
        self._remember(sys_id, table)
        data: dict[str, JsonValue] = {
            key: value for key, value in row.items() if key not in JOURNAL_ELEMENTS
        }
        data["journal"] = journal
        data.setdefault("sys_class_name", table)
        # Parsed from the Table API's JSON: not validated value by value again.
        return RawRecord.from_json(
            data,
            remote_id=sys_id,
            remote_key=str(row.get("number") or "") or None,
            updated=_updated_of(row),
            url=self._url(table, sys_id),
            attachments=tied_to_entries(list(files), journal),
        )

    def read_state(self) -> object | None:
        """Which table holds each record read (bounded), for the parent's pushes (with more
        than one table, a record not known costs a request per table to find)."""
        return dict(self._tables_of) if self._tables_of else None

    def adopt_read_state(self, state: object) -> None:
        if isinstance(state, dict):
            for sys_id, table in state.items():
                if isinstance(sys_id, str) and table in self.config.tables:
                    self._remember(sys_id, table)

    def _remember(self, sys_id: str, table: str) -> None:
        """Note which table holds ``sys_id``; bounded, so a backfill's memory stays flat."""
        if len(self.config.tables) > 1:
            if len(self._tables_of) >= 10_000:
                self._tables_of.pop(next(iter(self._tables_of)))
            self._tables_of[sys_id] = table

    def _url(self, table: str, sys_id: str) -> str:
        return f"{self.base_url}nav_to.do?uri={table}.do%3Fsys_id%3D{sys_id}"

    # -- writing -------------------------------------------------------------------------------

    def find_by_correlation(self, correlation: str) -> RemoteRef | None:
        """The earliest record of the configured tables whose ``correlation_id`` is exactly this.

        A correlation holding characters an encoded query cannot carry is looked up by its safe
        prefix and compared in full here, so the lookup stays exact and cannot be injected.
        """
        return self._note_lookup(correlation, self._find_correlated(correlation))

    def _find_correlated(self, correlation: str) -> RemoteRef | None:
        exact = is_safe_value(correlation)
        prefix = correlation if exact else safe_prefix(correlation)
        if not exact and not prefix:
            raise PermanentRemoteError(
                "the correlation cannot be looked up in ServiceNow: it starts with a character "
                "an encoded query cannot carry"
            )
        condition = Condition("correlation_id", "=" if exact else "STARTSWITH", prefix)
        query = encode_query([condition], [OrderBy("sys_created_on"), OrderBy("sys_id")])
        for table in self.config.tables:
            fields = ["sys_id", "number", "correlation_id"]
            if exact:
                rows = self._get_page(table, query, limit=10, fields=fields).records
            else:
                rows = self._all(table, query, fields)
            for row in rows:
                if row.get("correlation_id") == correlation:
                    sys_id = str(row["sys_id"])
                    self._remember(sys_id, table)
                    return RemoteRef(
                        remote_id=sys_id,
                        remote_key=str(row.get("number") or "") or None,
                        url=self._url(table, sys_id),
                    )
        return None

    def _payload(self, table: str, draft: RemoteDraft) -> dict[str, JsonValue]:
        payload: dict[str, JsonValue] = {
            key: value for key, value in draft.fields.items() if key not in JOURNAL_ELEMENTS
        }
        if draft.status is not None:
            payload[self.config.state_field(table)] = draft.status
            payload.update(draft.status_fields)
        return payload

    def create(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        """Create the record with the correlation marker, unless one already carries it.

        The lookup is skipped only when ``find_by_correlation`` just found nothing for this
        correlation in this thread (the engine's lookup before every create; see
        :mod:`usm_bridge.http_connector` for why that is as safe as looking again).
        """
        if not self._absent_just_now(correlation):
            existing = self._find_correlated(correlation)
            if existing is not None:
                return existing
        table = self.config.create_table or self.config.tables[0]
        payload = self._payload(table, draft)
        payload["correlation_id"] = correlation
        payload["correlation_display"] = self.config.correlation_display
        try:
            response = self._send(
                "POST",
                self._path(table),
                json=payload,
                params={
                    "sysparm_exclude_reference_link": "true",
                    "sysparm_fields": "sys_id,number",
                },
            )
        except RetriableRemoteError:
            # The create may have happened and only its answer been lost: look before failing.
            found = self._find_correlated(correlation)
            if found is not None:
                return found
            raise
        result = response.json()["result"]
        sys_id = str(result["sys_id"])
        self._remember(sys_id, table)
        return RemoteRef(
            remote_id=sys_id,
            remote_key=str(result.get("number") or "") or None,
            url=self._url(table, sys_id),
        )

    def _table_of(self, sys_id: str) -> str:
        """The configured table holding ``sys_id`` (asked of the instance when not known)."""
        if len(self.config.tables) == 1:
            return self.config.tables[0]
        if sys_id in self._tables_of:
            return self._tables_of[sys_id]
        query = encode_query([Condition("sys_id", "=", sys_id)])
        for table in self.config.tables:
            if self._get_page(table, query, limit=1, fields=["sys_id"]).records:
                self._remember(sys_id, table)
                return table
        raise PermanentRemoteError(f"no configured table holds the record {sys_id}", status=404)

    def _current(self, table: str, sys_id: str, fields: list[str]) -> dict[str, Any]:
        response = self._send(
            "GET",
            self._path(table, sys_id),
            params={
                "sysparm_fields": ",".join(dict.fromkeys(["sys_id", *fields])),
                "sysparm_display_value": "false",
                "sysparm_exclude_reference_link": "true",
            },
        )
        result = response.json()["result"]
        return {key: normalise_value(value) for key, value in result.items()}

    def update(self, remote_id: str, draft: RemoteDraft) -> None:
        """PATCH the fields whose value differs from the record's (nothing when none does).

        A status change carries the draft's ``status_fields`` (close code and notes, hold
        reason); without a status change they are not written.
        """
        if not is_safe_value(remote_id) or not remote_id.isalnum():
            raise PermanentRemoteError(f"{remote_id[:40]!r} is not a ServiceNow sys_id")
        table = self._table_of(remote_id)
        state_field = self.config.state_field(table)
        plain = {k: v for k, v in draft.fields.items() if k not in JOURNAL_ELEMENTS}
        current = self._current(table, remote_id, [*plain, state_field, *draft.status_fields])
        desired: dict[str, JsonValue] = dict(plain)
        if draft.status is not None and _as_text(current.get(state_field)) != draft.status:
            desired[state_field] = draft.status
            desired.update(draft.status_fields)
        changes = {
            key: value
            for key, value in desired.items()
            if _as_text(current.get(key)) != _as_text(value)
        }
        if not changes:
            return
        # Setting fields to values is safe to repeat, so a 5xx is retried even for a PATCH.
        self._send(
            "PATCH",
            self._path(table, remote_id),
            json=changes,
            params={"sysparm_fields": "sys_id", "sysparm_exclude_reference_link": "true"},
            idempotent=True,
        )

    def _own_entries(
        self,
        sys_id: str,
        elements: tuple[str, ...],
        *,
        since: datetime | None = None,
        limit: int = _OWN_ENTRIES,
    ) -> list[dict[str, Any]]:
        """The record's newest journal entries written by the integration user, newest first.

        ServiceNow records who created each entry (``sys_created_by``, the user name): that,
        not the entry's text, is what tells the bridge's entries from a person's.
        """
        conditions = [
            Condition("element_id", "=", sys_id),
            Condition("element", "IN", elements),
            Condition("sys_created_by", "=", self.config.username),
        ]
        if since is not None:
            stamp = since.astimezone(UTC).strftime(_TIME_FORMAT)
            conditions.append(Condition("sys_created_on", ">=", stamp))
        query = encode_query(
            conditions, [OrderBy("sys_created_on", descending=True), OrderBy("sys_id")]
        )
        fields = ["sys_id", "element", "value", "sys_created_on", "sys_created_by"]
        page = self._get_page("sys_journal_field", query, limit=limit, fields=fields).records
        # Checked here too: an instance ignores a condition on a field it does not know (or
        # may not show), and a person's entry must never pass for the bridge's.
        return [
            entry
            for entry in page
            if normalise_value(entry.get("sys_created_by")) == self.config.username
        ]

    def add_comment(self, remote_id: str, comment: CommentDraft) -> str:
        """Add an additional comment (public) or a work note; returns the journal entry's id.

        The Table API answers a journal write with the record, not the entry, so the entry is
        identified by proof: the integration user's entries on the record are listed before
        and after the write, and the new one is the bridge's. Never by text: a person's entry
        (or an earlier copy) with the same words is another comment. A journal write is not
        idempotent, so a write whose answer is lost is not repeated here; the outbox looks the
        entry up by :meth:`find_comment` before trying again.
        """
        if not remote_id.isalnum():
            raise PermanentRemoteError(f"{remote_id[:40]!r} is not a ServiceNow sys_id")
        table = self._table_of(remote_id)
        element = "comments" if comment.public else "work_notes"
        text = comment.body
        if comment.files:
            # In the comment's own entry, so the entry the bridge records is the one naming
            # them, and a read ties the files to it (attachment_api.tied_to_entries).
            text += "\n\n" + files_note((file.name, file.size) for file in comment.files)
        before = {str(entry["sys_id"]) for entry in self._own_entries(remote_id, (element,))}
        self._send(
            "PATCH",
            self._path(table, remote_id),
            json={element: text},
            params={"sysparm_fields": "sys_id"},
        )
        new = [
            entry
            for entry in self._own_entries(remote_id, (element,))
            if str(entry["sys_id"]) not in before
        ]
        if not new:
            raise RetriableRemoteError(
                f"the {element} entry written to {remote_id} is not in sys_journal_field"
            )
        if len(new) > 1:
            # Another write by the integration user landed meanwhile (a second bridge on the
            # same account): among those proven the bridge's, the words pick this write's.
            new = [entry for entry in new if entry.get("value") == text] or new
        return str(new[-1]["sys_id"])

    def find_comment(
        self,
        remote_id: str,
        correlation: str,
        *,
        since: datetime,
        known: Collection[str] = (),
        public: bool = True,
    ) -> str | None:
        """The journal entry a lost add made: the oldest entry of the integration user since
        ``since`` that the bridge does not hold as a copy already (``known``).

        An entry cannot carry the correlation, so authorship is the proof: a person's entry,
        whatever its words, is never taken for the bridge's.
        """
        if not remote_id.isalnum():
            raise PermanentRemoteError(f"{remote_id[:40]!r} is not a ServiceNow sys_id")
        held = set(known)
        # Of the element the add wrote: the bridge's work notes (never linked, they do not
        # travel) are no copy of a public comment.
        element = "comments" if public else "work_notes"
        entries = self._own_entries(remote_id, (element,), since=since)
        unknown = [entry for entry in entries if str(entry["sys_id"]) not in held]
        return str(unknown[-1]["sys_id"]) if unknown else None

    # -- attachments ---------------------------------------------------------------------------

    carries_attachments: ClassVar[bool] = True

    def list_attachments(self, remote_id: str) -> list[RemoteAttachment]:
        """The files on the record, oldest first, from the Attachment API (paged as the Table
        API; ``hash`` becomes ``sha256`` when it is a SHA-256). Asked by ``table_sys_id`` in
        the configured tables, so no request finds the record's table first."""
        sys_id = _sys_id(remote_id)
        query = encode_query(
            [
                Condition("table_sys_id", "=", sys_id),
                Condition("table_name", "IN", tuple(self.config.tables)),
            ],
            [OrderBy("sys_created_on"), OrderBy("sys_id")],
        )
        rows: list[dict[str, Any]] = []
        limit = self.config.page_size
        while True:
            params: dict[str, str | int | float] = {
                "sysparm_query": query,
                "sysparm_limit": limit,
                "sysparm_offset": len(rows),
            }
            page = self._page_at(
                ATTACHMENT_PATH, f"the files of {sys_id}", params, len(rows), limit
            )
            rows.extend(page.records)
            if not page.has_next:
                return [remote_attachment(row, sys_id) for row in rows]

    def open_attachment(self, attachment_id: str) -> AbstractContextManager[Iterator[bytes]]:
        """The file's content from ``/file``, streamed in chunks; leaving the ``with`` block
        closes the download. A 429 or 5xx before the content starts is retried as every
        request is; a download that breaks off raises rather than end as if whole."""
        return self._download(_sys_id(attachment_id))

    @contextmanager
    def _download(self, sys_id: str) -> Iterator[Iterator[bytes]]:
        response = self._send(
            "GET", f"{ATTACHMENT_PATH}/{sys_id}/file", headers={"Accept": "*/*"}, stream=True
        )
        try:
            yield checked_download(response, sys_id)
        finally:
            response.close()

    def put_attachment(
        self,
        remote_id: str,
        name: str,
        media_type: str,
        size: int,
        chunks: Iterable[bytes],
        *,
        comment: CommentDraft | None = None,
    ) -> str:
        """Upload the file on the record (``POST /attachment/file``, the raw body streamed
        with ``Content-Length``, the media type as ``Content-Type``); returns its sys_id.

        With ``comment``, the comment is added after it, its journal entry naming the file
        (:meth:`add_comment`); the bridge's own flow sends a comment's files with
        :meth:`add_comment_with_files` (the contract's default: the files, then the one entry
        of the comment naming them all). An upload whose answer is lost is not repeated here
        (the bridge looks for its copy with :meth:`list_attachments` first); chunks that read
        anew are sent again after a 429 or an OAuth 401 (a token renewed), chunks readable once
        are not (the error says so: :class:`RetriableRemoteError`).

        :raises ValueError: ``media_type`` or ``size`` cannot be sent, or the chunks are not
            ``size`` bytes (the upload is then cut off, and the instance keeps nothing).
        """
        sys_id = _sys_id(remote_id)
        if size < 0 or any(c in media_type for c in "\r\n") or "/" not in media_type:
            raise ValueError(f"cannot upload {name!r} as {media_type!r} of {size} bytes")
        table = self._table_of(sys_id)
        params = {"table_name": table, "table_sys_id": sys_id, "file_name": name}
        try:
            response = self._send(
                "POST",
                _with_query(f"{ATTACHMENT_PATH}/file", params),
                data=upload_body(chunks, size, name),
                headers={"Content-Type": media_type, "Accept": "application/json"},
            )
        except BodyMismatch as error:
            raise ValueError(f"upload to {table} {sys_id}: {error}") from None
        try:
            new_id = str(response.json()["result"]["sys_id"])
        except (ValueError, KeyError, TypeError):
            raise RetriableRemoteError(
                f"the Attachment API answered the upload of {name!r} to {sys_id} without the "
                "new file's sys_id"
            ) from None
        if comment is not None:
            # The comment names the file in its own entry, the one whose id add_comment gives
            # (a separate entry would be read back as a comment the bridge does not know).
            named = [*comment.files, CommentFile(name=name, size=size)]
            self.add_comment(sys_id, comment.model_copy(update={"files": named}))
        return new_id


@dataclass
class _Given:
    """The files records were yielded with in one read, of those created from ``since`` on
    (what following files looks at: older ones need no remembering, so a backfill's memory
    stays flat): a record is not yielded again for a file it was yielded with."""

    since: str | None
    files: set[tuple[str, str]] = field(default_factory=set)

    def note(self, record: str, row: Mapping[str, Any]) -> None:
        if self.since is not None and _second(row, "sys_created_on") >= self.since:
            self.files.add((record, str(row.get("sys_id") or "")))

    def had(self, row: Mapping[str, Any]) -> bool:
        return (str(row.get("table_sys_id") or ""), str(row.get("sys_id") or "")) in self.files


class _AskedOnce:
    """``page_of``, except that the page asked for ``query`` already is given back, once."""

    def __init__(self, page_of: Callable[[str, int], _Page], query: str, page: _Page) -> None:
        self._page_of = page_of
        self._query: str | None = query
        self._page = page

    def __call__(self, query: str, limit: int) -> _Page:
        if query == self._query:
            self._query = None
            return self._page
        return self._page_of(query, limit)


def _file_seen(row: Mapping[str, Any]) -> str:
    """What a file read is remembered by within its second (files do not change)."""
    return _FILE_SEEN


def _sys_id(remote_id: str) -> str:
    """``remote_id`` when it can be a sys_id (it goes into paths and queries)."""
    if not remote_id.isalnum() or not remote_id.isascii():
        raise PermanentRemoteError(f"{remote_id[:40]!r} is not a ServiceNow sys_id")
    return remote_id
