"""A tiny ticket tool in memory, its connector, and a bridge of three units built on it.

The sync tests need several units whose tools they can drive by hand (a person edits a ticket,
adds a comment, closes it), count every write the bridge makes, and break on purpose (a 429, a
refusal, a crash between the remote create and the local commit). The reference connector
talks to one tool over a mocked HTTP transport and has no fault points at those places, so the
tests use this one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from usm_bridge.config import BridgeConfig
from usm_bridge.connector import (
    Checkpoint,
    CheckResult,
    CommentDraft,
    Connector,
    ConnectorSettings,
    RawRecord,
    RemoteDraft,
    RemoteRef,
    Vocabulary,
)
from usm_bridge.errors import PermanentRemoteError
from usm_bridge.hookspecs import hookimpl
from usm_bridge.mapping import Mapping, MappingContext
from usm_bridge.model import Call
from usm_bridge.plugins import PluginHost
from usm_bridge.runtime import build_runtime
from usm_bridge.store import Store
from usm_bridge.sync.engine import SyncEngine

MAPPING = """\
version: 1
tool: memory
fields:
  title: {path: title, required: true}
  description: {path: description, default: ""}
  status:
    path: status
    values:
      new: registered
      open: in_progress
      hold: "waiting:supplier"
      hold_customer: "waiting:customer"
      done: fulfilled
      closed: closed
      cancelled: cancelled%(extra_status)s
    write: {classified: new, confirmed: closed%(extra_write)s}
  service: {path: service}
  created: {path: created, read_only: true}
  updated: {path: updated, read_only: true}
people:
  requester: {email: {path: requester}}
comments:
  path: comments
  id: {path: id}
  body: {path: body}
  public: {path: public}
  created: {path: created}
  author: {name: {path: author}}
classify:
  rules:
    - {type: incident, when: [{path: kind, equals: incident}]}
  default: service_request
  write:
    incident: {kind: incident}
    service_request: {kind: request}
"""


def write_mapping(path: Path, *, knows_weird: bool = False) -> Path:
    """The memory tool's mapping; ``knows_weird`` is the fix for records in status "weird"."""
    extra = {"extra_status": "", "extra_write": ""}
    if knows_weird:
        extra = {"extra_status": "\n      weird: registered", "extra_write": ", registered: new"}
    path.write_text(MAPPING % extra, encoding="utf-8")
    return path


def write_config_file(
    root: Path,
    instances: dict[str, str],
    *,
    kind: str,
    store: str | None = "sqlite:///state.db",
    settings: str | None = None,
) -> Path:
    """``root/usm-bridge.toml``: the ``instances`` (name: unit) all of ``kind`` with the mapping
    ``<kind>.yaml``, each with ``settings`` (TOML lines) if given; the file's path."""
    tables = [f'[store]\nurl = "{store}"'] if store else []
    tables += [f"[units.{unit}]" for unit in dict.fromkeys(instances.values())]
    for name, unit in instances.items():
        tables.append(f'[instances.{name}]\nunit = "{unit}"\nkind = "{kind}"')
        tables[-1] += f'\nmapping = "{kind}.yaml"'
        if settings is not None:
            tables.append(f"[instances.{name}.settings]\n{settings}")
    path = root / "usm-bridge.toml"
    path.write_text("\n\n".join(tables) + "\n", encoding="utf-8")
    return path


