"""The Jira connector: Jira Cloud (REST v3, ADF) and Jira Data Center (REST v2), one class.

What it does about Jira's traps (see the project's API-FACTS):

- **Search**: Cloud pages ``/rest/api/3/search/jql`` with ``nextPageToken`` (the old
  ``/search`` answers 410 there); Data Center pages ``/rest/api/2/search`` with ``startAt``.
  Pagination is guarded: a repeated token, an empty page or a runaway page count ends the read
  instead of looping; a short page mid-stream is not taken for the end.
- **Incremental read**: a quoted JQL date has minute precision and is read in the searching
  account's time zone, so the lower bound is written unquoted, as epoch milliseconds, which
  Jira reads as the same instant in every zone: no ``/myself`` each cycle to learn the zone,
  and an idle cycle costs the one search. The window overlaps the previous read by
  ``overlap_minutes`` (to catch issues the search index shows late). What the overlap fetches
  again is skipped only when its content digest equals the one the cursor remembers for that
  issue, so an edit within the same ``updated`` value (whole seconds on some flavours and
  proxies) is read and a quiet read yields nothing. The digest (a JSON walk of the whole issue)
  is taken only of issues a cursor goes on to remember: a backfill's older pages leave the
  window as soon as they are read.
- **Comments** come with the search only up to a limit; when an issue holds more, the rest are
  read from ``/issue/{id}/comment`` so a record always carries all of them.
- **Idempotent create**: the correlation goes into an issue property with the create itself,
  and ``find_by_correlation`` finds it by JQL ``issue.property[...]``, so a create whose response
  was lost is found rather than repeated.
- **Comments added once**: a comment the bridge adds carries its correlation in a comment
  property, set with the comment itself; a retried add finds its earlier copy by that
  property, so a person's comment with the same words is never taken for it.
- **Status** changes only through a transition: the one whose target is the wanted status,
  with its required fields (a resolution) filled from the draft's ``status_fields``.
- **Few writes**: an update writes only the draft (the engine's delta), and fields changed with
  the status ride on the transition when its screen holds them (a fallback to a PUT first when
  Jira refuses), so a status change costs one write per workflow hop.
- **Attachments** are listed from ``fields.attachment`` of the pages already read, their
  content streamed (Cloud's redirect followed without the Jira credentials), and written as a
  streamed multipart upload sent once (see :mod:`.attachment_io`).
- **Custom fields** are addressed by name: records carry each custom field under a name-derived
  alias as well (``Story point estimate`` -> ``fields.story_point_estimate``), and drafts may use
  aliases or field names, translated to the site's ``customfield_NNNNN`` through ``/field``.
"""

from __future__ import annotations

import json
import logging
import re
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal, Unpack
from urllib.parse import quote as url_quote

import requests
from pydantic import Field, SecretStr, model_validator

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
from usm_bridge.errors import (
    ConfigurationError,
    PermanentRemoteError,
    RemoteError,
    RetriableRemoteError,
    UntrustedURLError,
)
from usm_bridge.events.registration import RegisteredWebhook, WebhookSpec
from usm_bridge.http import Auth, BearerAuth, HttpClient
from usm_bridge.http_connector import HttpConnector, HttpConnectorSettings, HttpSeams
from usm_bridge.mapping.timestamp_shapes import read_fixed_shape

from . import admin_webhooks
from .attachment_io import listed_attachments, read_chunks, tied_to_comments, upload_body
from .download_urls import MAX_MEDIA_HOPS, media_url, site_url
from .jql import epoch_bound, quote
from .transforms import adf_to_text, text_to_adf

__all__ = ["JiraConnector", "JiraSettings", "field_alias", "parse_jira_time"]

logger = logging.getLogger(__name__)

Deployment = Literal["auto", "cloud", "datacenter"]
_CURSOR_VERSION: Final = 2
#: The statuses of a redirect to follow (to the media service, on Cloud).
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
#: At most this many issues of the overlap window are remembered in a cursor.
_MAX_REMEMBERED: Final = 1_000
_RICH_TEXT_SYSTEM: Final = frozenset({"description", "environment"})
_TEXTAREA: Final = "com.atlassian.jira.plugin.system.customfieldtypes:textarea"
_ALIAS_JUNK = re.compile(r"[^a-z0-9]+")
#: What changes in a search answer without the issue changing: never a reason to read it again.
_VOLATILE: Final = ("fields.lastViewed", "expand")
#: Issues are read with their recent changelog: who moved an issue to its status (a customer,
#: an agent, an automation's app account) is how a mapping tells a confirmation's kind.
_EXPAND: Final = "changelog"


