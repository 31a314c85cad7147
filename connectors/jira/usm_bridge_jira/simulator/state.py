"""The simulated Jira site: its data and its REST API, independent of any HTTP server.

:class:`JiraSite` answers ``handle(method, path, query, headers, body)`` with a :class:`Reply`.
It is built from Jira's documented behaviour (the project's API-FACTS and the official OpenAPI
description), never from what the connector happens to send: Cloud serves REST v3 (ADF bodies,
``/search/jql`` with ``nextPageToken``, 410 on the old ``/search``, 400 on unbounded JQL) and v2;
Data Center serves v2 only (plain-text bodies, ``/search`` with ``startAt`` and ``total``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from .attachment_api import AttachmentApi
from .attachments import Attachment, FormBody
from .changelog import ChangeItem, History, changelog_json
from .jql import JqlError, Predicate, Query, Sort, parse
from .links import IssueLinks
from .replies import NotJson, Reply
from .replies import errors as _errors
from .webhooks import Webhook, Webhooks

__all__ = [
    "CLOUD_EMAIL",
    "CLOUD_TOKEN",
    "DC_TOKEN",
    "SOFTWARE_STATUSES",
    "SOFTWARE_TRANSITIONS",
    "TRANSITIONS",
    "Attachment",
    "Flavour",
    "Issue",
    "JiraSite",
    "NotJson",
    "Reply",
    "SimClock",
    "Transition",
]

Flavour = Literal["cloud", "datacenter"]

CLOUD_EMAIL: Final = "admin@sim.example"
CLOUD_TOKEN: Final = "sim-cloud-api-token-0123456789"  # noqa: S105 - the simulator's own
DC_TOKEN: Final = "sim-dc-personal-access-token-0123456789"  # noqa: S105 - the simulator's own

#: Comments a search returns with each issue; more are read from ``/issue/{id}/comment``.
COMMENTS_IN_SEARCH: Final = 20
_MAX_RESULTS = {"cloud": 100, "datacenter": 1000}
_GONE = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at "
    "https://developer.atlassian.com/changelog/#CHANGE-2046"
)
_UNSIGNED: Final = "You are not authenticated. Authentication required to perform this operation."
_UNBOUNDED = (
    "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
)


def _fields_and_update(
    payload: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], Reply | None]:
    """A write's ``fields`` and ``update``, or the 400 Jira answers: either is not an object, or
    a field is named in both (the OpenAPI description: "Fields included in here cannot be
    included in ``update``")."""
    fields, update = payload.get("fields") or {}, payload.get("update") or {}
    if not isinstance(fields, dict) or not isinstance(update, dict):
        return {}, {}, _errors(400, "'fields' and 'update' must be objects.")
    both = sorted(set(fields) & set(update))
    if both:
        message = "Field cannot be set in both 'fields' and 'update'."
        return {}, {}, _errors(400, **dict.fromkeys(both, message))
    return fields, update, None


class SimClock:
    """The site's clock: real time, or frozen and moved only by :meth:`advance`.

    Frozen, each write still moves it on by ``tick`` so writes keep their order, as they would
    on a real site, while many of them share one minute.
    """

    def __init__(self, start: datetime | None = None, *, tick: timedelta | None = None) -> None:
        self.frozen = start is not None
        self._at = start or datetime.now(UTC)
        self.tick = tick if tick is not None else timedelta(milliseconds=1)
        self._offset = timedelta()

    def now(self) -> datetime:
        """The current time (UTC)."""
        if self.frozen:
            return self._at
        return datetime.now(UTC) + self._offset

    def stamp(self) -> datetime:
        """The time of a write: now, truncated to Jira's milliseconds; moves a frozen clock."""
        moment = self.now()
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        if self.frozen:
            self._at += self.tick
        return moment

    def advance(self, delta: timedelta) -> None:
        """Let ``delta`` pass."""
        if self.frozen:
            self._at += delta
        else:
            self._offset += delta

    def set(self, moment: datetime) -> None:
        """Freeze the clock at ``moment``."""
        self.frozen = True
        self._at = moment


@dataclass
class Status:
    id: str
    name: str
    category: str  # new | indeterminate | done


@dataclass
class Transition:
    id: str
    name: str
    sources: tuple[str, ...]  # status ids; empty = global
    to: str
    requires_resolution: bool = False
    #: Field ids on the transition's screen besides the resolution a resolving transition
    #: asks for: what ``POST .../transitions`` may set in its ``fields`` or ``update``. A
    #: site's admin puts fields on screens; without a screen, Jira refuses any field.
    screen: tuple[str, ...] = ()

    @property
    def screen_fields(self) -> tuple[str, ...]:
        """Every field id the transition's screen holds."""
        return (("resolution",) if self.requires_resolution else ()) + self.screen


@dataclass
class Workflow:
    """A project's own workflow: its statuses, transitions and the status issues start in."""

    statuses: list[Status]
    transitions: list[Transition]
    first: str


@dataclass
class CustomField:
    id: str
    name: str
    kind: Literal["select", "number", "textarea", "string"]
    options: tuple[str, ...] = ()


@dataclass
class Comment:
    id: int
    author: str
    body: dict[str, Any]  # ADF, always; v2 serves its text
    created: datetime
    updated: datetime
    public: bool = True
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class Issue:
    """One issue as the simulator keeps it (rich text as ADF, whatever the API version)."""

    id: int
    project: str
    number: int
    type_id: str
    status_id: str
    priority_id: str
    summary: str
    created: datetime
    updated: datetime
    reporter: str
    description: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    assignee: str | None = None
    resolution_id: str | None = None
    resolved: datetime | None = None
    labels: list[str] = field(default_factory=list)
    custom: dict[str, Any] = field(default_factory=dict)
    comments: list[Comment] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    remote_links: list[dict[str, Any]] = field(default_factory=list)
    #: Who changed what, oldest first (served newest first with ``expand=changelog``).
    changelog: list[History] = field(default_factory=list)
    #: Files attached, oldest first (``fields.attachment``).
    attachments: list[Attachment] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.project}-{self.number}"


STATUSES = [
    Status("1", "Open", "new"),
    Status("3", "In Progress", "indeterminate"),
    Status("10001", "Waiting for customer", "indeterminate"),
    Status("10002", "Pending", "indeterminate"),
    Status("5", "Resolved", "done"),
    Status("6", "Closed", "done"),
    Status("10003", "Canceled", "done"),
]
#: The workflow of every issue. ``Pending`` is reached from ``In Progress`` only, so an issue
#: still ``Open`` needs two transitions to wait on a supplier: the case of a workflow whose
#: shortest path is longer than one hop. The Atlassian pages found list JSM's default
#: statuses, not its transitions (those are in workflow diagrams), so whether JSM's default
#: goes from its opening status to Pending directly is unconfirmed; a site's admin may shape
#: it either way. A test or benchmark may replace ``JiraSite.transitions``.
TRANSITIONS = [
    Transition("11", "Start progress", ("1", "10001", "10002"), "3"),
    Transition("21", "Wait for customer", ("1", "3"), "10001"),
    Transition("31", "Pending", ("3",), "10002"),
    Transition("41", "Resolve", ("1", "3", "10001", "10002"), "5", requires_resolution=True),
    Transition("51", "Close", ("5",), "6"),
    Transition("61", "Cancel", ("1", "3", "10001", "10002"), "10003", requires_resolution=True),
    Transition("71", "Reopen", ("5", "6", "10003"), "1"),
    Transition("81", "Back to open", ("3", "10001", "10002"), "1"),
]
#: Jira Software's default workflow (a team-managed software project): To Do, In Progress,
#: Done, plus the Blocked status the shipped jira-software mapping knows. Done is one status
#: for every ending, told apart by the resolution, which its transition's screen holds: Jira
#: sets Done when none is given, and Won't Do (or Duplicate) says the work was cancelled.
#: Install with :meth:`JiraSite.use_workflow` (``SOFTWARE_STATUSES, SOFTWARE_TRANSITIONS``).
SOFTWARE_STATUSES = [
    Status("10004", "To Do", "new"),
    Status("3", "In Progress", "indeterminate"),
    Status("10005", "Blocked", "indeterminate"),
    Status("10006", "Done", "done"),
]
SOFTWARE_TRANSITIONS = [
    Transition("101", "To Do", ("3", "10005", "10006"), "10004"),
    Transition("111", "In Progress", ("10004", "10005", "10006"), "3"),
    Transition("121", "Blocked", ("10004", "3"), "10005"),
    Transition("131", "Done", ("10004", "3", "10005"), "10006", screen=("resolution",)),
]
PRIORITIES = [("1", "Highest"), ("2", "High"), ("3", "Medium"), ("4", "Low"), ("5", "Lowest")]
RESOLUTIONS = [
    ("10000", "Done"),
    ("10001", "Won't Do"),
    ("10002", "Duplicate"),
    ("10003", "Cannot Reproduce"),
]
ISSUE_TYPES = [
    ("10010", "[System] Incident", "For system outages or incidents."),
    ("10011", "[System] Service request", "Requests for help or information."),
    ("10012", "[System] Problem", "Track underlying causes of incidents."),
    ("10013", "[System] Change", "Requests to change the infrastructure."),
    ("10014", "Task", "A small, distinct piece of work."),
    ("10015", "Bug", "A problem or error."),
    ("10016", "Story", "A feature expressed as a user goal."),
]
CUSTOM_FIELDS = [
    CustomField(
        "customfield_10004",
        "Impact",
        "select",
        (
            "Extensive / Widespread",
            "Significant / Large",
            "Moderate / Limited",
            "Minor / Localized",
        ),
    ),
    CustomField("customfield_10045", "Urgency", "select", ("Critical", "High", "Medium", "Low")),
    CustomField("customfield_10016", "Story point estimate", "number"),
    CustomField("customfield_10050", "Customer notes", "textarea"),
]
_SYSTEM_FIELDS = [
    ("summary", "Summary", "string", True),
    ("description", "Description", "string", True),
    ("environment", "Environment", "string", True),
    ("issuetype", "Issue Type", "issuetype", True),
    ("project", "Project", "project", False),
    ("priority", "Priority", "priority", True),
    ("labels", "Labels", "array", True),
    ("assignee", "Assignee", "user", True),
    ("reporter", "Reporter", "user", True),
    ("status", "Status", "status", False),
    ("resolution", "Resolution", "resolution", False),
    ("resolutiondate", "Resolved", "datetime", False),
    ("created", "Created", "datetime", False),
    ("updated", "Updated", "datetime", False),
    ("comment", "Comment", "comments-page", False),
    ("attachment", "Attachment", "array", False),
]
_NOT_ON_SCREEN: Final = (
    "Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
)
_CUSTOM_TYPE: Final = "com.atlassian.jira.plugin.system.customfieldtypes:"
_DEFAULT_ORDER: Final = Sort("created", True)
_EDITABLE = {"summary", "description", "environment", "issuetype", "priority", "labels", "assignee"}
#: The attributes of an :class:`Issue` that an edit may change.
_EDITED_ATTRIBUTES: Final = (
    "summary",
    "description",
    "environment",
    "type_id",
    "priority_id",
    "labels",
    "assignee",
    "custom",
)