def write_instance_config(
    root: Path, *, unit: str, kind: str, settings: str, store: bool = True
) -> Path:
    """A config file of one unit with one instance ``<unit>-<kind>``, its ``settings`` given as
    TOML lines, and that instance's mapping ``<kind>.yaml``; the config file's path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{kind}.yaml").write_text(
        f"version: 1\ntool: {kind}\nfields:\n  title: {{path: name, required: true}}\n",
        encoding="utf-8",
    )
    url = "sqlite:///state.db" if store else None
    return write_config_file(
        root, {f"{unit}-{kind}": unit}, kind=kind, store=url, settings=settings
    )


class IdleConnector(Connector):
    """A connector that reads nothing and makes nothing: a base for tests of its settings."""

    def check(self) -> CheckResult:
        return CheckResult(ok=True)

    def discover(self) -> Vocabulary:
        return Vocabulary()

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        yield Checkpoint(cursor="0")

    def find_by_correlation(self, correlation: str) -> RemoteRef | None:
        return None

    # Its tool takes no writes: refused like a tool that answers 403, never silently kept.
    def create(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        raise PermanentRemoteError(f"{self.name} takes no records", status=403)

    def update(self, remote_id: str, draft: RemoteDraft) -> None:
        raise PermanentRemoteError(f"{self.name} takes no changes", status=403)

    def add_comment(self, remote_id: str, comment: CommentDraft) -> str:
        raise PermanentRemoteError(f"{self.name} takes no comments", status=403)


class _ConnectorTypes:
    def __init__(self, types: list[type[Connector]]) -> None:
        self.types = types

    @hookimpl
    def usm_bridge_connector_types(self) -> list[type[Connector]]:
        return self.types


def connector_host(*types: type[Connector]) -> PluginHost:
    """A plugin host without entry points whose one plugin brings these connector types."""
    return PluginHost(load_entrypoints=False, plugins=[_ConnectorTypes(list(types))])


class BuggyMapping:
    """A mapping plugin with a bug on the records or calls of one title (read from one instance,
    if given), until it is disarmed (the fix)."""

    def __init__(self, title: str, error: Exception, *, instance: str | None = None) -> None:
        self.title = title
        self.error = error
        self.instance = instance
        self.armed = True

    def _strike(self, title: object, context: MappingContext) -> None:
        if self.armed and title == self.title and self.instance in (None, context.instance):
            raise self.error


class BuggyInbound(BuggyMapping):
    @hookimpl(tryfirst=True)
    def usm_bridge_map_inbound(
        self, mapping: Mapping, record: RawRecord, context: MappingContext
    ) -> Call | None:
        self._strike(record.data.get("title"), context)
        return None  # the built-in mapping answers


class BuggyOutbound(BuggyMapping):
    @hookimpl(tryfirst=True)
    def usm_bridge_map_outbound(
        self, mapping: Mapping, call: Call, context: MappingContext
    ) -> RemoteDraft | None:
        self._strike(call.title, context)
        return None  # the built-in mapping answers


class Crash(BaseException):
    """A simulated kill: nothing after it runs, and nothing catches it."""


class Clock:
    # Starts at the real time: the store stamps outbox items with it, the engine claims by this.
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class MemoryTool:
    """The tool: tickets with a change counter, and what a person can do in it."""

    def __init__(self, name: str, clock: Clock) -> None:
        self.name = name
        self.clock = clock
        self.tickets: dict[str, dict[str, Any]] = {}
        self.version = 0
        self._ids = 0
        self._comment_ids = 0
        #: Every write the bridge made: (operation, remote id).
        self.writes: list[tuple[str, str]] = []

    def _stamp(self, ticket: dict[str, Any]) -> None:
        self.version += 1
        ticket["version"] = self.version
        ticket["updated"] = self.clock().isoformat()

    def add(self, correlation: str | None = None, **fields: Any) -> str:
        self._ids += 1
        ticket_id = f"{self.name}-{self._ids}"
        ticket = {
            "id": ticket_id,
            "title": "",
            "description": "",
            "status": "new",
            "kind": "request",
            "comments": [],
            "correlation": correlation,
            "created": self.clock().isoformat(),
            **fields,
        }
        self._stamp(ticket)
        self.tickets[ticket_id] = ticket
        return ticket_id

    def edit(self, ticket_id: str, **fields: Any) -> None:
        self.tickets[ticket_id].update(fields)
        self._stamp(self.tickets[ticket_id])

    def comment(
        self, ticket_id: str, body: str, *, public: bool = True, author: str | None = None
    ) -> str:
        self._comment_ids += 1
        comment_id = f"{self.name}-c{self._comment_ids}"
        ticket = self.tickets[ticket_id]
        ticket["comments"].append(
            {"id": comment_id, "body": body, "public": public,
             "created": self.clock().isoformat()}
        )  # fmt: skip
        if author is not None:
            ticket["comments"][-1]["author"] = author
        self._stamp(ticket)
        return comment_id

    def delete(self, ticket_id: str) -> None:
        del self.tickets[ticket_id]

    def only(self) -> dict[str, Any]:
        assert len(self.tickets) == 1, list(self.tickets)
        return next(iter(self.tickets.values()))


class MemoryConnector(Connector):
    kind = "memory"
    settings_model = ConnectorSettings

    def __init__(self, tool: MemoryTool, *, page: int = 2) -> None:
        super().__init__(tool.name, ConnectorSettings())
        self.tool = tool
        self.page = page
        #: Exceptions to raise at the next call of an operation, by operation name.
        self.faults: dict[str, list[BaseException]] = {}
        #: Raise this after the next create made its record (a crash before the local commit).
        self.crash_after_create: BaseException | None = None
        #: Raise this after the next comment was added (its answer lost).
        self.crash_after_comment: BaseException | None = None
        #: Raise this after the next update was made (a crash before the local commit).
        self.crash_after_update: BaseException | None = None
        #: Raise this after yielding that many records of the next read.
        self.fail_read_after: tuple[int, BaseException] | None = None
        self.listing: Callable[[], Iterator[str] | None] | None = None

    def _fault(self, operation: str) -> None:
        queue = self.faults.get(operation)
        if queue:
            raise queue.pop(0)

    def check(self) -> CheckResult:
        return CheckResult(ok=True)

    def discover(self) -> Vocabulary:
        return Vocabulary()

    def changed_since(self, after: int) -> list[dict[str, Any]]:
        """The tickets changed after change ``after``, oldest change first."""
        return sorted(
            (t for t in self.tool.tickets.values() if t["version"] > after),
            key=lambda t: t["version"],
        )

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        after = int(cursor or 0)
        changed = self.changed_since(after)
        failing, self.fail_read_after = self.fail_read_after, None
        for index, ticket in enumerate(changed):
            if failing is not None and index == failing[0]:
                raise failing[1]
            yield RawRecord(
                remote_id=ticket["id"],
                updated=datetime.fromisoformat(ticket["updated"]),
                data={k: v for k, v in ticket.items() if k not in ("version", "correlation")},
            )
            if (index + 1) % self.page == 0:
                yield Checkpoint(cursor=str(ticket["version"]))
        yield Checkpoint(cursor=str(max([after, *(t["version"] for t in changed)])))

    def find_by_correlation(self, correlation: str) -> RemoteRef | None:
        self._fault("find")
        for ticket in self.tool.tickets.values():
            if ticket["correlation"] == correlation:
                return RemoteRef(remote_id=ticket["id"])
        return None

    def create(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        self._fault("create")
        found = self.find_by_correlation(correlation)
        if found is not None:
            return found
        fields = dict(draft.fields)
        ticket_id = self.tool.add(correlation, status=draft.status or "new", **fields)
        self.tool.writes.append(("create", ticket_id))
        if self.crash_after_create is not None:
            crash, self.crash_after_create = self.crash_after_create, None
            raise crash
        return RemoteRef(remote_id=ticket_id)

    def update(self, remote_id: str, draft: RemoteDraft) -> None:
        self._fault("update")
        fields = dict(draft.fields)
        if draft.status is not None:
            fields["status"] = draft.status
        self.tool.edit(remote_id, **fields)
        self.tool.writes.append(("update", remote_id))
        if self.crash_after_update is not None:
            crash, self.crash_after_update = self.crash_after_update, None
            raise crash

    def add_comment(self, remote_id: str, comment: CommentDraft) -> str:
        self._fault("comment")
        comment_id = self.tool.comment(remote_id, comment.body, public=comment.public)
        # The marker travels with the comment (as Jira's comment property does).
        self.tool.tickets[remote_id]["comments"][-1]["correlation"] = comment.correlation
        self.tool.writes.append(("comment", remote_id))
        if self.crash_after_comment is not None:
            crash, self.crash_after_comment = self.crash_after_comment, None
            raise crash
        return comment_id

    def find_comment(
        self,
        remote_id: str,
        correlation: str,
        *,
        since: datetime,
        known: Collection[str] = (),
        public: bool = True,
    ) -> str | None:
        self._fault("find_comment")
        for existing in self.tool.tickets[remote_id]["comments"]:
            if existing.get("correlation") == correlation and existing["id"] not in known:
                return str(existing["id"])
        return None

    def remote_ids(self) -> Iterator[str] | None:
        if self.listing is not None:
            return self.listing()
        return iter(list(self.tool.tickets))


@dataclass
class Bridge:
    """Three units (hr -> fac -> ext) on memory tools, an engine, and helpers to drive them."""

    store: Store
    config: BridgeConfig
    host: PluginHost
    clock: Clock
    tools: dict[str, MemoryTool]
    connectors: dict[str, MemoryConnector]
    engine: SyncEngine
    stop: threading.Event = field(default_factory=threading.Event)

    def cycle(self, *instances: str) -> list[Any]:
        return [self.engine.run_cycle(name) for name in instances or tuple(self.tools)]

    def settle(self, rounds: int = 3) -> None:
        """Run every instance a few times, as the daemon would, until nothing moves."""
        for _ in range(rounds):
            self.cycle()

    def writes(self) -> dict[str, int]:
        return {name: len(tool.writes) for name, tool in self.tools.items()}

    def records(self, instance: str, *ticket_ids: str) -> list[RawRecord]:
        """``instance``'s records of ``ticket_ids`` as a whole read yields them, in that order."""
        read = {
            item.remote_id: item
            for item in self.connectors[instance].read_changes(None)
            if isinstance(item, RawRecord)
        }
        return [read[ticket_id] for ticket_id in ticket_ids]

    def restart(self, connectors: dict[str, MemoryConnector] | None = None) -> None:
        """A new engine on the same store and tools, as after a restart of the daemon; with
        ``connectors``, only those (an instance left out cannot be reached)."""
        self.engine.close()
        self.engine = build_runtime(
            self.config,
            self.store,
            host=self.host,
            connectors=self.connectors if connectors is None else connectors,
            stop=self.stop,
            clock=self.clock,
        ).engine