class JiraSettings(HttpConnectorSettings):
    """Settings of one Jira connector instance (the ``settings`` table of its config entry).

    Timeouts and the retry policy are :class:`~usm_bridge.http_connector.HttpConnectorSettings`.
    """

    base_url: str = Field(examples=["https://example.atlassian.net"])
    """The Jira site's address."""
    deployment: Deployment = "auto"
    """``cloud`` (REST v3, basic auth with ``email`` and ``api_token``), ``datacenter`` (REST
    v2, bearer ``personal_access_token``), or ``auto``: asked of the site once."""
    email: str | None = Field(default=None, examples=["usm-bridge@example.com"])
    """The account's e-mail address (Jira Cloud, with ``api_token``)."""
    api_token: SecretStr | None = None
    """The account's API token (Jira Cloud, with ``email``)."""
    personal_access_token: SecretStr | None = None
    """A personal access token (Jira Data Center)."""
    projects: list[str] = Field(default_factory=list, examples=[["FAC"]])
    """Project keys read; together with ``jql`` and ``filter_id`` they bound every search (set
    at least one of the three)."""
    filter_id: int | None = Field(default=None, examples=[10000])
    """A saved filter whose issues are read."""
    jql: str | None = Field(default=None, examples=["labels = facilities"])
    """An extra JQL restriction, ANDed with the rest."""
    create_project: str | None = Field(default=None, examples=["FAC"])
    """Where new issues go; the first of ``projects`` when not set."""
    create_issue_type: str = "Task"
    """The issue type of new issues."""
    # Some workflows (the simulator's among them) reach "Pending" only from "In Progress",
    # while the bridge may make an issue that is still "Open" wait on a supplier (a call passed
    # on along the chain at once); where a direct transition exists, it is taken and the detour
    # is not used.
    transition_via: dict[str, str] = Field(default_factory=lambda: {"Pending": "In Progress"})
    """When no transition leads to a status from where an issue is, go through this one first
    (status name -> status name, case-insensitive)."""
    page_size: int = Field(default=100, ge=1, le=5000)
    """Issues asked for per search request."""
    comment_page_size: int = Field(default=100, ge=1, le=5000)
    """Comments asked for per request."""
    max_pages: int = Field(default=10_000, ge=1, le=1_000_000)
    """Pages one read fetches at most; the next read goes on from there."""
    overlap_minutes: int = Field(default=5, ge=1, le=1440)
    """Minutes each search reaches back before the last change seen, for changes Jira indexes
    late (issues read twice are recognised)."""
    correlation_property: str = Field(default="usmBridge", pattern=r"^[A-Za-z0-9_.-]{1,255}$")
    """The issue property holding the bridge's correlation id (and searched for it)."""
    custom_fields: dict[str, str] = Field(default_factory=dict)
    """Extra aliases for custom fields: the alias used in mapping files -> the field's name in
    Jira."""

    @model_validator(mode="after")
    def _bounded_and_authenticated(self) -> JiraSettings:
        if not (self.projects or self.filter_id is not None or self.jql):
            raise ValueError(
                "set projects, filter_id or jql: Jira refuses unbounded searches, and an "
                "instance should read only its unit's work"
            )
        cloud_auth = self.email is not None and self.api_token is not None
        if self.deployment == "cloud" and not cloud_auth:
            raise ValueError("Jira Cloud needs email and api_token (basic auth)")
        if self.deployment == "datacenter" and self.personal_access_token is None:
            raise ValueError("Jira Data Center needs personal_access_token (bearer auth)")
        if self.deployment == "auto" and not (cloud_auth or self.personal_access_token):
            raise ValueError("set email and api_token (Cloud) or personal_access_token (DC)")
        return self


#: The shape of every time Jira's REST API writes.
_JIRA_TIME: Final = "%Y-%m-%dT%H:%M:%S.%f%z"


def parse_jira_time(text: str) -> datetime:
    """Jira's ``2021-01-17T12:34:00.000+0000`` as an aware datetime (other ISO forms too).

    :raises ValueError: ``text`` is no time Jira writes.
    """
    fixed = read_fixed_shape(text, _JIRA_TIME)  # the shape Jira sends, without strptime
    if fixed is not None:
        return fixed
    try:
        return datetime.strptime(text, _JIRA_TIME)
    except ValueError:
        moment = datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def field_alias(name: str) -> str:
    """The key a custom field's value is also found under: its name, lower case, ``_``-joined.

    Mapping paths cannot hold spaces or dots, and custom field ids differ per site; the alias
    is what a mapping file written once for all sites can use.
    """
    return _ALIAS_JUNK.sub("_", name.lower()).strip("_")


def _updated_of(issue: Mapping[str, Any]) -> datetime:
    """When the issue last changed, which orders the read and bounds the cursor.

    :raises RetriableRemoteError: the issue holds no readable ``updated``, naming it; the read
        ends before it, so nothing after it is taken past it (it is read again next cycle).
    """
    fields = issue.get("fields")
    text = fields.get("updated") if isinstance(fields, Mapping) else None
    try:
        if not isinstance(text, str):
            raise ValueError("missing")
        return parse_jira_time(text)
    except ValueError:
        name = issue.get("key") or issue.get("id")
        raise RetriableRemoteError(
            f"Jira sent issue {name} without a readable updated time ({text!r}): the read stops "
            "before it"
        ) from None


def _readable_updated(issue: Mapping[str, Any]) -> datetime | None:
    """:func:`_updated_of`, ``None`` when it is not readable."""
    try:
        return _updated_of(issue)
    except RetriableRemoteError:
        return None


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


#: One issue a cursor remembers: ``(updated_ms, issue id, content digest or None)``.
_Seen = tuple[int, str, str | None]


def _latest(window: deque[_Seen]) -> list[_Seen]:
    """The window with each issue once, as last read: an issue read twice is compared with its
    newest content only, and the cursor does not carry the older one."""
    last = {issue_id: n for n, (_, issue_id, _) in enumerate(window)}
    return [entry for n, entry in enumerate(window) if last[entry[1]] == n]


@dataclass
class _Cursor:
    """How far a read got: the newest ``updated`` seen, and what was read near it.

    ``seen`` holds ``(updated_ms, issue id, content digest)`` of the records yielded within the
    overlap window before ``updated_ms``, so that the next read's overlap skips exactly the
    issues whose content is unchanged and nothing else: an issue edited again within the same
    ``updated`` value (Jira stamps whole seconds on some flavours and behind some proxies) has
    another digest and is read.

    Version 1 cursors remembered ``id@updated_ms`` without a digest; they still load, and what
    they remember is read once more (the engine recognises it as unchanged), never skipped.
    """

    updated_ms: int
    seen: list[_Seen]

    def dump(self) -> str:
        return json.dumps(
            {
                "v": _CURSOR_VERSION,
                "updated": self.updated_ms,
                "seen": [[stamp, issue_id, digest] for stamp, issue_id, digest in self.seen],
            },
            separators=(",", ":"),
        )

    @classmethod
    def load(cls, text: str) -> _Cursor:
        try:
            raw = json.loads(text)
            version = raw.get("v")
            if version == 1:
                return cls(int(raw["updated"]), [_v1_seen(str(item)) for item in raw["seen"]])
            if version != _CURSOR_VERSION:
                raise ValueError(f"unknown cursor version {version!r}")
            seen: list[_Seen] = [
                (int(stamp), str(issue_id), None if digest is None else str(digest))
                for stamp, issue_id, digest in raw["seen"]
            ]
            return cls(int(raw["updated"]), seen)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise ConfigurationError(
                f"not a Jira connector cursor ({error}); reset the instance's cursor"
            ) from None