def adf_problem(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` is not an ADF document Jira accepts (``None`` when it is one)."""
    if depth == 0 and (
        not isinstance(value, dict) or value.get("type") != "doc" or value.get("version") != 1
    ):
        return "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
    if depth > 30:
        return "ADF document nested too deeply"
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return "ADF node must be an object with a type"
    if value["type"] == "text":
        return (
            None
            if isinstance(value.get("text"), str) and value["text"]
            else ("ADF text node must have non-empty text")
        )
    content = value.get("content", [])
    if not isinstance(content, list):
        return "ADF content must be an array"
    for child in content:
        problem = adf_problem(child, depth + 1)
        if problem:
            return problem
    return None


def adf_text(doc: Mapping[str, Any] | None) -> str:
    """The plain text of an ADF document: paragraphs as lines."""
    if doc is None:
        return ""

    def inline(node: Any) -> str:
        if node.get("type") == "text":
            return str(node.get("text", ""))
        if node.get("type") == "hardBreak":
            return "\n"
        return "".join(inline(child) for child in node.get("content", []))

    return "\n".join(inline(block) for block in doc.get("content", []))


def text_adf(text: str) -> dict[str, Any]:
    """An ADF document holding ``text``, a paragraph per line."""
    return {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": line}] if line else []}
            for line in text.split("\n")
        ],
    }


def jira_time(moment: datetime, tz: ZoneInfo) -> str:
    """Jira's timestamp form, in the user's zone: ``2021-01-17T23:34:00.000+1100``."""
    local = moment.astimezone(tz)
    return (
        local.strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{local.microsecond // 1000:03d}"
        + (local.strftime("%z"))
    )


class JiraSite:
    """A Jira site in memory with Jira's REST API; thread-safe (one lock around each request).

    :param flavour: ``cloud`` (v3 and v2, basic auth with :data:`CLOUD_EMAIL` /
        :data:`CLOUD_TOKEN`) or ``datacenter`` (v2, bearer :data:`DC_TOKEN`).
    :param time_zone: the account's zone, as ``/myself`` reports it and JQL dates are read in.
    :param clock: the site's clock; frozen clocks make time-dependent tests exact.
    :param second_precision: times shown in whole seconds (see :attr:`second_precision`).
    """

    def __init__(
        self,
        flavour: Flavour = "cloud",
        *,
        base_url: str = "http://127.0.0.1",
        time_zone: str = "Europe/Berlin",
        clock: SimClock | None = None,
        projects: Mapping[str, str] | None = None,
        second_precision: bool = False,
    ) -> None:
        self.flavour: Flavour = flavour
        #: Show issue and comment times in whole seconds (``.000``), as some Jira flavours and
        #: proxies do: two edits within one second then carry the same ``updated``.
        self.second_precision = second_precision
        self.base_url = base_url.rstrip("/")
        self.time_zone = time_zone
        self.tz = ZoneInfo(time_zone)
        self.clock = clock or SimClock()
        self.lock = threading.RLock()
        self.projects = dict(projects or {"IT": "IT Service Desk", "DEV": "Product Development"})
        self._project_ids = {key: str(10000 + n) for n, key in enumerate(self.projects)}
        #: Each project's type: a service desk, except the default site's software project.
        self.project_types = {
            key: "software" if key == "DEV" else "service_desk" for key in self.projects
        }
        self.issues: dict[int, Issue] = {}
        self._by_key: dict[str, Issue] = {}
        self._numbers: dict[str, int] = dict.fromkeys(self.projects, 0)
        self._next_id = 10000
        self._next_comment = 100000
        self._next_link = 1
        #: Links between issues (``POST /issueLink``; ``fields.issuelinks``).
        self.issue_links = IssueLinks()
        self.version = 0
        self.filters: dict[str, str] = {"10000": 'project = "IT"'}
        self.users = {
            "5b10a2844c20165700ede21g": ("Sim Admin", CLOUD_EMAIL, "admin"),
            "5b10ac8d82e05b22cc7d4ef5": ("Casey Customer", "casey@sim.example", "casey"),
        }
        #: The integration account: what :data:`CLOUD_EMAIL` / :data:`CLOUD_TOKEN` (Cloud) or
        #: :data:`DC_TOKEN` (Data Center) sign in as.
        self.me = "5b10a2844c20165700ede21g"
        #: Each account's secret: an API token (Cloud, with its e-mail) or a personal access
        #: token (Data Center). People other than the integration sign in with theirs.
        self.tokens: dict[str, str] = {
            self.me: CLOUD_TOKEN if flavour == "cloud" else DC_TOKEN,
            "5b10ac8d82e05b22cc7d4ef5": "sim-token-casey-0123456789",
        }
        #: The account the request being answered signed in as (the integration otherwise).
        self.caller = self.me
        #: Cloud account types other than a person's ``atlassian``: ``app`` (the automation
        #: actor), ``customer`` (a service desk's portal-only customer).
        self.account_types: dict[str, str] = {}
        self._next_history = 1
        #: Every status of the site, whichever workflow uses it (what ``GET /status`` lists).
        self.statuses = {status.id: status for status in STATUSES}
        #: The workflow of projects without their own (see :meth:`use_workflow`), the same
        #: for every issue type; replace it to model another site's.
        self.transitions: list[Transition] = list(TRANSITIONS)
        self._site_statuses: list[Status] = list(STATUSES)
        #: The status a new issue starts in.
        self.initial_status = "1"
        self._project_workflows: dict[str, Workflow] = {}
        #: Each project's priority scheme (priority ids); a project not named has them all.
        self.project_priorities: dict[str, list[str]] = {}
        self.types = {type_id: (name, text) for type_id, name, text in ISSUE_TYPES}
        #: Each project's issue type scheme (type ids); a project not named has every type.
        self.project_issue_types: dict[str, list[str]] = {}
        self.custom = {cf.id: cf for cf in CUSTOM_FIELDS}
        self._cache: OrderedDict[tuple[str, int], list[int]] = OrderedDict()
        #: Called with (method, path, status, body) for every reply, when set (tests validate).
        self.observer: Callable[[str, str, int, Any], None] | None = None
        #: When set, checks each write's JSON body (method, path, body) before it is acted on,
        #: answering what is wrong with it (``None``: fine), by field where it can tell: the
        #: tests plug in Jira's OpenAPI description, so a body it refuses is a 400 here too.
        self.request_check: Callable[[str, str, Any], tuple[str, str | None] | None] | None = None
        self.requests = 0
        #: Webhooks registered by an admin; each change fires its event to them.
        self.webhooks = Webhooks()
        #: The accounts with the Jira administrators global permission: the only ones that
        #: may manage webhooks over REST.
        self.admins: set[str] = {self.me}
        #: Issue attachments: their files, settings (``enabled``, ``upload_limit``) and API.
        self.attachments = AttachmentApi(self)

    def use_workflow(
        self,
        statuses: list[Status],
        transitions: list[Transition],
        first: str | None = None,
        *,
        project: str | None = None,
    ) -> None:
        """Give every issue another workflow (Jira Software's: ``SOFTWARE_STATUSES`` and
        ``SOFTWARE_TRANSITIONS``), or only ``project``'s issues; new issues start in ``first``
        (default: the first status)."""
        with self.lock:
            start = first or statuses[0].id
            if project is None:
                self._site_statuses = list(statuses)
                self.transitions = list(transitions)
                self.initial_status = start
            else:
                own = Workflow(list(statuses), list(transitions), start)
                self._project_workflows[project] = own
            every = [*self._site_statuses]
            for workflow in self._project_workflows.values():
                every.extend(workflow.statuses)
            self.statuses = {status.id: status for status in every}
            self.version += 1

    def workflow_of(self, project: str) -> Workflow:
        """The workflow ``project``'s issues follow."""
        own = self._project_workflows.get(project)
        return own or Workflow(self._site_statuses, self.transitions, self.initial_status)

    def priorities_of(self, project: str) -> list[str]:
        """The priority ids ``project``'s scheme offers."""
        return self.project_priorities.get(project) or [pid for pid, _ in PRIORITIES]

    def types_of(self, project: str) -> list[str]:
        """The issue type ids ``project``'s issue type scheme offers."""
        return self.project_issue_types.get(project) or list(self.types)

    def offer_types(self, project: str, prefix: str) -> None:
        """Give ``project`` a scheme of the site's types whose names start with ``prefix``
        (a service desk's ``[System] `` work categories, say)."""
        self.project_issue_types[project] = [
            tid for tid, (name, _) in self.types.items() if name.startswith(prefix)
        ]

    def resolution_name(self, issue: Issue) -> str | None:
        """The name of an issue's resolution (``None`` while unresolved)."""
        return dict(RESOLUTIONS).get(issue.resolution_id or "")

    def _time(self, moment: datetime) -> str:
        """A time as the site shows it: milliseconds, or whole seconds when so configured."""
        if self.second_precision:
            moment = moment.replace(microsecond=0)
        return jira_time(moment, self.tz)

    time_text = _time

    def record_history(
        self,
        issue: Issue,
        items: tuple[ChangeItem, ...],
        moment: datetime,
        *,
        author: str | None = None,
    ) -> None:
        """Add a history to ``issue``'s changelog, by ``author`` (default: the caller)."""
        issue.changelog.append(History(self._next_history, author or self.caller, moment, items))
        self._next_history += 1

    def touch_at(self, issue: Issue, moment: datetime) -> None:
        """Move ``issue``'s ``updated`` to ``moment``, as any change of it does."""
        self._touch(issue, moment)

    # -- what people do in the site (and tests, directly) --------------------------------------

    def _touch(
        self, issue: Issue, moment: datetime | None = None, event: str = "jira:issue_updated"
    ) -> None:
        issue.updated = moment or self.clock.stamp()
        self.version += 1
        if event:  # "": the caller fires its own event (a comment's)
            self._fire(event, issue)

    def _fire(self, event: str, issue: Issue, comment: Comment | None = None) -> None:
        """Tell the registered webhooks (:attr:`webhooks`) what happened to ``issue``."""
        if not self.webhooks.registered:
            return
        payload: dict[str, Any] = {
            "issue": {
                "id": str(issue.id),
                "key": issue.key,
                "self": f"{self._api('2')}/issue/{issue.id}",
                "fields": self.issue_json(
                    issue, "2", {"summary", "status", "updated", "project", "issuetype"}
                )["fields"],
            }
        }
        if comment is not None:
            payload["comment"] = self.comment_json(issue, comment, "2")
        else:
            payload["issue_event_type_name"] = (
                "issue_created" if event == "jira:issue_created" else "issue_generic"
            )

        def matches(hook: Webhook) -> bool:
            if not hook.jql:
                return True
            try:
                where = self._parse(hook.jql).where
            except JqlError:  # Jira checks the filter when it is saved; an odd one matches none
                return False
            return where is None or bool(where(issue))

        self.webhooks.fire(event, payload, matches)

    def add_issue(
        self,
        summary: str,
        *,
        project: str = "IT",
        type_name: str = "[System] Service request",
        description: str | None = None,
        priority: str = "Medium",
        reporter: str | None = None,
        at: datetime | None = None,
        properties: Mapping[str, Any] | None = None,
        custom: Mapping[str, Any] | None = None,
        labels: list[str] | None = None,
    ) -> Issue:
        """Create an issue directly (as a person in the UI would); ``at`` sets its times."""
        with self.lock:
            moment = at or self.clock.stamp()
            self._next_id += 1
            self._numbers[project] += 1
            type_id = next(tid for tid, (name, _) in self.types.items() if name == type_name)
            priority_id = next(pid for pid, name in PRIORITIES if name == priority)
            issue = Issue(
                id=self._next_id,
                project=project,
                number=self._numbers[project],
                type_id=type_id,
                status_id=self.workflow_of(project).first,
                priority_id=priority_id,
                summary=summary,
                created=moment,
                updated=moment,
                reporter=reporter or "5b10ac8d82e05b22cc7d4ef5",
                description=text_adf(description) if description else None,
                properties=dict(properties or {}),
                custom=dict(custom or {}),
                labels=list(labels or []),
            )
            self.issues[issue.id] = issue
            self._by_key[issue.key] = issue
            self.version += 1
            self._fire("jira:issue_created", issue)
            return issue

    def seed(
        self,
        count: int,
        *,
        project: str = "IT",
        start: datetime | None = None,
        step: timedelta | None = None,
        comments: int = 0,
    ) -> list[Issue]:
        """Create ``count`` issues; with ``start`` and ``step``, at those times (a history)."""
        kinds = [name for _, name, _ in ISSUE_TYPES[:5]]
        made = []
        for n in range(count):
            at = start + step * n if start is not None and step is not None else None
            issue = self.add_issue(
                f"Printer {n} on floor {n % 7} is jammed",
                project=project,
                type_name=kinds[n % len(kinds)],
                description=f"Reported by phone.\nPaper tray {n % 3} is stuck.",
                priority=PRIORITIES[n % 5][1],
                at=at,
                custom={"customfield_10004": CUSTOM_FIELDS[0].options[n % 4]},
                labels=["printer"],
            )
            for c in range(comments):
                self.add_comment(issue, f"Comment {c} on {issue.key}", at=at)
            made.append(issue)
        return made

    def add_comment(
        self, issue: Issue, text: str, *, public: bool = True, at: datetime | None = None
    ) -> Comment:
        """Comment on ``issue`` directly; bumps its ``updated`` as Jira does."""
        with self.lock:
            moment = at or self.clock.stamp()
            self._next_comment += 1
            comment = Comment(self._next_comment, self.me, text_adf(text), moment, moment, public)
            issue.comments.append(comment)
            self._touch(issue, moment, event="")
            self._fire("comment_created", issue, comment)
            return comment

    def touch(self, issue: Issue, summary: str | None = None) -> None:
        """Edit ``issue`` directly (its summary), as a person would."""
        with self.lock:
            issue.summary = summary if summary is not None else issue.summary + " (again)"
            self._touch(issue)

    def delete_issue(self, id_or_key: str | int) -> bool:
        """Delete an issue directly (as an administrator would); whether it existed."""
        with self.lock:
            issue = self.issue(id_or_key)
            if issue is None:
                return False
            del self.issues[issue.id]
            self._by_key.pop(issue.key, None)
            self.issue_links.forget(issue.id)
            self.attachments.forget_issue(issue)
            self.version += 1
            return True

    def issue(self, id_or_key: str | int) -> Issue | None:
        """The issue with this id or key."""
        text = str(id_or_key)
        if text.isdigit():
            return self.issues.get(int(text))
        return self._by_key.get(text.upper())

    # -- rendering -----------------------------------------------------------------------------

    def _api(self, version: str) -> str:
        return f"{self.base_url}/rest/api/{version}"

    def user_json(self, account: str | None, version: str, *, me: bool = False) -> Any:
        if account is None:
            return None
        name, email, login = self.users[account]
        out: dict[str, Any] = {"self": f"{self._api(version)}/user?accountId={account}"}
        if self.flavour == "cloud":
            out["accountId"] = account
            out["accountType"] = self.account_types.get(account, "atlassian")
        else:
            out["self"] = f"{self._api(version)}/user?username={login}"
            out["name"] = login
            out["key"] = login
        out.update(
            emailAddress=email,
            avatarUrls={"48x48": f"{self.base_url}/avatar/{login}.png"},
            displayName=name,
            active=True,
            timeZone=self.time_zone,
        )
        if me:
            out["locale"] = "en_GB"
        return out

    def status_json(self, status_id: str, version: str) -> dict[str, Any]:
        status = self.statuses[status_id]
        category = {
            "new": ("2", "To Do", "blue-gray"),
            "indeterminate": ("4", "In Progress", "yellow"),
            "done": ("3", "Done", "green"),
        }[status.category]
        return {
            "self": f"{self._api(version)}/status/{status.id}",
            "description": "",
            "iconUrl": f"{self.base_url}/images/icons/statuses/generic.png",
            "name": status.name,
            "id": status.id,
            "statusCategory": {
                "self": f"{self._api(version)}/statuscategory/{category[0]}",
                "id": int(category[0]),
                "key": status.category,
                "colorName": category[2],
                "name": category[1],
            },
        }

    def _type_json(self, type_id: str, version: str) -> dict[str, Any]:
        name, text = self.types[type_id]
        return {
            "self": f"{self._api(version)}/issuetype/{type_id}",
            "id": type_id,
            "description": text,
            "iconUrl": f"{self.base_url}/images/icons/issuetypes/{type_id}.png",
            "name": name,
            "subtask": False,
            "hierarchyLevel": 0,
        }

    def _project_json(self, key: str, version: str) -> dict[str, Any]:
        pid = self._project_ids[key]
        return {
            "self": f"{self._api(version)}/project/{pid}",
            "id": pid,
            "key": key,
            "name": self.projects[key],
            "projectTypeKey": self.project_types[key],
            "simplified": False,
            "avatarUrls": {"48x48": f"{self.base_url}/avatar/project/{pid}.png"},
        }

    def _named(self, kind: str, ident: str | None, version: str) -> Any:
        if ident is None:
            return None
        table = dict(PRIORITIES) if kind == "priority" else dict(RESOLUTIONS)
        out = {"self": f"{self._api(version)}/{kind}/{ident}", "id": ident, "name": table[ident]}
        if kind == "priority":
            out["iconUrl"] = f"{self.base_url}/images/icons/priorities/{ident}.svg"
        else:
            out["description"] = ""
        return out

    def _rich(self, doc: dict[str, Any] | None, version: str) -> Any:
        if doc is None:
            return None
        return doc if version == "3" else adf_text(doc)

    def comment_json(self, issue: Issue, comment: Comment, version: str) -> dict[str, Any]:
        author = self.user_json(comment.author, version)
        return {
            "self": f"{self._api(version)}/issue/{issue.id}/comment/{comment.id}",
            "id": str(comment.id),
            "author": author,
            "body": self._rich(comment.body, version),
            "updateAuthor": author,
            "created": self._time(comment.created),
            "updated": self._time(comment.updated),
            "jsdPublic": comment.public,
        }

    def _custom_json(self, cf: CustomField, value: Any, version: str) -> Any:
        if value is None:
            return None
        if cf.kind == "select":
            number = cf.options.index(value)
            option_id = f"{cf.id.removeprefix('customfield_')}{number}"
            return {
                "self": f"{self._api(version)}/customFieldOption/{option_id}",
                "value": value,
                "id": option_id,
            }
        if cf.kind == "textarea":
            return self._rich(value, version)
        return value

    def issue_json(
        self, issue: Issue, version: str, wanted: set[str] | None, expand: str = ""
    ) -> dict[str, Any]:
        """The issue as ``GET /issue`` or a search returns it; ``wanted`` None means all fields;
        ``expand`` (comma-separated) may ask for its ``changelog``."""
        fields: dict[str, Any] = {}

        def want(name: str) -> bool:
            return wanted is None or name in wanted

        if want("summary"):
            fields["summary"] = issue.summary
        if want("description"):
            fields["description"] = self._rich(issue.description, version)
        if want("environment"):
            fields["environment"] = self._rich(issue.environment, version)
        if want("status"):
            fields["status"] = self.status_json(issue.status_id, version)
        if want("issuetype"):
            fields["issuetype"] = self._type_json(issue.type_id, version)
        if want("project"):
            fields["project"] = self._project_json(issue.project, version)
        if want("priority"):
            fields["priority"] = self._named("priority", issue.priority_id, version)
        if want("resolution"):
            fields["resolution"] = self._named("resolution", issue.resolution_id, version)
        if want("resolutiondate"):
            fields["resolutiondate"] = self._time(issue.resolved) if issue.resolved else None
        if want("created"):
            fields["created"] = self._time(issue.created)
        if want("updated"):
            fields["updated"] = self._time(issue.updated)
        if want("reporter"):
            fields["reporter"] = self.user_json(issue.reporter, version)
        if want("assignee"):
            fields["assignee"] = self.user_json(issue.assignee, version)
        if want("labels"):
            fields["labels"] = list(issue.labels)
        if want("issuelinks"):
            fields["issuelinks"] = self._issue_links_json(issue, version)
        if want("attachment"):
            fields["attachment"] = self.attachments.field_json(issue, version)
        if want("comment"):
            shown = issue.comments[:COMMENTS_IN_SEARCH]
            fields["comment"] = {
                "comments": [self.comment_json(issue, c, version) for c in shown],
                "self": f"{self._api(version)}/issue/{issue.id}/comment",
                "maxResults": COMMENTS_IN_SEARCH,
                "total": len(issue.comments),
                "startAt": 0,
            }
        for cf in self.custom.values():
            if want(cf.id):
                fields[cf.id] = self._custom_json(cf, issue.custom.get(cf.id), version)
        out: dict[str, Any] = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog",
            "id": str(issue.id),
            "self": f"{self._api(version)}/issue/{issue.id}",
            "key": issue.key,
            "fields": fields,
        }
        if "changelog" in {part.strip() for part in expand.split(",")}:
            out["changelog"] = changelog_json(
                issue.changelog,
                user_json=lambda account: self.user_json(account, version),
                time_text=self._time,
            )
        return out

    # -- JQL -----------------------------------------------------------------------------------

    def _value_of(self, issue: Issue, name: str) -> Any:
        if name.startswith("issue.property["):
            key, _, path = name[len("issue.property[") :].partition("]")
            value: Any = issue.properties.get(key)
            for part in path.strip(".").split(".") if path.strip(".") else []:
                value = value.get(part) if isinstance(value, dict) else None
            return value
        if name.startswith("cf[") and name.endswith("]"):
            value = issue.custom.get(f"customfield_{name[3:-1]}")
            return adf_text(value) if isinstance(value, dict) else value
        getters: dict[str, Callable[[Issue], Any]] = {
            "project": lambda i: [
                i.project,
                self._project_ids[i.project],
                self.projects[i.project],
            ],
            "key": lambda i: i.key,
            "issuekey": lambda i: i.key,
            "id": lambda i: i.id,
            "status": lambda i: [self.statuses[i.status_id].name, i.status_id],
            "issuetype": lambda i: [self.types[i.type_id][0], i.type_id],
            "type": lambda i: [self.types[i.type_id][0], i.type_id],
            "priority": lambda i: [dict(PRIORITIES)[i.priority_id], i.priority_id],
            "resolution": lambda i: (
                [dict(RESOLUTIONS)[i.resolution_id], i.resolution_id]
                if i.resolution_id
                else ["Unresolved"]
            ),
            "labels": lambda i: i.labels,
            "summary": lambda i: i.summary,
            "text": lambda i: f"{i.summary}\n{adf_text(i.description)}",
            "description": lambda i: adf_text(i.description),
            "created": lambda i: i.created,
            "createddate": lambda i: i.created,
            "updated": lambda i: i.updated,
            "updateddate": lambda i: i.updated,
            "resolved": lambda i: i.resolved,
            "reporter": lambda i: [i.reporter, self.users[i.reporter][2]],
            "assignee": lambda i: [i.assignee, self.users[i.assignee][2]] if i.assignee else None,
        }
        if name not in getters:
            raise JqlError(
                f"Field '{name}' does not exist or you do not have permission to view it."
            )
        return getters[name](issue)

    def _parse(self, jql: str) -> Query:
        def resolve_filter(ident: str) -> Predicate | None:
            text = self.filters.get(ident)
            return None if text is None else self._parse(text).where

        query = parse(
            jql,
            tz=self.tz,
            now=self.clock.now(),
            resolve_filter=resolve_filter,
            value_of=self._value_of,
        )
        # Field names are checked when the query is parsed, not when an issue is met.
        probe = next(iter(self.issues.values()), None)
        if probe is not None and query.where is not None:
            query.where(probe)
        for sort in query.order:
            if sort.field not in (
                "updated",
                "created",
                "resolved",
                "key",
                "issuekey",
                "id",
                "priority",
                "status",
                "summary",
            ):
                raise JqlError(f"Field '{sort.field}' does not exist or cannot be sorted.")
        return query

    def _sorted_ids(self, jql: str) -> list[int]:
        """The ids matching ``jql`` in its order; cached per data version (tokens re-run it)."""
        cache_key = (jql, self.version)
        if cache_key in self._cache:
            self._cache.move_to_end(cache_key)
            return self._cache[cache_key]
        query = self._parse(jql)
        found = [i for i in self.issues.values() if query.where is None or query.where(i)]
        order = query.order or (_DEFAULT_ORDER,)
        for sort in reversed(order):
            found.sort(key=_SORT_KEYS[sort.field], reverse=sort.descending)
        ids = [issue.id for issue in found]
        self._cache[cache_key] = ids
        while len(self._cache) > 16:
            self._cache.popitem(last=False)
        return ids

    # -- the HTTP API --------------------------------------------------------------------------

    def add_user(
        self,
        account: str,
        name: str,
        email: str,
        login: str,
        token: str,
        *,
        account_type: str = "atlassian",
    ) -> None:
        """A person with their own account, who signs in with ``token`` (see :meth:`sign_in`);
        ``account_type`` ``app`` for an automation's actor, ``customer`` for a portal customer."""
        with self.lock:
            self.users[account] = (name, email, login)
            self.tokens[account] = token
            if account_type != "atlassian":
                self.account_types[account] = account_type

    def sign_in(self, account: str) -> dict[str, str]:
        """The request headers that sign in as ``account``, as this flavour expects them."""
        if self.flavour == "cloud":
            pair = f"{self.users[account][1]}:{self.tokens[account]}"
            return {"Authorization": f"Basic {base64.b64encode(pair.encode()).decode()}"}
        return {"Authorization": f"Bearer {self.tokens[account]}"}

    def account_of(self, headers: Mapping[str, str]) -> str | None:
        """The account the request's credentials sign in as (``None``: not signed in)."""
        # Header names are case-insensitive (RFC 9110, section 5.1): requests-based clients
        # such as pycontribs' ``jira`` send ``authorization`` in lower case.
        given = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        for account in self.tokens:
            if account in self.users and self.sign_in(account)["Authorization"] == given:
                return account
        return None

    def authenticated(self, headers: Mapping[str, str]) -> bool:
        """Whether the request carries credentials of an account of this site."""
        return self.account_of(headers) is not None

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes | FormBody,
    ) -> Reply:
        """Answer one request as Jira would; ``body`` is a multipart form received to disk
        (see :func:`.attachments.receive_form`) or the raw bytes of any other body."""
        with self.lock:
            self.requests += 1
            try:
                reply = self._handle(method, path, query, headers, body)
            finally:
                self.caller = self.me
                if isinstance(body, FormBody):
                    body.discard()  # the parts no upload adopted
            if self.observer is not None:
                self.observer(method, path, reply.status, reply.body)
            return reply

    def _handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes | FormBody,
    ) -> Reply:
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if parts[:2] == ["media", "file"] and method == "GET":
            return self.attachments.media(parts[2:], query)
        account = self.account_of(headers)
        if parts[:2] == ["secure", "attachment"] and method == "GET":
            return self.attachments.secure(parts[2:]) if account else _errors(401, _UNSIGNED)
        if parts[:4] == ["rest", "webhooks", "1.0", "webhook"]:
            return self._admin_webhooks(method, parts[4:], headers, _bytes(body))
        if parts[:2] != ["rest", "api"] or len(parts) < 4:
            return _errors(404, "Not found")
        version, route = parts[2], parts[3:]
        if version not in ("2", "3") or (version == "3" and self.flavour != "cloud"):
            return _errors(404, "null for uri: " + path)
        if route != ["serverInfo"] and account is None:
            return _errors(401, _UNSIGNED)
        self.caller = account or self.me
        if method == "POST" and len(route) == 3 and route[::2] == ["issue", "attachments"]:
            return self.attachments.upload(version, route[1], headers, body)
        if isinstance(body, FormBody):
            return _errors(415, "Unsupported Media Type: this resource takes JSON.")
        if route[0] == "attachment":
            answer = self.attachments.route(method, version, route[1:], query, headers)
            if answer is not None:
                return answer
        payload: Any = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                return _errors(400, "Unexpected character: the request body is not valid JSON.")
        if self.request_check is not None and method in ("POST", "PUT"):
            problem = self.request_check(method, path, payload)
            if problem is not None:
                message, field_name = problem
                if field_name is None:
                    return _errors(400, message)
                return _errors(400, **{field_name: message})
        try:
            return self._route(method, version, route, query, payload)
        except JqlError as error:
            return _errors(400, f"Error in the JQL Query: {error}")

    def _route(
        self, method: str, v: str, route: list[str], query: Mapping[str, str], payload: Any
    ) -> Reply:
        match method, route:
            case "GET", ["serverInfo"]:
                return Reply(200, self._server_info())
            case "GET", ["myself"]:
                return Reply(200, self.user_json(self.caller, v, me=True))
            case "GET", ["field"]:
                return Reply(200, self._fields())
            case "GET", ["priority"]:
                return Reply(
                    200,
                    [
                        self._named("priority", pid, v)
                        | {"description": name, "statusColor": "#cccccc"}
                        for pid, name in PRIORITIES
                    ],
                )
            case "GET", ["priority", "search"] if self.flavour == "cloud":
                return self._priority_search(v, query)
            case "GET", ["resolution", "search"] if self.flavour == "cloud":
                values = [
                    {"id": rid, "name": name, "description": "", "default": rid == "10000"}
                    for rid, name in RESOLUTIONS
                ]
                return Reply(200, self._page(query, values))
            case "GET", ["resolution"]:
                return Reply(200, [self._named("resolution", rid, v) for rid, _ in RESOLUTIONS])
            case "GET", ["status"]:
                return Reply(200, [self.status_json(sid, v) for sid in self.statuses])
            case "GET", ["issuetype"]:
                return Reply(200, [self._type_json(tid, v) for tid in self.types])
            case "GET", ["project"]:
                # Deprecated on Cloud in favour of /project/search, still served (and what
                # pycontribs' ``projects()`` reads): every project, as a plain array.
                return Reply(200, [self._project_json(key, v) for key in self.projects])
            case "GET", ["project", key] if self._project_key(key):
                project = self._project_key(key)
                assert project is not None
                out = self._project_json(project, v)
                out["issueTypes"] = [self._type_json(tid, v) for tid in self.types_of(project)]
                return Reply(200, out)
            case "GET", ["project", key, "statuses"] if project := self._project_key(key):
                return Reply(
                    200,
                    [
                        {
                            "self": f"{self._api(v)}/issuetype/{tid}",
                            "id": tid,
                            "name": name,
                            "subtask": False,
                            "statuses": [
                                self.status_json(status.id, v)
                                for status in self.workflow_of(project).statuses
                            ],
                        }
                        for tid, (name, _) in self.types.items()
                        if tid in self.types_of(project)
                    ],
                )
            case "GET", ["project", key, "priorityscheme"] if self.flavour == "datacenter" and (
                project := self._project_key(key)
            ):
                # Data Center's view of a project's priority scheme (Cloud: /priority/search).
                offered = self.priorities_of(project)
                own = project in self.project_priorities
                return Reply(
                    200,
                    {
                        "self": f"{self._api(v)}/priorityschemes/{10100 if own else 1}",
                        "id": 10100 if own else 1,
                        "name": f"{project} priorities" if own else "Default priority scheme",
                        "description": "",
                        "defaultOptionId": offered[len(offered) // 2],
                        "optionIds": offered,
                        "defaultScheme": not own,
                    },
                )
            case _, ["project", key, *_]:
                return _errors(404, f"No project could be found with key '{key}'.")
            case "GET" | "POST", ["search", "jql"] if self.flavour == "cloud":
                params = dict(query)
                if method == "POST":
                    if not isinstance(payload, dict):
                        return _errors(400, "The request body is required.")
                    params = {
                        k: ",".join(map(str, val)) if isinstance(val, list) else str(val)
                        for k, val in payload.items()
                    }
                return self._search_jql(v, params)
            case "GET" | "POST", ["search"] if self.flavour == "cloud":
                return _errors(410, _GONE)
            case "GET" | "POST", ["search"]:
                params = dict(query)
                if method == "POST" and isinstance(payload, dict):
                    params = {
                        k: ",".join(map(str, val)) if isinstance(val, list) else str(val)
                        for k, val in payload.items()
                    }
                return self._search_start_at(v, params)
            case "POST", ["issue"]:
                return self._create(v, payload)
            case "POST", ["issueLink"]:
                return self._link_issues(payload)
            case "GET", ["issueLinkType"]:
                types = self.issue_links.types.values()
                return Reply(200, {"issueLinkTypes": [t.as_json(self._api(v)) for t in types]})
        if len(route) >= 3 and route[0] == "comment" and route[2] == "properties":
            return self._comment_properties(method, v, route[1], route[3:], payload)
        if len(route) >= 2 and route[0] == "issue":
            issue = self.issue(route[1])
            if issue is None:
                return _errors(404, "Issue does not exist or you do not have permission to see it.")
            return self._issue_route(method, v, issue, route[2:], query, payload)
        return _errors(404, f"null for uri: /rest/api/{v}/{'/'.join(route)}")

    # -- admin webhooks: /rest/webhooks/1.0/webhook ---------------------------------------------

    def _admin_webhooks(
        self, method: str, route: list[str], headers: Mapping[str, str], body: bytes
    ) -> Reply:
        """List, create, show and delete webhooks, as Jira does for an account with the Jira
        administrators global permission (:attr:`admins`); 401 unsigned, 403 for any other
        account. Data Center takes no ``secret``: its deliveries are never signed."""
        account = self.account_of(headers)
        if account is None:
            return _errors(401, _UNSIGNED)
        if account not in self.admins:
            return _errors(403, "You do not have the permission to manage webhooks.")
        hooks = {str(hook.id): hook for hook in self.webhooks.registered}
        match method, route:
            case "GET", []:
                return Reply(200, [self._webhook_json(hook) for hook in hooks.values()])
            case "POST", []:
                try:
                    payload = json.loads(body or b"null")
                except ValueError:
                    return _errors(400, "The request body is not valid JSON.")
                return self._create_webhook(payload)
            case "GET", [ident] if ident in hooks:
                return Reply(200, self._webhook_json(hooks[ident]))
            case "DELETE", [ident] if ident in hooks:
                self.webhooks.delete(int(ident))
                return Reply(204)
            case _, [_]:
                return _errors(404, "Webhook not found.")
        return _errors(405, "Method not allowed.")

    def _create_webhook(self, payload: Any) -> Reply:
        if not isinstance(payload, dict):
            return _errors(400, "The request body is required.")
        name, url = payload.get("name"), payload.get("url")
        if not isinstance(name, str) or not name.strip():
            return _errors(400, name="The webhook needs a name.")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return _errors(400, url="The webhook URL must be an absolute http(s) URL.")
        events = payload.get("events") or []
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            return _errors(400, events="events is a list of event names.")
        filters = payload.get("filters") or {}
        jql = filters.get("issue-related-events-section") if isinstance(filters, dict) else None
        if jql:
            try:
                self._parse(str(jql))
            except JqlError as error:
                return _errors(400, filters=f"Invalid JQL: {error}")
        secret = payload.get("secret") if self.flavour == "cloud" else None
        hook = self.webhooks.register(
            url,
            secret=str(secret) if secret else None,
            events=events,
            name=name,
            jql=str(jql) if jql else None,
        )
        return Reply(201, self._webhook_json(hook))

    def _webhook_json(self, hook: Webhook) -> dict[str, Any]:
        # Jira never shows a webhook's secret back.
        return {
            "self": f"{self.base_url}/rest/webhooks/1.0/webhook/{hook.id}",
            "name": hook.name,
            "url": hook.url,
            "events": sorted(hook.events),
            "filters": {"issue-related-events-section": hook.jql or ""},
            "excludeBody": False,
            "enabled": True,
            "lastUpdatedUser": self.me,
            "lastUpdatedDisplayName": self.users[self.me][0],
            "lastUpdated": hook.created,
        }

    def _priority_search(self, v: str, query: Mapping[str, str]) -> Reply:
        """``GET /priority/search``: the site's priorities, or those of ``projectId``'s scheme."""
        offered = [pid for pid, _ in PRIORITIES]
        if query.get("projectId"):
            project = self._project_key(query["projectId"])
            if project is None:
                return _errors(400, f"The project with ID '{query['projectId']}' doesn't exist.")
            offered = self.priorities_of(project)
        values = [
            self._named("priority", pid, v)
            | {"description": name, "statusColor": "#cccccc", "isDefault": pid == "3"}
            for pid, name in PRIORITIES
            if pid in offered
        ]
        return Reply(200, self._page(query, values))

    def _page(self, query: Mapping[str, str], values: list[Any]) -> dict[str, Any]:
        """A ``PageBean`` of ``values`` at ``startAt`` / ``maxResults``."""
        start = max(0, self._int(query, "startAt", 0))
        size = max(1, min(self._int(query, "maxResults", 50), 100))
        page = values[start : start + size]
        return {
            "maxResults": size,
            "startAt": start,
            "total": len(values),
            "isLast": start + size >= len(values),
            "values": page,
        }

    def _project_key(self, ident: str) -> str | None:
        for key, pid in self._project_ids.items():
            if ident.upper() == key or ident == pid:
                return key
        return None

    def _server_info(self) -> dict[str, Any]:
        now = jira_time(self.clock.now(), self.tz)
        if self.flavour == "cloud":
            return {
                "baseUrl": self.base_url,
                "displayUrl": self.base_url,
                "version": "1001.0.0-SNAPSHOT",
                "versionNumbers": [1001, 0, 0],
                "deploymentType": "Cloud",
                "buildNumber": 100289,
                "buildDate": "2025-01-01T00:00:00.000+0000",
                "serverTime": now,
                "scmInfo": "sim",
                "serverTitle": "Jira (usm-bridge simulator)",
            }
        return {
            "baseUrl": self.base_url,
            "version": "9.12.15",
            "versionNumbers": [9, 12, 15],
            "deploymentType": "Server",
            "buildNumber": 9120015,
            "buildDate": "2024-10-01T00:00:00.000+0000",
            "serverTime": now,
            "scmInfo": "sim",
            "serverTitle": "Jira Data Center (usm-bridge simulator)",
        }

    def _fields(self) -> list[dict[str, Any]]:
        out = []
        for fid, name, kind, navigable in _SYSTEM_FIELDS:
            out.append(
                {
                    "id": fid,
                    "key": fid,
                    "name": name,
                    "custom": False,
                    "orderable": navigable,
                    "navigable": True,
                    "searchable": True,
                    "clauseNames": [fid],
                    "schema": {"type": kind, "system": fid},
                }
            )
        for cf in self.custom.values():
            number = cf.id.removeprefix("customfield_")
            custom_type = {
                "select": ("option", "select"),
                "number": ("number", "float"),
                "textarea": ("string", "textarea"),
                "string": ("string", "textfield"),
            }[cf.kind]
            out.append(
                {
                    "id": cf.id,
                    "key": cf.id,
                    "name": cf.name,
                    "custom": True,
                    "orderable": True,
                    "navigable": True,
                    "searchable": True,
                    "clauseNames": [f"cf[{number}]", cf.name],
                    "schema": {
                        "type": custom_type[0],
                        "custom": _CUSTOM_TYPE + custom_type[1],
                        "customId": int(number),
                    },
                }
            )
        return out

    # -- search --------------------------------------------------------------------------------

    @staticmethod
    def _int(params: Mapping[str, str], name: str, default: int) -> int:
        try:
            return int(params.get(name, default))
        except ValueError:
            raise JqlError(f"The value of '{name}' must be a number.") from None

    def _wanted(self, params: Mapping[str, str], default: str) -> set[str] | None:
        names = {n.strip() for n in params.get("fields", default).split(",") if n.strip()}
        if names & {"*all", "*navigable"}:
            return None
        return names

    def _search_jql(self, v: str, params: Mapping[str, str]) -> Reply:
        jql = params.get("jql", "")
        if not jql.strip() or self._parse(jql).where is None:
            return _errors(400, _UNBOUNDED)
        wanted = self._wanted(params, "id")
        cap = _MAX_RESULTS["cloud"] if wanted is None or wanted - {"id", "key"} else 5000
        size = max(1, min(self._int(params, "maxResults", 50), cap))
        digest = hashlib.sha256(jql.encode()).hexdigest()[:16]
        offset = 0
        if params.get("nextPageToken"):
            try:
                token = json.loads(base64.urlsafe_b64decode(params["nextPageToken"] + "=="))
                if token["q"] != digest:
                    raise ValueError("token of another query")
                offset = int(token["o"])
            except (ValueError, KeyError, TypeError):
                return _errors(400, "The provided next page token is invalid or expired.")
        ids = self._sorted_ids(jql)
        page = ids[offset : offset + size]
        body: dict[str, Any] = {
            "issues": [
                self.issue_json(self.issues[i], v, wanted, params.get("expand", "")) for i in page
            ],
            "isLast": offset + size >= len(ids),
        }
        if not body["isLast"]:
            token = json.dumps({"q": digest, "o": offset + size}, separators=(",", ":"))
            body["nextPageToken"] = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
        return Reply(200, body)

    def _search_start_at(self, v: str, params: Mapping[str, str]) -> Reply:
        jql = params.get("jql", "")
        ids = self._sorted_ids(jql) if jql.strip() else self._sorted_ids("ORDER BY created DESC")
        start = max(0, self._int(params, "startAt", 0))
        size = max(0, min(self._int(params, "maxResults", 50), _MAX_RESULTS["datacenter"]))
        wanted = self._wanted(params, "*navigable")
        return Reply(
            200,
            {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": size,
                "total": len(ids),
                "issues": [
                    self.issue_json(self.issues[i], v, wanted, params.get("expand", ""))
                    for i in ids[start : start + size]
                ],
            },
        )

    # -- writes --------------------------------------------------------------------------------

    def _rich_in(self, v: str, name: str, value: Any) -> tuple[dict[str, Any] | None, str | None]:
        """A rich-text value as the site stores it (ADF), or why it is refused."""
        if value is None:
            return None, None
        if v == "3":
            problem = adf_problem(value)
            return (None, problem) if problem else (value, None)
        if not isinstance(value, str):
            return None, f"{name} must be a string."
        return text_adf(value) if value else None, None

    def _edit(self, v: str, issue: Issue, fields: Mapping[str, Any]) -> dict[str, str]:
        """Write ``fields`` into ``issue`` all or nothing, as Jira validates an edit before
        saving any of it; the field errors Jira would answer (none: done)."""
        scratch = replace(issue, labels=list(issue.labels), custom=dict(issue.custom))
        errors = self._apply_fields(v, scratch, fields, creating=False)
        if not errors:
            for name in _EDITED_ATTRIBUTES:
                setattr(issue, name, getattr(scratch, name))
        return errors

    def _apply_fields(
        self, v: str, issue: Issue, fields: Mapping[str, Any], *, creating: bool
    ) -> dict[str, str]:
        """Write ``fields`` into ``issue``; the field errors Jira would answer (none: done)."""
        errors: dict[str, str] = {}
        for name, value in fields.items():
            if name == "project" and creating:
                continue
            if name not in _EDITABLE and name not in self.custom:
                errors[name] = _NOT_ON_SCREEN.format(name=name)
                continue
            if name == "summary":
                if not isinstance(value, str) or not value.strip():
                    errors[name] = "You must specify a summary of the issue."
                elif len(value) > 255:
                    errors[name] = "Summary must be less than 255 characters."
                else:
                    issue.summary = value
            elif name in ("description", "environment"):
                doc, problem = self._rich_in(v, name, value)
                if problem:
                    errors[name] = problem
                else:
                    setattr(issue, name, doc)
            elif name == "issuetype":
                type_id = self._lookup_type(value)
                if type_id is None or type_id not in self.types_of(issue.project):
                    errors[name] = "Specify a valid issue type"
                else:
                    issue.type_id = type_id
            elif name == "priority":
                pid = self._lookup(PRIORITIES, value)
                if pid not in self.priorities_of(issue.project):
                    errors[name] = "Specify a valid priority."
                else:
                    issue.priority_id = pid
            elif name == "labels":
                if not isinstance(value, list) or not all(
                    isinstance(x, str) and x and " " not in x for x in value
                ):
                    errors[name] = "The label must not contain spaces."
                else:
                    issue.labels = list(value)
            elif name == "assignee":
                account = (
                    value.get("accountId") or value.get("name") if isinstance(value, dict) else None
                )
                match = next((a for a, u in self.users.items() if account in (a, u[2])), None)
                if value is not None and match is None:
                    errors[name] = "User does not exist."
                else:
                    issue.assignee = match
            else:
                problem = self._set_custom(v, issue, self.custom[name], value)
                if problem:
                    errors[name] = problem
        return errors

    def _set_custom(self, v: str, issue: Issue, cf: CustomField, value: Any) -> str | None:
        if value is None:
            issue.custom.pop(cf.id, None)
            return None
        if cf.kind == "select":
            chosen = value.get("value") if isinstance(value, dict) else None
            if chosen not in cf.options:
                return f"Option value '{chosen}' is not valid"
            issue.custom[cf.id] = chosen
        elif cf.kind == "number":
            if not isinstance(value, int | float) or isinstance(value, bool):
                return "Operation value must be a number"
            issue.custom[cf.id] = value
        elif cf.kind == "textarea":
            doc, problem = self._rich_in(v, cf.name, value)
            if problem:
                return problem
            issue.custom[cf.id] = doc
        else:
            if not isinstance(value, str):
                return "Operation value must be a string"
            issue.custom[cf.id] = value
        return None

    def _lookup_type(self, value: Any) -> str | None:
        if not isinstance(value, dict):
            return None
        for tid, (name, _) in self.types.items():
            if value.get("id") == tid or value.get("name") == name:
                return tid
        return None

    @staticmethod
    def _lookup(table: list[tuple[str, str]], value: Any) -> str | None:
        if not isinstance(value, dict):
            return None
        for ident, name in table:
            if value.get("id") == ident or value.get("name") == name:
                return ident
        return None

    def _create(self, v: str, payload: Any) -> Reply:
        if not isinstance(payload, dict) or not isinstance(payload.get("fields"), dict):
            return _errors(400, "Can not deserialize instance of issue: fields are required.")
        fields = payload["fields"]
        project_ref = fields.get("project")
        project = None
        if isinstance(project_ref, dict):
            project = self._project_key(str(project_ref.get("key") or project_ref.get("id") or ""))
        if project is None:
            return _errors(400, project="Specify a valid project ID or key")
        type_id = self._lookup_type(fields.get("issuetype"))
        if type_id is None or type_id not in self.types_of(project):
            return _errors(400, issuetype="Specify a valid issue type")
        properties = payload.get("properties", [])
        if not isinstance(properties, list) or not all(
            isinstance(p, dict) and isinstance(p.get("key"), str) and "value" in p
            for p in properties
        ):
            return _errors(400, "Properties must be a list of objects with key and value.")
        draft = Issue(
            id=0,
            project=project,
            number=0,
            type_id=type_id,
            status_id=self.workflow_of(project).first,
            priority_id=self.priorities_of(project)[len(self.priorities_of(project)) // 2],
            summary="",
            created=self.clock.now(),
            updated=self.clock.now(),
            reporter=self.caller,
        )
        errors = self._apply_fields(v, draft, fields, creating=True)
        if "summary" not in fields and "summary" not in errors:
            errors["summary"] = "You must specify a summary of the issue."
        if errors:
            return _errors(400, **errors)
        moment = self.clock.stamp()
        self._next_id += 1
        self._numbers[project] += 1
        draft.id, draft.number = self._next_id, self._numbers[project]
        draft.created = draft.updated = moment
        draft.properties = {p["key"]: p["value"] for p in properties}
        self.issues[draft.id] = draft
        self._by_key[draft.key] = draft
        self.version += 1
        self._fire("jira:issue_created", draft)
        return Reply(
            201, {"id": str(draft.id), "key": draft.key, "self": f"{self._api(v)}/issue/{draft.id}"}
        )

    def _issue_route(
        self,
        method: str,
        v: str,
        issue: Issue,
        rest: list[str],
        query: Mapping[str, str],
        payload: Any,
    ) -> Reply:
        match method, rest:
            case "GET", []:
                wanted = self._wanted(query, "*all")
                return Reply(200, self.issue_json(issue, v, wanted, query.get("expand", "")))
            case "DELETE", []:
                self.delete_issue(issue.id)
                return Reply(204)
            case "PUT", []:
                return self._edit_request(v, issue, payload)
            case "GET", ["transitions"]:
                return Reply(200, self._transitions(issue, v, query.get("expand", "")))
            case "POST", ["transitions"]:
                return self._transition(v, issue, payload)
            case "GET", ["comment"]:
                start = max(0, self._int(query, "startAt", 0))
                size = max(0, min(self._int(query, "maxResults", 5000), 5000))
                ordered = sorted(
                    issue.comments,
                    key=lambda c: c.created,
                    reverse=query.get("orderBy", "created").startswith("-"),
                )
                return Reply(
                    200,
                    {
                        "comments": [
                            self.comment_json(issue, c, v) for c in ordered[start : start + size]
                        ],
                        "maxResults": size,
                        "total": len(issue.comments),
                        "startAt": start,
                    },
                )
            case "POST", ["comment"]:
                return self._comment(v, issue, payload)
            case "GET", ["properties"]:
                keys = [
                    {"key": key, "self": f"{self._api(v)}/issue/{issue.id}/properties/{key}"}
                    for key in issue.properties
                ]
                return Reply(200, {"keys": keys})
            case "DELETE", ["properties", key]:
                if key not in issue.properties:
                    return _errors(404, f"The property with key '{key}' does not exist.")
                del issue.properties[key]
                self.version += 1
                return Reply(204)
            case "GET", ["properties", key]:
                if key not in issue.properties:
                    return _errors(404, f"The property with key '{key}' does not exist.")
                return Reply(200, {"key": key, "value": issue.properties[key]})
            case "PUT", ["properties", key]:
                existed = key in issue.properties
                issue.properties[key] = payload
                self.version += 1
                return Reply(200 if existed else 201)
            case "GET", ["remotelink"]:
                return Reply(200, list(issue.remote_links))
            case "POST", ["remotelink"]:
                return self._remote_link(v, issue, payload)
        return _errors(404, "null for uri")

    def _edit_request(self, v: str, issue: Issue, payload: Any) -> Reply:
        """``PUT /issue/{id}``: ``fields`` (each an implicit ``set``) and ``update`` (lists of
        ``set`` / ``add`` / ``remove`` operations), all validated before anything is saved.

        A field named in both is a 400 (the OpenAPI description: "Fields included in here
        cannot be included in ``update``"), as is an operation the field does not support.
        """
        if not isinstance(payload, dict):
            return _errors(400, "The request body is required.")
        fields, update, refused = _fields_and_update(payload)
        if refused is not None:
            return refused
        values = dict(fields)
        errors: dict[str, str] = {}
        comments: list[dict[str, Any]] = []
        for name, operations in update.items():
            if not isinstance(operations, list) or not all(
                isinstance(op, dict) and len(op) == 1 for op in operations
            ):
                errors[name] = "Operations must be a list of objects, one operation each."
            elif name == "comment":
                problem = self._comment_operations(v, operations, comments)
                if problem:
                    errors[name] = problem
            elif name not in _EDITABLE and name not in self.custom:
                errors[name] = _NOT_ON_SCREEN.format(name=name)
            else:
                problem, value = self._field_operations(issue, name, operations)
                if problem:
                    errors[name] = problem
                else:
                    values[name] = value
        if errors:
            return _errors(400, **errors)
        errors = self._edit(v, issue, values)
        if errors:
            return _errors(400, **errors)
        moment = self.clock.stamp()
        for doc in comments:
            self._next_comment += 1
            issue.comments.append(Comment(self._next_comment, self.caller, doc, moment, moment))
        self._touch(issue, moment)
        return Reply(204)

    def _field_operations(
        self, issue: Issue, name: str, operations: list[dict[str, Any]]
    ) -> tuple[str | None, Any]:
        """The value ``operations`` leave in field ``name`` (labels: from the issue's), or why
        they are refused. Labels take ``set``, ``add`` and ``remove``; other fields ``set``."""
        supported = ("set", "add", "remove") if name == "labels" else ("set",)
        value: Any = list(issue.labels) if name == "labels" else None
        for operation in operations:
            ((verb, argument),) = operation.items()
            if verb not in supported:
                listed = ", ".join(f"'{s}'" for s in supported)
                return f"Field '{name}' does not support operation '{verb}'. Use {listed}.", None
            if verb == "set":
                value = list(argument) if isinstance(argument, list) else argument
            elif not isinstance(argument, str):
                return f"A label to {verb} must be a string.", None
            elif verb == "add" and argument not in value:
                value.append(argument)
            elif verb == "remove" and argument in value:
                value.remove(argument)
        return None, value

    def _comment_operations(
        self, v: str, operations: Any, into: list[dict[str, Any]]
    ) -> str | None:
        """``update.comment``: each ``add`` (``{"body": ...}``) a comment, its body checked."""
        if not isinstance(operations, list) or not all(
            isinstance(op, dict) and len(op) == 1 for op in operations
        ):
            return "Operations must be a list of objects, one operation each."
        for operation in operations:
            ((verb, argument),) = operation.items()
            if verb != "add":
                return f"Field 'comment' does not support operation '{verb}' here. Use 'add'."
            body = argument.get("body") if isinstance(argument, dict) else None
            doc, problem = self._rich_in(v, "body", body)
            if problem or doc is None:
                return problem or "Comment body can not be empty!"
            into.append(doc)
        return None

    def _transitions(self, issue: Issue, v: str, expand: str) -> dict[str, Any]:
        out = []
        for t in self.workflow_of(issue.project).transitions:
            if t.sources and issue.status_id not in t.sources:
                continue
            item: dict[str, Any] = {
                "id": t.id,
                "name": t.name,
                "to": self.status_json(t.to, v),
                "hasScreen": bool(t.screen_fields),
                "isGlobal": not t.sources,
                "isInitial": False,
                "isAvailable": True,
                "isConditional": False,
                "isLooped": False,
            }
            if "transitions.fields" in expand:
                item["fields"] = {name: self._screen_field(name, t, v) for name in t.screen_fields}
            out.append(item)
        return {"expand": "transitions", "transitions": out}

    def _screen_field(self, name: str, transition: Transition, v: str) -> dict[str, Any]:
        """A field of a transition screen as ``expand=transitions.fields`` describes it."""
        if name == "resolution":
            return {
                "required": transition.requires_resolution,
                "schema": {"type": "resolution", "system": "resolution"},
                "name": "Resolution",
                "key": "resolution",
                "hasDefaultValue": False,
                "operations": ["set"],
                "allowedValues": [self._named("resolution", rid, v) for rid, _ in RESOLUTIONS],
            }
        described = next(f for f in self._fields() if f["id"] == name)
        meta: dict[str, Any] = {
            "required": False,
            "schema": described["schema"],
            "name": described["name"],
            "key": name,
            "hasDefaultValue": False,
            "operations": ["set"],
        }
        cf = self.custom.get(name)
        if cf is not None and cf.kind == "select":
            meta["allowedValues"] = [self._custom_json(cf, option, v) for option in cf.options]
        elif name == "priority":
            meta["allowedValues"] = [self._named("priority", pid, v) for pid, _ in PRIORITIES]
        return meta

    def _transition(self, v: str, issue: Issue, payload: Any) -> Reply:
        if not isinstance(payload, dict) or not isinstance(payload.get("transition"), dict):
            return _errors(400, "'transition' identifier must be specified.")
        wanted = str(payload["transition"].get("id", ""))
        chosen = next(
            (
                t
                for t in self.workflow_of(issue.project).transitions
                if t.id == wanted and (not t.sources or issue.status_id in t.sources)
            ),
            None,
        )
        if chosen is None:
            return _errors(400, f"Transition id '{wanted}' is not valid for this issue.")
        fields, update, refused = _fields_and_update(payload)
        if refused is not None:
            return refused
        # Only what the transition's screen holds may be set with it (the OpenAPI description:
        # "a field that isn't included on the transition screen" is a 400), and nothing is
        # changed when anything is refused.
        screen = set(chosen.screen_fields)
        errors: dict[str, str] = {}
        comments: list[dict[str, Any]] = []
        if screen and "comment" in update:
            # A transition with a screen takes a comment too (Atlassian's own "Transition
            # issue" example adds one in ``update``); one without a screen takes no field.
            update = dict(update)
            problem = self._comment_operations(v, update.pop("comment"), comments)
            if problem:
                errors["comment"] = problem
        errors |= {
            name: _NOT_ON_SCREEN.format(name=name)
            for name in [*fields, *update]
            if name not in screen
        }
        values = dict(fields)
        for name, operations in update.items():
            if name in errors:
                continue
            if (
                not isinstance(operations, list)
                or len(operations) != 1
                or not isinstance(operations[0], dict)
                or list(operations[0]) != ["set"]
            ):
                errors[name] = "The simulator models only one 'set' operation per field."
            else:
                values[name] = operations[0]["set"]
        if errors:
            return _errors(400, **errors)
        resolution = None
        if "resolution" in values:  # on the screen (checked above): required or not
            resolution = self._lookup(RESOLUTIONS, values.get("resolution"))
            if resolution is None:
                return _errors(400, resolution="The resolution is not valid.")
        if chosen.requires_resolution and resolution is None:
            return _errors(400, resolution="Resolution is required.")
        edits = {name: value for name, value in values.items() if name != "resolution"}
        if edits:
            errors = self._edit(v, issue, edits)
            if errors:
                return _errors(400, **errors)
        moment = self.clock.stamp()
        before = (issue.status_id, issue.resolution_id)
        issue.status_id = chosen.to
        if self.statuses[chosen.to].category == "done":
            issue.resolution_id = resolution or issue.resolution_id or "10000"
            issue.resolved = moment
        else:
            issue.resolution_id = None
            issue.resolved = None
        for doc in comments:
            self._next_comment += 1
            issue.comments.append(Comment(self._next_comment, self.caller, doc, moment, moment))
        self._record_change(issue, before, moment)
        self._touch(issue, moment)
        return Reply(204)

    def _record_change(
        self, issue: Issue, before: tuple[str, str | None], moment: datetime
    ) -> None:
        """The changelog entry of a transition: the status (and resolution) it changed, by the
        account that signed in (a customer, an agent, the automation's app account)."""
        status, resolution = before
        items = [
            ChangeItem(
                "status", status, self.statuses[status].name,
                issue.status_id, self.statuses[issue.status_id].name,
            )
        ]  # fmt: skip
        if resolution != issue.resolution_id:
            items.append(
                ChangeItem(
                    "resolution", resolution, _resolution_text(resolution),
                    issue.resolution_id, _resolution_text(issue.resolution_id),
                )
            )  # fmt: skip
        self.record_history(issue, tuple(items), moment)

    def _comment(self, v: str, issue: Issue, payload: Any) -> Reply:
        if not isinstance(payload, dict) or "body" not in payload:
            return _errors(400, body="Comment body can not be empty!")
        doc, problem = self._rich_in(v, "body", payload["body"])
        if problem or doc is None:
            return _errors(400, body=problem or "Comment body can not be empty!")
        properties = {
            p["key"]: p.get("value")
            for p in payload.get("properties") or []
            if isinstance(p, dict) and isinstance(p.get("key"), str)
        }
        internal = properties.get("sd.public.comment", {})
        public = not (isinstance(internal, dict) and internal.get("internal") is True)
        moment = self.clock.stamp()
        self._next_comment += 1
        comment = Comment(self._next_comment, self.caller, doc, moment, moment, public, properties)
        issue.comments.append(comment)
        self._touch(issue, moment, event="")
        self._fire("comment_created", issue, comment)
        return Reply(201, self.comment_json(issue, comment, v))

    def _comment_properties(
        self, method: str, v: str, comment_id: str, rest: list[str], payload: Any
    ) -> Reply:
        """``/comment/{commentId}/properties[/{propertyKey}]``: a comment's entity properties.

        Set with the comment (``properties`` in its create body) or by PUT; as issue properties
        here, they leave the issue's ``updated`` as it is.
        """
        every = (c for issue in self.issues.values() for c in issue.comments)
        comment = next((c for c in every if str(c.id) == comment_id), None)
        if comment is None:
            return _errors(404, f"Can not find a comment for the id: {comment_id}.")
        match method, rest:
            case "GET", []:
                keys = [
                    {"key": key, "self": f"{self._api(v)}/comment/{comment.id}/properties/{key}"}
                    for key in comment.properties
                ]
                return Reply(200, {"keys": keys})
            case "GET", [key]:
                if key not in comment.properties:
                    return _errors(404, f"The property with key '{key}' does not exist.")
                return Reply(200, {"key": key, "value": comment.properties[key]})
            case "PUT", [key]:
                if payload is None:
                    return _errors(400, "The property value must be a non-empty JSON value.")
                if len(key) > 255:
                    return _errors(400, "The property key can not be longer than 255 characters.")
                existed = key in comment.properties
                comment.properties[key] = payload
                self.version += 1
                return Reply(200 if existed else 201)
            case "DELETE", [key]:
                if key not in comment.properties:
                    return _errors(404, f"The property with key '{key}' does not exist.")
                del comment.properties[key]
                self.version += 1
                return Reply(204)
        return _errors(404, f"null for uri: /rest/api/{v}/comment/{comment_id}/properties")

    def _issue_links_json(self, issue: Issue, v: str) -> list[dict[str, Any]]:
        """``fields.issuelinks``: each link with the other issue on the side Jira names it."""
        out = []
        for link, side, other_id in self.issue_links.of(issue.id):
            other = self.issues.get(other_id)
            if other is None:
                continue
            out.append(
                {
                    "id": str(link.id),
                    "self": f"{self._api(v)}/issueLink/{link.id}",
                    "type": link.type.as_json(self._api(v)),
                    side: {
                        "id": str(other.id),
                        "key": other.key,
                        "self": f"{self._api(v)}/issue/{other.id}",
                        "fields": {
                            "summary": other.summary,
                            "status": self.status_json(other.status_id, v),
                            "priority": self._named("priority", other.priority_id, v),
                            "issuetype": self._type_json(other.type_id, v),
                        },
                    },
                }
            )
        return out

    def _link_issues(self, payload: Any) -> Reply:
        """``POST /issueLink``: 201 with an empty body; 404 for an unknown issue or type."""
        if not isinstance(payload, dict):
            return _errors(400, "The request body is required.")
        kind = self.issue_links.type_of(payload.get("type"))
        ends = [payload.get("inwardIssue"), payload.get("outwardIssue")]
        issues = [
            self.issue(end.get("key") or end.get("id") or "") if isinstance(end, dict) else None
            for end in ends
        ]
        if kind is None:
            return _errors(404, "No issue link type with name or id given was found.")
        source, target = issues
        if source is None or target is None:
            return _errors(404, "Issue does not exist or you do not have permission to see it.")
        self.issue_links.add(kind, source.id, target.id)
        for issue in (source, target):  # Jira records the link in both issues' history
            self._touch(issue)
        return Reply(201)

    def _remote_link(self, v: str, issue: Issue, payload: Any) -> Reply:
        target = payload.get("object") if isinstance(payload, dict) else None
        if not isinstance(target, dict) or not target.get("url") or not target.get("title"):
            return _errors(400, **{"object": "The remote link must have a url and a title."})
        global_id = payload.get("globalId")
        for link in issue.remote_links:
            if global_id and link.get("globalId") == global_id:
                link["object"] = target
                self.version += 1
                return Reply(200, {"id": link["id"], "self": link["self"]})
        link_id = self._next_link
        self._next_link += 1
        link = {
            "id": link_id,
            "self": f"{self._api(v)}/issue/{issue.id}/remotelink/{link_id}",
            "object": target,
        }
        if global_id:
            link["globalId"] = global_id
        issue.remote_links.append(link)
        self.version += 1
        return Reply(201, {"id": link_id, "self": link["self"]})


def _bytes(body: bytes | FormBody) -> bytes:
    """A body meant to be JSON: a multipart form's parts are dropped and read as no body."""
    if isinstance(body, FormBody):
        body.discard()
        return b""
    return body


def _resolution_text(resolution: str | None) -> str | None:
    return None if resolution is None else dict(RESOLUTIONS).get(resolution, resolution)


def _key_order(issue: Issue) -> tuple[str, int]:
    return issue.project, issue.number


_SORT_KEYS: dict[str, Callable[[Issue], Any]] = {
    "updated": lambda i: i.updated,
    "created": lambda i: i.created,
    "resolved": lambda i: i.resolved or datetime.max.replace(tzinfo=UTC),
    "key": _key_order,
    "issuekey": _key_order,
    "id": lambda i: i.id,
    "priority": lambda i: i.priority_id,
    "status": lambda i: i.status_id,
    "summary": lambda i: i.summary,
}