def make_config(
    tmp_path: Path,
    *,
    routes: list[dict[str, Any]] | None = None,
    units: tuple[str, ...] = ("hr", "fac", "ext"),
    agreements: dict[str, dict[str, Any]] | None = None,
    mapping: Path | None = None,
) -> BridgeConfig:
    """The three units' config; ``agreements`` by id (keys as in the TOML), ``mapping`` the
    memory tools' mapping file (default: :func:`write_mapping`'s)."""
    mapping = mapping or write_mapping(tmp_path / "memory.yaml")
    if routes is None:
        routes = [
            {"from": "hr", "to": "fac", "when": {"call_type": ["service_request"]}},
            {"from": "fac", "to": "ext", "when": {"service": "desk"}},
        ]
    return BridgeConfig.model_validate(
        {
            "units": {unit: {"name": unit} for unit in units},
            "instances": {
                f"{unit}-tool": {
                    "name": f"{unit}-tool",
                    "unit": unit,
                    "kind": "memory",
                    "mapping": str(mapping),
                }
                for unit in units
            },
            "routes": [{"name": f"{r['from']}-to-{r['to']}", **r} for r in routes],
            "agreements": {key: {"id": key, **value} for key, value in (agreements or {}).items()},
        }
    )


def make_bridge(store: Store, config: BridgeConfig, *, host: PluginHost | None = None) -> Bridge:
    clock = Clock()
    tools = {name: MemoryTool(name, clock) for name in config.instances}
    connectors = {name: MemoryConnector(tool) for name, tool in tools.items()}
    host = host or PluginHost()
    stop = threading.Event()
    runtime = build_runtime(config, store, host=host, connectors=connectors, stop=stop, clock=clock)
    return Bridge(store, config, runtime.host, clock, tools, connectors, runtime.engine, stop)


@contextmanager
def running_bridge(store: Store, config: BridgeConfig) -> Iterator[Bridge]:
    """A bridge of ``config`` on ``store``, its engine closed afterwards (the tests' fixture)."""
    built = make_bridge(store, config)
    try:
        yield built
    finally:
        built.engine.close()