def _v1_seen(marker: str) -> _Seen:
    issue_id, stamp = marker.rsplit("@", 1)
    return int(stamp), issue_id, None


@dataclass(frozen=True)
class _FieldInfo:
    id: str
    name: str
    custom: bool
    rich_text: bool


class JiraConnector(HttpConnector[JiraSettings]):
    """Jira Cloud and Jira Data Center; see the module docstring for how it meets Jira's traps.

    ``requests_made`` counts the requests sent (not their retries), for benchmarks.
    """

    kind: ClassVar[str] = "jira"
    carries_attachments: ClassVar[bool] = True
    #: Reads in a child process (usm_bridge.sync.child_read): the HTTP clients let go of
    #: their inherited connections (HttpConnector.after_fork), and what a read learns (the
    #: deployment, the field list) is handed back by read_state. A 429's back-off is the
    #: request's own (HttpClient's retries): nothing of it outlives the read.
    reads_in_child: ClassVar[bool] = True
    settings_model: ClassVar[type[ConnectorSettings]] = JiraSettings
    description: ClassVar[str] = "Jira Cloud (REST v3) and Jira Data Center (REST v2)"

    def __init__(self, name: str, settings: ConnectorSettings, **seams: Unpack[HttpSeams]) -> None:
        super().__init__(name, settings, **seams)
        self._http: HttpClient | None = None
        self._deployment: Literal["cloud", "datacenter"] | None = (
            None if self.config.deployment == "auto" else self.config.deployment
        )
        self._fields: dict[str, _FieldInfo] | None = None
        self._aliases: dict[str, str] | None = None
        self._media: HttpClient | None = None
        self.requests_made = 0

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def deployment(self) -> Literal["cloud", "datacenter"]:
        """``cloud`` or ``datacenter``; asked of ``serverInfo`` once when set to ``auto``."""
        if self._deployment is None:
            info = self._probe_client().get("rest/api/2/serverInfo").json()
            self.requests_made += 1
            self._deployment = "cloud" if info.get("deploymentType") == "Cloud" else "datacenter"
            self.close()  # the next client authenticates the way this deployment expects
        return self._deployment

    @property
    def api(self) -> str:
        """The REST path prefix: v3 (ADF) on Cloud, v2 (plain text) on Data Center."""
        return "rest/api/3" if self.deployment == "cloud" else "rest/api/2"

    def _client(self, auth: Auth) -> HttpClient:
        # Only usable in rest/api/2 ... and /3 ... calls: keep Jira from asking for a CAPTCHA or
        # treating the call as a browser's.
        return self.http_client(
            self.config.base_url, auth=auth, headers={"X-Atlassian-Token": "no-check"}
        )

    def _auth(self, deployment: str | None) -> Auth:
        cfg = self.config
        if deployment == "datacenter" or (
            deployment is None and cfg.personal_access_token is not None
        ):
            assert cfg.personal_access_token is not None
            return BearerAuth(cfg.personal_access_token.get_secret_value())
        if cfg.email is None or cfg.api_token is None:
            raise ConfigurationError(
                f"connector {self.name!r}: Jira Cloud needs email and api_token"
            )
        return (cfg.email, cfg.api_token.get_secret_value())

    def _probe_client(self) -> HttpClient:
        if self._http is None:
            self._http = self._client(self._auth(self._deployment))
        return self._http

    @property
    def http(self) -> HttpClient:
        """The HTTP client, authenticated the way the deployment expects."""
        deployment = self.deployment
        if self._http is None:
            self._http = self._client(self._auth(deployment))
        return self._http

    def _get(self, path: str, **params: str | int) -> Any:
        self.requests_made += 1
        response = self.http.get(f"{self.api}/{path}", params=params or None)
        return response.json() if response.content else None

    def _send(self, method: str, path: str, body: Any, *, idempotent: bool | None = None) -> Any:
        self.requests_made += 1
        response = self.http.request(method, f"{self.api}/{path}", json=body, idempotent=idempotent)
        return response.json() if response.content else None

    def close(self) -> None:
        """Close the HTTP session; the next request opens another."""
        super().close()
        self._http = None
        self._media = None

    def read_state(self) -> object | None:
        """The deployment and the field list, when a read learned them (the pushes use both:
        without them the parent would ask again, one request each)."""
        return (self._deployment, self._fields, self._aliases)

    def adopt_read_state(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) != 3:
            return
        deployment, fields, aliases = state
        if self._deployment is None and deployment in ("cloud", "datacenter"):
            self._deployment = deployment
            self.close()  # the next client authenticates the way this deployment expects
        if self._fields is None and isinstance(fields, dict) and isinstance(aliases, dict):
            self._fields, self._aliases = fields, aliases

    # -- admin webhooks (usm-bridge webhooks register) ------------------------------------------

    def webhook_deployment(self) -> Literal["cloud", "datacenter"]:
        return self.deployment

    def webhook_filter(self) -> str:
        """The JQL of the instance's webhook: its projects, or "" (every issue). Not its
        ``filter_id`` nor its ``jql``: Jira's webhook filters take a subset of JQL only
        (project, issue type, status, ...), and an event is only a hint, so a wider filter
        costs a cycle that finds nothing new, never a wrong write."""
        projects = self.config.projects
        return f"project in ({', '.join(quote(p) for p in projects)})" if projects else ""

    def list_webhooks(self) -> list[RegisteredWebhook]:
        self.requests_made += 1
        return admin_webhooks.list_webhooks(self.http)

    def create_webhook(self, spec: WebhookSpec) -> RegisteredWebhook:
        self.requests_made += 1
        return admin_webhooks.create_webhook(self.http, spec)

    # -- reaching the tool ---------------------------------------------------------------------

    def check(self) -> CheckResult:
        """Sign in (``/myself``) and report the deployment, account and time zone."""
        try:
            me = self._get("myself")
            info = self._get("serverInfo")
        except RemoteError as error:
            return CheckResult(ok=False, detail=str(error))
        account = me.get("emailAddress") or me.get("name") or me.get("accountId") or "?"
        return CheckResult(
            ok=True,
            detail=f"signed in to Jira {self.deployment} as {me.get('displayName', account)}",
            facts={
                "deployment": self.deployment,
                "version": str(info.get("version", "")),
                "account": str(account),
                "time_zone": str(me.get("timeZone", "")),
            },
        )

    def discover(self) -> Vocabulary:
        """Statuses (per project), priorities, issue types, resolutions and fields."""
        statuses: dict[tuple[str, str], VocabularyValue] = {}
        types: dict[tuple[str, str], VocabularyValue] = {}
        for project in self.config.projects:
            for issue_type in self._get(f"project/{url_quote(project)}/statuses"):
                types[(project, issue_type["name"])] = VocabularyValue(
                    value=issue_type["name"], label=issue_type.get("description"), scope=project
                )
                for status in issue_type.get("statuses", []):
                    statuses.setdefault(
                        (project, status["name"]),
                        VocabularyValue(
                            value=status["name"], label=status.get("description"), scope=project
                        ),
                    )
        if not self.config.projects:
            for status in self._get("status"):
                statuses.setdefault(("", status["name"]), VocabularyValue(value=status["name"]))
        priorities = [VocabularyValue(value=p["name"]) for p in self._get("priority")]
        resolutions = [VocabularyValue(value=r["name"]) for r in self._get("resolution")]
        fields = [
            VocabularyValue(value=info.id, label=info.name) for info in self._field_map().values()
        ]
        return Vocabulary(
            statuses=list(statuses.values()),
            priorities=priorities,
            types=list(types.values()),
            fields=fields,
            other={"resolutions": resolutions},
        )

    # -- fields --------------------------------------------------------------------------------

    def _field_map(self) -> dict[str, _FieldInfo]:
        if self._fields is None:
            found: dict[str, _FieldInfo] = {}
            for item in self._get("field"):
                schema = item.get("schema") or {}
                rich = item["id"] in _RICH_TEXT_SYSTEM or schema.get("custom") == _TEXTAREA
                found[item["id"]] = _FieldInfo(
                    item["id"], item.get("name", item["id"]), bool(item.get("custom")), rich
                )
            self._fields = found
            aliases: dict[str, str] = {}
            by_name = {info.name.lower(): info.id for info in found.values()}
            for info in found.values():
                alias = field_alias(info.name)
                if info.custom and alias and alias not in found:
                    aliases.setdefault(alias, info.id)
            for alias, name in self.config.custom_fields.items():
                field_id = by_name.get(name.lower()) or (name if name in found else None)
                if field_id is None:
                    raise ConfigurationError(
                        f"connector {self.name!r}: custom_fields.{alias} names {name!r}, "
                        "which is no field of this Jira site"
                    )
                aliases[alias] = field_id
            self._aliases = aliases
        return self._fields

    def _alias_map(self) -> dict[str, str]:
        self._field_map()
        assert self._aliases is not None
        return self._aliases

    def _field_id(self, key: str) -> str:
        fields = self._field_map()
        if key in fields:
            return key
        aliases = self._alias_map()
        if key in aliases:
            return aliases[key]
        lowered = key.lower()
        for info in fields.values():
            if info.name.lower() == lowered:
                return info.id
        return key  # unknown: Jira will say so, with its own message

    def _outbound_fields(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Draft fields in Jira's terms: ids for names and aliases, rich text in the API's form."""
        nested = raw.get("fields")
        source = nested if isinstance(nested, dict) and len(raw) == 1 else raw
        fields = self._field_map()
        out: dict[str, Any] = {}
        for key, value in source.items():
            field_id = self._field_id(key)
            info = fields.get(field_id)
            rich = field_id in _RICH_TEXT_SYSTEM or (info is not None and info.rich_text)
            if rich and value is not None:
                value = self._rich_text(value)
            out[field_id] = value
        return out

    def _rich_text(self, value: Any) -> Any:
        if self.deployment == "cloud":
            return value if isinstance(value, dict) else text_to_adf(str(value))
        return adf_to_text(value) if isinstance(value, dict) else value

    # -- reading -------------------------------------------------------------------------------

    def _bounds(self) -> str:
        cfg = self.config
        parts: list[str] = []
        if cfg.projects:
            parts.append(f"project in ({', '.join(quote(p) for p in cfg.projects)})")
        if cfg.filter_id is not None:
            parts.append(f"filter = {cfg.filter_id}")
        if cfg.jql:
            parts.append(f"({cfg.jql})")
        return " AND ".join(parts)

    def _search(self, jql: str) -> Iterator[list[dict[str, Any]]]:
        """Pages of issues for ``jql``, with the pagination guards; an empty search yields []."""
        size = self.config.page_size
        if self.deployment == "cloud":
            token: str | None = None
            tokens: set[str] = set()
            for _ in range(self.config.max_pages):
                params: dict[str, str | int] = {
                    "jql": jql, "maxResults": size, "fields": "*all", "expand": _EXPAND,
                }  # fmt: skip
                if token:
                    params["nextPageToken"] = token
                page = self._get("search/jql", **params)
                issues = page.get("issues") or []
                yield issues
                token = page.get("nextPageToken")
                if not issues or page.get("isLast") is True or not token:
                    return
                if token in tokens:
                    raise RetriableRemoteError(
                        "Jira repeated a nextPageToken: the read stopped rather than loop; "
                        "it resumes from the last checkpoint"
                    )
                tokens.add(token)
        else:
            start = 0
            for _ in range(self.config.max_pages):
                page = self._get(
                    "search", jql=jql, startAt=start, maxResults=size, fields="*all", expand=_EXPAND
                )
                issues = page.get("issues") or []
                yield issues
                start += len(issues)
                if not issues or start >= int(page.get("total", 0)):
                    return
        logger.warning(
            "%s: stopped after max_pages=%d; the next read goes on from the last checkpoint",
            self.name,
            self.config.max_pages,
        )

    def remote_ids(self) -> Iterator[str]:
        """The id of every issue in the configured scope (``projects``, ``filter_id``, ``jql``).

        Pages through ``id > <last> ORDER BY id ASC`` with ``fields=id`` (a keyset: an issue
        deleted or added meanwhile cannot shift the pages and hide another one). The listing is
        never cut short quietly: a page that is announced but empty, a server that ignores the
        keyset, or running into ``max_pages`` raises :class:`RetriableRemoteError`, as does any
        failed request, so the census marks nothing on an incomplete listing.
        """
        bounds = self._bounds()
        size = self.config.page_size
        last: int | None = None
        for _ in range(self.config.max_pages):
            jql = bounds if last is None else f"{bounds} AND id > {last}"
            jql += " ORDER BY id ASC"
            if self.deployment == "cloud":
                page = self._get("search/jql", jql=jql, maxResults=size, fields="id")
                issues = page.get("issues") or []
                done = page.get("isLast") is True or (
                    not page.get("nextPageToken") and "isLast" not in page
                )
            else:
                page = self._get("search", jql=jql, startAt=0, maxResults=size, fields="id")
                issues = page.get("issues") or []
                total = page.get("total")
                # Without a total, only an empty page ends the listing (never a guess).
                done = not issues if total is None else len(issues) >= int(total)
            ids = [int(issue["id"]) for issue in issues]
            if ids and (ids != sorted(ids) or (last is not None and ids[0] <= last)):
                raise RetriableRemoteError(
                    "Jira ignored the id keyset while listing issue ids: the census stops "
                    "rather than judge from an incomplete listing"
                )
            for issue_id in ids:
                yield str(issue_id)
            if done:
                return
            if not ids:
                raise RetriableRemoteError(
                    "Jira announced more issues but sent an empty page while listing issue ids"
                )
            last = ids[-1]
        raise RetriableRemoteError(
            f"listing issue ids took more than max_pages={self.config.max_pages} pages: the "
            "census stops rather than judge from an incomplete listing"
        )

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        """Issues changed since ``cursor`` (all when ``None``), oldest change first.

        A checkpoint follows each page. See the module docstring for the overlap window and
        the de-duplication by content digest.
        """
        overlap_ms = self.config.overlap_minutes * 60_000
        state = _Cursor.load(cursor) if cursor else None
        jql = self._bounds()
        skip_before = 0
        if state is not None:
            skip_before = state.updated_ms - overlap_ms
            jql = f"{jql} AND updated >= {epoch_bound(skip_before)}"
        jql += " ORDER BY updated ASC, key ASC"
        self._field_map()  # aliases for custom fields, before the first page
        newest = state.updated_ms if state else 0
        window: deque[_Seen] = deque(state.seen if state else [])
        # Each remembered issue's latest entry (the window is oldest first: later wins).
        read_as = {issue_id: (stamp, digest) for stamp, issue_id, digest in window}
        for issues in self._search(jql):
            times = [_readable_updated(issue) for issue in issues]
            # What this page leaves remembered: the issues updated within the overlap before
            # its newest. An older one is forgotten when the page ends, so its digest, a JSON
            # walk of the whole issue, is never compared and is not taken.
            remembered_from = max([newest, *(_ms(t) for t in times if t is not None)]) - overlap_ms
            for issue, moment in zip(issues, times, strict=True):
                # An unreadable time ends the read here, after the issues before it.
                updated = moment if moment is not None else _updated_of(issue)
                stamp = _ms(updated)
                issue_id = str(issue["id"])
                last = read_as.get(issue_id)
                if stamp < skip_before:
                    continue
                # Taken before the comments are completed: the search answer is what the next
                # read compares with, and an unchanged issue then costs no further request.
                digest = (
                    content_digest(issue, ignore=_VOLATILE)
                    if last is not None or stamp >= remembered_from
                    else None  # remembered after all (out of order): read once more, as v1's
                )
                if last is not None and last[1] == digest:
                    continue
                self._complete_comments(issue)
                yield self._record(issue, updated)
                newest = max(newest, stamp)
                window.append((stamp, issue_id, digest))
                read_as[issue_id] = (stamp, digest)
            while window and (window[0][0] < newest - overlap_ms or len(window) > _MAX_REMEMBERED):
                # Bounded, so a bulk edit of thousands of issues within the overlap cannot grow
                # the cursor (and memory) without end: what is forgotten may be read once more
                # (the contract allows repeats, the engine de-duplicates), never lost.
                gone = window.popleft()
                if read_as.get(gone[1]) == (gone[0], gone[2]):  # its latest entry: forgotten
                    del read_as[gone[1]]
            if newest:
                yield Checkpoint(cursor=_Cursor(newest, _latest(window)).dump())
            else:
                yield Checkpoint(cursor=cursor or _Cursor(0, []).dump())

    def _complete_comments(self, issue: dict[str, Any]) -> None:
        """Fill ``fields.comment.comments`` with every comment when the search gave only some."""
        block = issue["fields"].get("comment")
        if not isinstance(block, dict):
            return
        comments = block.get("comments") or []
        total = int(block.get("total", len(comments)))
        if total <= len(comments):
            return
        everything: list[Any] = []
        start = 0
        for _ in range(self.config.max_pages):
            page = self._get(
                f"issue/{issue['id']}/comment",
                startAt=start,
                maxResults=self.config.comment_page_size,
                orderBy="created",
            )
            batch = page.get("comments") or []
            everything.extend(batch)
            start += len(batch)
            if not batch or start >= int(page.get("total", 0)):
                break
        block.update(comments=everything, total=len(everything), maxResults=len(everything))
        block["startAt"] = 0

    def _record(self, issue: dict[str, Any], updated: datetime) -> RawRecord:
        fields = issue["fields"]
        for alias, field_id in self._alias_map().items():
            if field_id in fields and alias not in fields:
                fields[alias] = fields[field_id]
        base = self.config.base_url.rstrip("/")
        # Parsed from the search's JSON: not validated value by value again.
        return RawRecord.from_json(
            issue,
            remote_id=str(issue["id"]),
            remote_key=issue.get("key"),
            updated=updated,
            url=f"{base}/browse/{issue.get('key', issue['id'])}",
            attachments=tied_to_comments(listed_attachments(fields), fields.get("comment")),
        )

    # -- attachments ---------------------------------------------------------------------------

    def list_attachments(self, remote_id: str) -> list[RemoteAttachment]:
        """The issue's files now (``fields.attachment``), oldest first."""
        issue = self._get(f"issue/{url_quote(remote_id)}", fields="attachment")
        fields = issue.get("fields") if isinstance(issue, dict) else None
        return listed_attachments(fields) if isinstance(fields, dict) else []

    @contextmanager
    def open_attachment(self, attachment_id: str) -> Iterator[Iterator[bytes]]:
        """The file's bytes in chunks: on Cloud through the content endpoint's redirect to the
        media service, followed without the Jira credentials; on Data Center from the
        ``content`` URL of its metadata, on the configured site only (:mod:`.download_urls`).
        Retried as any read; the body is never held whole."""
        ident = url_quote(attachment_id, safe="")
        self.requests_made += 1
        if self.deployment == "cloud":
            response = self.http.get(
                f"{self.api}/attachment/content/{ident}", stream=True, allow_redirects=False
            )
            if response.is_redirect or response.status_code in _REDIRECTS:
                response = self._follow_media(attachment_id, response)
        else:
            meta = self._get(f"attachment/{ident}")
            content = meta.get("content") if isinstance(meta, dict) else None
            if not isinstance(content, str) or not content:
                raise PermanentRemoteError(f"Jira gave attachment {attachment_id} no content URL")
            # Fetched with the credentials: only on the configured site.
            content = site_url(self.config.base_url, content, attachment_id)
            self.requests_made += 1
            response = self.http.get(content, stream=True)
        chunks = read_chunks(response, f"Jira attachment {attachment_id}")
        try:
            yield chunks
        finally:
            chunks.close()
            response.close()

    def _follow_media(self, attachment_id: str, response: requests.Response) -> requests.Response:
        """The media service's answer to Jira's redirect, followed without credentials, each
        hop's ``Location`` checked (:func:`.download_urls.media_url`); a ``requests`` failure on
        the way (a malformed URL) is a :class:`RemoteError` like any other."""
        for _ in range(MAX_MEDIA_HOPS + 1):
            where = response.headers.get("Location")
            asked = response.url
            response.close()
            if not where:
                raise RetriableRemoteError(
                    f"Jira redirected the content of attachment {attachment_id} nowhere"
                )
            # The signed URL is its own authority: the Jira credentials stay home.
            url = media_url(self.config.base_url, asked, where, attachment_id)
            self.requests_made += 1
            try:
                response = self._media_client().get(url, stream=True, allow_redirects=False)
            except requests.RequestException as exc:  # raised before a request was sent
                raise UntrustedURLError(
                    f"the media URL of Jira attachment {attachment_id} could not be fetched: "
                    f"{type(exc).__name__}"
                ) from None
            if not (response.is_redirect or response.status_code in _REDIRECTS):
                return response
        response.close()
        raise UntrustedURLError(
            f"the content of Jira attachment {attachment_id} was redirected more than "
            f"{MAX_MEDIA_HOPS} times"
        )

    def _media_client(self) -> HttpClient:
        """A client without credentials (Cloud's media URLs are signed by their token)."""
        if self._media is None:
            self._media = self.http_client("")
        return self._media

    def put_attachment(
        self, remote_id: str, name: str, media_type: str, size: int, chunks: Iterable[bytes],
        *, comment: CommentDraft | None = None,
    ) -> str:  # fmt: skip
        """Upload one file onto the issue, streamed, sent once (see :mod:`.attachment_io`);
        with ``comment``, the comment is added after it, naming the file (Jira keeps files on
        the issue, not on comments). The bridge's own flow sends a comment's files with
        :meth:`add_comment_with_files` (the contract's default: the files, then one comment
        naming them all).

        :raises PermanentRemoteError: Jira refused the file (413: larger than the site's
            attachment size; attachments disabled; no such issue).
        """
        body = upload_body(name, media_type, size, chunks)
        self.requests_made += 1
        try:
            response = self.http.post(
                f"{self.api}/issue/{url_quote(remote_id)}/attachments",
                data=body,
                headers={"Content-Type": body.content_type, "X-Atlassian-Token": "no-check"},
                once=True,
            )
        except PermanentRemoteError as exc:
            if exc.status == 413:
                raise PermanentRemoteError(
                    f"Jira refused the file {name!r} ({size} bytes) on issue {remote_id}: "
                    "larger than the site's attachment size limit",
                    status=413, remote_message=exc.remote_message, method=exc.method,
                    url=exc.url,
                ) from None  # fmt: skip
            raise
        made = response.json() if response.content else None
        if not isinstance(made, list) or not made or not isinstance(made[0], dict):
            raise RetriableRemoteError(
                f"Jira's answer to the upload of {name!r} names no attachment; "
                "the file is looked for before it is sent again"
            )
        if comment is not None:
            named = [*comment.files, CommentFile(name=name, size=size)]
            self.add_comment(remote_id, comment.model_copy(update={"files": named}))
        return str(made[0]["id"])

    # -- writing -------------------------------------------------------------------------------

    def find_by_correlation(self, correlation: str) -> RemoteRef | None:
        """The issue whose correlation property holds ``correlation``, found by JQL."""
        return self._note_lookup(correlation, self._find_correlated(correlation))

    def _find_correlated(self, correlation: str) -> RemoteRef | None:
        key = self.config.correlation_property
        jql = f"{self._bounds()} AND issue.property[{key}].correlation = {quote(correlation)}"
        for issues in self._search(jql):
            for issue in issues:
                return self._ref(issue["id"], issue.get("key"))
        return None

    def _ref(self, issue_id: Any, key: Any) -> RemoteRef:
        base = self.config.base_url.rstrip("/")
        return RemoteRef(
            remote_id=str(issue_id),
            remote_key=str(key) if key else None,
            url=f"{base}/browse/{key}" if key else None,
        )

    def create(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        """Create an issue carrying the correlation property; find it first if it exists.

        The lookup is skipped only when ``find_by_correlation`` just found nothing for this
        correlation in this thread (the engine's lookup before every create; see
        :mod:`usm_bridge.http_connector` for why that is as safe as looking again).

        The create's POST is not repeated on a lost response (it may have created the issue):
        the error goes up, and the engine's retry of this method finds the issue by JQL.
        """
        if not self._absent_just_now(correlation):
            found = self._find_correlated(correlation)
            if found is not None:
                return found
        fields = self._outbound_fields(draft.fields)
        project = self.config.create_project or (
            self.config.projects[0] if self.config.projects else None
        )
        if "project" not in fields:
            if project is None:
                raise ConfigurationError(f"connector {self.name!r}: set create_project")
            fields["project"] = {"key": project}
        fields.setdefault("issuetype", {"name": self.config.create_issue_type})
        body = {
            "fields": fields,
            "properties": [
                {"key": self.config.correlation_property, "value": {"correlation": correlation}}
            ],
        }
        created = self._send("POST", "issue", body)
        ref = self._ref(created["id"], created.get("key"))
        if draft.status:
            self._transition(ref.remote_id, draft.status, draft.status_fields)
        return ref

    def update(self, remote_id: str, draft: RemoteDraft) -> None:
        """Write the draft's fields and move the issue to ``draft.status``, in as few writes as
        the workflow allows.

        The draft is what is to change (the engine sends only what the bridge changed), so
        nothing is added to it: no fields, no PUT. A status change costs one transition per
        workflow hop; fields changed with it ride on the last transition when its screen holds
        every one of them (one write instead of two), and are PUT before it otherwise.
        """
        fields = self._outbound_fields(draft.fields)
        fields.pop("project", None)  # moving an issue is not an edit
        if draft.status:
            self._transition(remote_id, draft.status, draft.status_fields, edit=fields)
        elif fields:
            self._edit(remote_id, fields)

    def _edit(self, remote_id: str, fields: Mapping[str, Any]) -> None:
        self._send("PUT", f"issue/{url_quote(remote_id)}", {"fields": dict(fields)})

    def _transition(
        self,
        remote_id: str,
        status: str,
        status_fields: Mapping[str, Any],
        *,
        edit: Mapping[str, Any] | None = None,
        hop: bool = True,
        available: list[Any] | None = None,
    ) -> None:
        """Move the issue to ``status``, writing ``edit`` (field ids) on the way.

        ``available``: the transitions the issue offers now, when just read.
        """
        path = f"issue/{url_quote(remote_id)}/transitions"
        if available is None:
            available = self._get(path, expand="transitions.fields").get("transitions", [])
        wanted = status.lower()

        def leading_to(name: str, transitions: list[Any]) -> Any:
            return next(
                (
                    t
                    for t in transitions
                    if str(t.get("to", {}).get("name", "")).lower() == name.lower()
                    or str(t.get("to", {}).get("id", "")) == name
                ),
                None,
            )

        chosen = leading_to(status, available)
        via = {k.lower(): v for k, v in self.config.transition_via.items()}.get(wanted)
        if chosen is None and hop and via is not None and leading_to(via, available):
            # Two steps, each through a transition the workflow offers at that moment; the
            # fields go with the last, whose screen is the one that may hold them.
            self._transition(remote_id, via, {}, hop=False, available=available)
            self._transition(remote_id, status, status_fields, edit=edit, hop=False)
            return
        values = {self._field_id(k): v for k, v in status_fields.items()}
        if chosen is None:
            current = self._get(
                f"issue/{url_quote(remote_id)}", fields=",".join(["status", *values])
            )
            # The fields do not depend on the workflow: written even when the status cannot be.
            if edit:
                self._edit(remote_id, edit)
            if str(current["fields"]["status"]["name"]).lower() == wanted:
                # Already there; but a status that spans fields (Done + resolution Won't Do)
                # is reached only if they agree too, and no transition can change them now.
                self._check_in_place(remote_id, status, values, current["fields"])
                return
            targets = sorted({str(t.get("to", {}).get("name")) for t in available})
            raise PermanentRemoteError(
                f"no transition of issue {remote_id} leads to status {status!r} "
                f"(from {current['fields']['status']['name']!r}; transitions lead to: "
                f"{', '.join(targets) or 'nowhere'}): fix the mapping's status write table "
                "or the workflow"
            )
        on_screen: Mapping[str, Any] = chosen.get("fields") or {}
        screen: dict[str, Any] = {}
        missing: list[str] = []
        # A status field the transition's screen lacks cannot be written with it (Jira refuses
        # it, or ignores it): moving without it would read back as another status (Done
        # without Won't Do is fulfilled, not cancelled), so the move is refused, and says why.
        off_screen = sorted(field_id for field_id in values if field_id not in on_screen)
        if off_screen:
            if edit:
                self._edit(remote_id, edit)
            raise PermanentRemoteError(
                f"the transition {chosen.get('name')!r} of issue {remote_id} to {status!r} "
                f"has no {', '.join(off_screen)} on its screen, which the mapping's status "
                "fields set: add them to the transition's screen in the workflow"
            )
        for field_id, meta in on_screen.items():
            if field_id in values:
                screen[field_id] = self._transition_value(values[field_id], meta)
            elif meta.get("required") and not meta.get("hasDefaultValue"):
                missing.append(meta.get("name", field_id))
        if missing:
            if edit:
                self._edit(remote_id, edit)
            raise PermanentRemoteError(
                f"the transition {chosen.get('name')!r} of issue {remote_id} to {status!r} "
                f"requires {', '.join(missing)}: give them in the mapping's status fields"
            )
        body: dict[str, Any] = {"transition": {"id": str(chosen["id"])}}
        # Only fields the transition's screen lists (expand=transitions.fields) are sent with
        # it: Jira refuses others with 400, and some sites have been seen to drop them silently.
        if edit and all(field_id in on_screen for field_id in edit):
            try:
                self._send("POST", path, {**body, "fields": {**edit, **screen}})
                return
            except PermanentRemoteError as error:
                if error.status != 400:
                    raise
                # Refused as a whole (nothing was changed): the same in two writes, so that a
                # value the edit itself refuses is reported by the edit's own answer.
                logger.info(
                    "%s: issue %s refused fields with the transition to %r (%s); "
                    "editing them first",
                    self.name,
                    remote_id,
                    status,
                    error.remote_message or error,
                )
        if edit:
            self._edit(remote_id, edit)
        if screen:
            body["fields"] = screen
        self._send("POST", path, body)

    def _check_in_place(
        self, remote_id: str, status: str, values: Mapping[str, Any], current: Mapping[str, Any]
    ) -> None:
        """Refuse a move to the status an issue is in when its status fields differ."""
        differ = []
        for field_id, wanted in values.items():
            have = current.get(field_id)
            shown = have.get("name", have.get("value")) if isinstance(have, dict) else have
            if isinstance(wanted, str) and str(shown) != wanted:
                differ.append(f"{field_id} is {shown!r}, not {wanted!r}")
        if differ:
            raise PermanentRemoteError(
                f"issue {remote_id} is already in {status!r} but {'; '.join(differ)}, and no "
                "transition changes it in place: reopen the issue, or give the workflow a "
                f"transition from {status!r} to itself"
            )

    def _transition_value(self, value: Any, meta: Mapping[str, Any]) -> Any:
        if isinstance(value, str) and meta.get("allowedValues"):
            return {"name": value}
        if isinstance(value, str) and (meta.get("schema") or {}).get("custom") == _TEXTAREA:
            return self._rich_text(value)
        return value

    def _comment_copy(
        self,
        remote_id: str,
        correlation: str,
        *,
        body: str | None = None,
        known: Collection[str] = (),
    ) -> str | None:
        """The comment an earlier attempt of this add made, if one reached Jira.

        Recognised by its correlation property, which the add sets in the same request as the
        comment (so no copy exists without it), never by its text alone: a person may have
        written the same words, even from the bridge's own account. The text (when given) only
        picks which comments' property is asked for (one request each, usually none), and
        the bridge's known copies (``known``) are passed over; newest first, through every
        page of the issue's comments: the copy may lie under any number of newer ones.
        """
        path = f"issue/{url_quote(remote_id)}/comment"
        wanted = body.strip() if body is not None else None
        start = 0
        for _ in range(self.config.max_pages):
            page = self._get(
                path, orderBy="-created", startAt=start, maxResults=self.config.comment_page_size
            )
            batch = (page or {}).get("comments") or []
            for existing in batch:
                if str(existing["id"]) in known:
                    continue
                if wanted is not None:
                    text = existing.get("body")
                    text = adf_to_text(text) if isinstance(text, dict) else str(text or "")
                    if text.strip() != wanted:
                        continue
                if self._comment_correlation(str(existing["id"])) == correlation:
                    return str(existing["id"])
            start += len(batch)
            if not batch or start >= int((page or {}).get("total", 0)):
                return None
        logger.warning(
            "%s: issue %s holds more than max_pages=%d pages of comments; the bridge's copy of "
            "a comment was looked for in those only",
            self.name,
            remote_id,
            self.config.max_pages,
        )
        return None

    def find_comment(
        self,
        remote_id: str,
        correlation: str,
        *,
        since: datetime,
        known: Collection[str] = (),
        public: bool = True,
    ) -> str | None:
        """The comment a lost add made: the one carrying ``correlation`` in its property.

        ``since`` is not used to cut the walk short: the property is the proof, and Jira's
        clock may differ from the bridge's by more than any margin.
        """
        return self._comment_copy(remote_id, correlation, known=known)

    def _comment_correlation(self, comment_id: str) -> str | None:
        """The correlation the bridge stored on a comment; ``None`` when it stored none."""
        key = self.config.correlation_property
        try:
            stored = self._get(f"comment/{url_quote(comment_id)}/properties/{url_quote(key)}")
        except PermanentRemoteError as error:
            if error.status == 404:  # no such property: a comment the bridge did not make
                return None
            raise
        value = (stored or {}).get("value")
        correlation = value.get("correlation") if isinstance(value, dict) else None
        return correlation if isinstance(correlation, str) else None

    def add_comment(self, remote_id: str, comment: CommentDraft) -> str:
        """Add a comment (ADF on Cloud); an internal one on JSM when ``public`` is false.

        A comment is no idempotent write: with ``correlation`` set, the comment carries it in a
        comment property, and a retried add whose first attempt reached Jira (a crash or a lost
        answer before the bridge recorded it) finds that comment by it instead of adding a
        second (see :meth:`_comment_copy`).
        """
        text = comment.body
        if comment.files:
            # Wiki markup's link to an issue's file, one a line: Jira shows the files with the
            # comment (as text on Cloud, where ADF names a file by its media id, which the REST
            # upload does not give), and a read ties them to it again (.attachment_io).
            text += "\n\n" + "\n".join(f"[^{file.name}]" for file in comment.files)
        if comment.correlation is not None and (
            found := self._comment_copy(remote_id, comment.correlation, body=text)
        ):
            return found
        body: dict[str, Any] = {"body": text_to_adf(text) if self.deployment == "cloud" else text}
        properties: list[dict[str, Any]] = []
        if not comment.public:
            properties.append({"key": "sd.public.comment", "value": {"internal": True}})
        if comment.correlation:
            properties.append(
                {
                    "key": self.config.correlation_property,
                    "value": {"correlation": comment.correlation},
                }
            )
        if properties:
            body["properties"] = properties
        created = self._send("POST", f"issue/{url_quote(remote_id)}/comment", body)
        return str(created["id"])

    def add_remote_link(
        self, remote_id: str, url: str, title: str, *, global_id: str | None = None
    ) -> str:
        """Link the issue to the linked call in another unit's tool (upserted by ``global_id``).

        :returns: the remote link's id.
        """
        body = {"globalId": global_id or url, "object": {"url": url, "title": title}}
        created = self._send(
            "POST", f"issue/{url_quote(remote_id)}/remotelink", body, idempotent=True
        )
        return str(created["id"])
