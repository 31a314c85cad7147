"""The bridge's one configuration file (TOML): store, units, connector instances, routes.

Secrets never live in the file itself: a string value may be ``"${ENV_VAR}"`` (the whole value
or part of it) or a table ``{ file = "/run/secrets/name" }``, resolved when the file is loaded.
A command that reads the store only (``status``, ``db upgrade``...) loads the file with
``tool_secrets=False``: the connector instances' ``settings`` that name a secret are then left
unread, so it runs where the tools' credentials are not set; building a connector from such a
config raises a :class:`ConfigurationError` instead (:meth:`BridgeConfig.tool_settings`).
Every error names the file, the key and, where it can be found, the line.

Relative paths (mapping files, a SQLite store, the attachment spool and quarantine the file
names, connector settings paths such as a Maildir or a CA bundle) are relative to the config
file's folder, so a config works the same from any working directory (the default attachment
spool is in the working directory, the state folder). Connector settings stay raw here: their paths
are made absolute when a connector validates them, given :attr:`BridgeConfig.base_dir`.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .agreements import registry_problems
from .attachments.kept import KeptFiles
from .attachments.policy import DiskSize
from .bounded_read import NotATextFile, UnreadableFile, read_small_text, read_text_or_explain
from .conditions import condition_problems
from .conformance.thresholds import ConformanceSettings, unit_problems
from .durations import Debounce, Duration
from .env_overrides import EnvOverride, Overrides, read_overrides
from .errors import ConfigurationError
from .lifecycle import PriorityMatrix
from .model import Agreement, CallType, Service, Unit
from .ownership import owner_problems
from .route_types import route_type_problems
from .service_routes import BY_SERVICE, by_service_problems
from .wif.settings import WorkflowsConfig, workflow_problems

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_NAME",
    "DEFAULT_LISTEN",
    "DEFAULT_OWNERS",
    "OWNABLE",
    "AttachmentsConfig",
    "BridgeConfig",
    "DaemonConfig",
    "InstanceConfig",
    "KeyLocator",
    "RouteConfig",
    "StoreConfig",
    "WorkersConfig",
    "default_config_path",
    "load_config",
    "parse_listen",
    "starter_config",
]

DEFAULT_CONFIG_NAME = "usm-bridge.toml"
CONFIG_ENV = "USM_BRIDGE_CONFIG"
#: Largest config file read: a config is hand-written; anything bigger is a mistake or an attack.
MAX_CONFIG_BYTES = 1_000_000
#: Deepest nesting of tables and arrays accepted; the deepest real config nests about 6.
MAX_NESTING = 32
#: Problems named in one error message; the count of the others follows.
MAX_REPORTED = 10
#: Largest secret file read: a password, a token or a key fits many times over.
MAX_SECRET_BYTES = 64 * 1024

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StoreConfig(_Section):
    #: SQLAlchemy URL. SQLite is the embedded default; PostgreSQL for real deployments.
    url: str = "sqlite:///usm-bridge.db"

    @field_validator("url")
    @classmethod
    def _parses(cls, value: str) -> str:
        # Parsed here so that every command refuses it, not only 'check': opening the store
        # with it raised a bare ValueError (an internal error) for e.g. "postgresql://[::1".
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError(
                "not a database URL; expected sqlite:///FILE or postgresql+psycopg://USER@HOST/DB"
            ) from None
        return value


class InstanceConfig(_Section):
    """One connector instance: one unit's tool (a Jira site, a ServiceNow table, a mailbox)."""

    name: str = ""
    unit: str
    kind: str
    mapping: Path
    #: How often the daemon syncs it: a finite duration between 1 s and 1 day.
    interval: Duration = 60.0
    enabled: bool = True
    #: Read the tool's next page while this one is stored (one page ahead, on a thread of its
    #: own; see :mod:`usm_bridge.sync.read_ahead`). Off: the next page is asked for only once
    #: this one is stored, on the cycle's own thread.
    read_ahead: bool = True
    #: Read and map the tool's records in a child process while this one stores them, so a
    #: backfill uses a second core (see :mod:`usm_bridge.sync.child_read`). Only on Linux,
    #: for a connector that declares it may (Jira and ServiceNow do), in a process with no
    #: other thread (``sync --once``, a Celery pool process; the daemon's cycles run on
    #: threads and read in process). Off: always in this process (``read_ahead`` applies).
    read_in_child: bool = True
    #: The connector's own settings, validated later by its ``settings_model``.
    settings: dict[str, JsonValue] = Field(default_factory=dict)
    #: The secret the tool signs its event deliveries with (Jira: the admin webhook's
    #: "Secret"; ServiceNow: the system property of the shipped business rule), as
    #: ``"${VAR}"`` or ``{ file = "..." }``; unset: the instance takes no events
    #: (``POST /events/KIND/NAME`` answers 404). Only on a kind that takes events (jira,
    #: servicenow). See :mod:`usm_bridge.events`.
    webhook_secret: SecretStr | None = None
    #: Let the daemon watch the tool for changes where its connector can (IMAP IDLE, a
    #: Maildir's folders), each change waking the instance's cycle at once; polling at
    #: ``interval`` goes on either way. Off: polling only. See :mod:`usm_bridge.sync.watchers`.
    watch: bool = True
    #: How the tool proves a delivery knows the secret: ``signature`` (Jira Cloud's
    #: ``X-Hub-Signature``, HMAC of the body) or ``url_secret``: the secret as the
    #: ``secret`` query parameter of the webhook's URL, for a Jira Data Center that does not
    #: sign. Weaker (the URL is seen by every proxy on the way and binds no body): only where
    #: no signature exists. A signed delivery is taken either way.
    webhook_auth: Literal["signature", "url_secret"] = "signature"
    #: The URL the tool posts this instance's events to, when not ``[daemon] public_url``
    #: followed by ``/events/jira/NAME`` (``usm-bridge webhooks register``). No secret in it.
    webhook_url: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$")


#: Who owns each canonical field a link shares, unless a route says otherwise: the supplier
#: owns its work (status, whom it waits on, who works on it, when it was fulfilled or closed),
#: the customer owns the request (its text, who asked, for whom, how bad, under which
#: service and agreement).
DEFAULT_OWNERS: dict[str, Literal["customer", "supplier"]] = {
    "status": "supplier",
    "waiting_on": "supplier",
    "assignee": "supplier",
    "fulfilled": "supplier",
    "closed": "supplier",
    "title": "customer",
    "description": "customer",
    "requester": "customer",
    "customer": "customer",
    "impact": "customer",
    "urgency": "customer",
    "service": "customer",
    "agreement": "customer",
}


#: The fields a route's ``owners`` may give to one side. ``waiting_on`` is not one: it is part
#: of the status, and follows the owner of ``status``.
OWNABLE = frozenset(DEFAULT_OWNERS) - {"waiting_on"}


class RouteConfig(_Section):
    """A route in the chain: calls of ``from`` matching ``when`` get a supplier call at ``to``."""

    name: str = ""
    from_unit: str = Field(alias="from")
    to_unit: str = Field(alias="to")
    #: The target unit's instance that receives the supplier call (needed when it has several).
    target: str | None = None
    #: With ``to = "by-service"`` (:mod:`usm_bridge.service_routes`): the instance receiving
    #: the supplier calls of each provider unit that has several (unit -> instance).
    targets: dict[str, str] = Field(default_factory=dict)
    #: Conditions on canonical fields (``call_type``, ``service``, ``status``, any field):
    #: a value must equal it, a list must contain it. All conditions must hold.
    when: dict[str, JsonValue] = Field(default_factory=dict)
    #: The type of the supplier call; by default the same as the upstream call's.
    supplier_call_type: CallType | None = Field(default=None, alias="call_type")
    #: Which side of the link owns a canonical field, overriding the defaults (see
    #: :data:`DEFAULT_OWNERS`): ``{ description = "supplier" }``. A write by the other side
    #: is reverted to the owner's value and recorded in the audit log as a conflict.
    owners: dict[str, Literal["customer", "supplier"]] = Field(default_factory=dict)
    #: Public comments travel one link by default: each unit decides what it tells its other
    #: partners (USM specifies a link from the outside only). ``true`` makes this link also
    #: carry the comments that reached either of its calls over their other links, so that
    #: IT's answer on a Facilities call reaches HR.
    relay_comments: bool = False

    @field_validator("owners", mode="before")
    @classmethod
    def _known_fields(cls, value: object, info: ValidationInfo) -> object:
        """Each entry names a field the router can give an owner, and one side of this route:
        ``customer``, ``supplier``, or the name of the ``from`` or ``to`` unit."""
        if not isinstance(value, dict):
            return value
        sides = {"customer": "customer", "supplier": "supplier"}
        from_unit, to_unit = info.data.get("from_unit"), info.data.get("to_unit")
        if isinstance(from_unit, str) and isinstance(to_unit, str):
            sides |= {from_unit: "customer", to_unit: "supplier"}
        owners: dict[object, object] = {}
        for key, side in value.items():
            if key == "waiting_on":
                raise ValueError(
                    "owners: waiting_on goes with status (whom a call waits on is part of its "
                    "status); give status an owner instead"
                )
            if key not in OWNABLE:
                raise ValueError(
                    f"owners: {key!r} is not a field a link shares; use one of "
                    f"{', '.join(sorted(OWNABLE))}"
                )
            if not isinstance(side, str) or side not in sides:
                units = f" ({from_unit!r} or {to_unit!r})" if len(sides) > 2 else ""
                raise ValueError(
                    f"owners: {key} = {side!r} is neither side of this route; use 'customer' "
                    f"or 'supplier', or the name of one of its units{units}"
                )
            owners[key] = sides[side]
        return owners

    def owner_of(self, field: str) -> Literal["customer", "supplier"]:
        """The side that owns ``field`` on this route's links."""
        return self.owners.get(field, DEFAULT_OWNERS[field])

    @property
    def by_service(self) -> bool:
        """The supplier unit is the provider of the call's service (``to = "by-service"``)."""
        return self.to_unit == BY_SERVICE


DEFAULT_LISTEN = "127.0.0.1:9464"
_LISTEN = re.compile(
    r"^\s*(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\s\[\]]*)):(?P<port>[0-9]{1,5})\s*$"
)


def parse_listen(value: str) -> tuple[str, int] | None:
    """``"HOST:PORT"`` (``"[::1]:9464"`` for IPv6, ``":9464"`` for loopback) -> (host, port);
    ``"off"`` -> ``None`` (no HTTP endpoint). Port 0 asks the system for a free port.

    :raises ValueError: with the expected form.
    """
    if value.strip().lower() in {"off", "none", "no", "false"}:
        return None
    match = _LISTEN.match(value)
    port = int(match.group("port")) if match else -1
    if match is None or not 0 <= port <= 65535:
        raise ValueError(f"expected HOST:PORT such as {DEFAULT_LISTEN!r}, or 'off'")
    host = match.group("v6") or match.group("host") or "127.0.0.1"
    return host, port


class DaemonConfig(_Section):
    """``[daemon]``: how ``usm-bridge daemon`` schedules cycles, serves metrics and logs."""

    #: Where /healthz and /metrics are served (HOST:PORT, or "off"). Loopback by default:
    #: put a reverse proxy or the Prometheus agent on the same host to reach it.
    listen: str = DEFAULT_LISTEN
    #: How often each instance gets a census of its remote ids (finds vanished records): after
    #: the first successful cycle that starts this long after the last census (kept in the
    #: store, so a restart does not put it off; half an instance interval early counts).
    census_interval: Duration = 86400.0
    #: Cycles run at once (different instances; never two of the same instance). A cycle past
    #: its time limit no longer counts. Pushes run beside them, one per target at most.
    max_workers: int = Field(default=4, ge=1, le=64)
    #: How long a cycle or push may run before it counts as hung: logged, shown in /healthz
    #: as ``hung_for_s``, and never started again before it ends (see
    #: :mod:`usm_bridge.sync.time_limits`).
    time_limit: Duration = Field(default=600.0, gt=0)
    #: "text" for people, "json" (one object per line) for log collectors.
    log_format: Literal["text", "json"] = "text"
    #: How long an accepted webhook delivery waits before it wakes its instance's cycle, so
    #: that a burst of deliveries is one cycle (see :mod:`usm_bridge.events`): 0 to 60 s, and
    #: under a second too ("250ms", 0.25), unlike the other durations; 0 wakes it at once.
    event_debounce: Debounce = 1.0
    #: Largest webhook body read (bytes); a longer one is refused with 413 before it is read
    #: whole. Jira's issue events are a few to some hundred KiB.
    event_max_body: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    #: The address the tools reach the webhook receivers at, through whatever proxy is in
    #: front (``https://bridge.example.com``): ``usm-bridge webhooks register`` registers
    #: ``<public_url>/events/jira/NAME`` for each Jira instance with a ``webhook_secret``.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        """``listen`` parsed: (host, port), or ``None`` when the endpoint is off."""
        return parse_listen(self.listen)


class WorkersConfig(_Section):
    """``[workers]``: the scale-out on Celery (``usm-bridge worker`` and ``usm-bridge scheduler``,
    docs/workers.md). Unused by the embedded daemon."""

    #: The Celery broker: ``redis://HOST:6379/0`` or ``amqp://USER:PASSWORD@HOST:5672/VHOST``
    #: (RabbitMQ). Put a password in the environment (``USM_BRIDGE_WORKERS__BROKER_URL``) or
    #: ``${VAR}``, not in the file; it is never logged.
    broker_url: str = "redis://127.0.0.1:6379/0"
    #: The queues are ``<queue_prefix><instance>``: one per tool, so that a slow tool's tasks
    #: wait behind each other and not behind every tool's. Several bridges sharing one broker
    #: (one per store) each need their own prefix.
    queue_prefix: str = Field(default="tool.", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    #: A task still running this long is told to stop (a failed cycle, recorded as such).
    soft_time_limit: Duration = 600.0
    #: A task still running this long has its worker process killed and replaced; its locks
    #: die with it. Must be longer than ``soft_time_limit``.
    time_limit: Duration = 660.0

    @model_validator(mode="after")
    def _hard_after_soft(self) -> WorkersConfig:
        if self.time_limit <= self.soft_time_limit:
            raise ValueError(
                f"time_limit ({self.time_limit:g} s) must be longer than soft_time_limit "
                f"({self.soft_time_limit:g} s): the soft limit lets a task stop cleanly first"
            )
        return self


class AttachmentsConfig(_Section):
    """``[attachments]``: where files wait on disk (see :mod:`usm_bridge.attachments`). Which
    files travel is each instance's mapping's ``attachments`` policy. A relative path the file
    gives is relative to the config file's folder, like the SQLite store's file and the mapping
    files (to the working directory for a config built in code); the default spool is
    ``attachments-spool`` in the working directory, the state folder (where the service may
    write: its config's folder is read-only to it)."""

    #: Where a file's content waits between its source and its target (made 0700); its
    #: leftovers from a killed process are removed at start-up.
    spool: Path = Path("attachments-spool")
    #: Where refused files are kept with a sidecar of why (made 0700); unset: not kept (each
    #: refusal is still a note on the call and a dead letter).
    quarantine: Path | None = None
    #: Keep each file read from a tool (``<spool>/by-sha256/<sha256>``) for the pushes that
    #: send it on: a file bound for N tools is downloaded once, not N+1 times
    #: (:mod:`usm_bridge.attachments.kept`). ``false``: each push reads it from its source.
    keep_files: bool = True
    #: The most the kept files take in all; past it the least recently used are removed.
    keep_max_size: DiskSize = 2 * 1024**3
    #: A kept file not used for this long is removed (a push after it reads the source).
    keep_max_age: Duration = 86_400.0

    def kept_files(self) -> KeptFiles | None:
        """The kept files under :attr:`spool`, or ``None`` when :attr:`keep_files` is off."""
        if not self.keep_files:
            return None
        return KeptFiles(self.spool, max_bytes=self.keep_max_size, max_age=self.keep_max_age)


class BridgeConfig(_Section):
    """The whole configuration, with every cross-reference checked."""

    path: Path | None = None
    store: StoreConfig = Field(default_factory=StoreConfig)
    priority: PriorityMatrix = Field(default_factory=PriorityMatrix)
    units: dict[str, Unit] = Field(default_factory=dict)
    #: Services by id, each with its provider unit (see :mod:`usm_bridge.agreements`).
    services: dict[str, Service] = Field(default_factory=dict)
    #: Agreements by id: provider, customer, services, priorities, targets, confirmation.
    agreements: dict[str, Agreement] = Field(default_factory=dict)
    instances: dict[str, InstanceConfig] = Field(default_factory=dict)
    routes: list[RouteConfig] = Field(default_factory=list)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    workers: WorkersConfig = Field(default_factory=WorkersConfig)
    conformance: ConformanceSettings = Field(default_factory=ConformanceSettings)
    workflows: WorkflowsConfig = Field(default_factory=WorkflowsConfig)
    attachments: AttachmentsConfig = Field(default_factory=AttachmentsConfig)
    #: Deprecated spelling of ``[daemon] log_format``, still accepted; read ``daemon.log_format``.
    log_format: Literal["text", "json"] | None = None
    #: What the environment overrode (see :mod:`usm_bridge.env_overrides`); not a setting.
    _overrides: Overrides = PrivateAttr(default_factory=Overrides)
    #: The instances whose settings were left unread (``load_config(tool_secrets=False)``).
    _unread_settings: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @model_validator(mode="after")
    def _log_format_in_daemon(self) -> BridgeConfig:
        if self.log_format is None:
            return self
        if "log_format" in self.daemon.model_fields_set:
            if self.daemon.log_format != self.log_format:
                raise ValueError(
                    "log_format is set both at the top level and in [daemon], differently; "
                    "keep the one in [daemon]"
                )
            return self
        self.daemon = self.daemon.model_copy(update={"log_format": self.log_format})
        return self

    @property
    def base_dir(self) -> Path | None:
        """The folder relative paths in the file are relative to; ``None`` for a config built
        in code (its relative paths are then relative to the working directory)."""
        return None if self.path is None else self.path.parent.absolute()

    def instances_of(self, unit: str) -> list[InstanceConfig]:
        return [inst for inst in self.instances.values() if inst.unit == unit]

    @property
    def uses_workers(self) -> bool:
        """Whether the bridge runs on Celery workers: the file has a ``[workers]`` section (or
        the environment set one of its keys)."""
        return "workers" in self.model_fields_set

    def tool_settings(self, name: str) -> dict[str, JsonValue]:
        """The settings to build ``name``'s connector from, its secrets resolved.

        :raises ConfigurationError: the config was loaded for a command that reads the store
            only, which left the instance's secrets unread.
        """
        if name in self._unread_settings:
            raise ConfigurationError(
                f"the settings of instance {name!r} name secrets, which this command does not "
                "read (it reads the store only); a command that talks to the tools reads them",
                where=str(self.path or "(config)"),
            )
        return dict(self.instances[name].settings)

    @property
    def from_environment(self) -> tuple[EnvOverride, ...]:
        """The environment variables that overrode a setting of the file, with their keys."""
        return self._overrides.variables

    def locator(self, text: str) -> KeyLocator:
        """A :class:`KeyLocator` for this config's file (``text``), which names the variable
        of a setting the environment gave."""
        locator = KeyLocator(self.path or Path("(config)"), text)
        locator.origins = self._overrides.origins
        return locator


def default_config_path() -> Path:
    """``$USM_BRIDGE_CONFIG`` if set, else ``./usm-bridge.toml``."""
    return Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_NAME))


def load_config(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    tool_secrets: bool = True,
    webhook_secrets: bool | None = None,
    store_secret: bool = True,
) -> BridgeConfig:
    """Read, resolve secrets in, and validate a config file, with the settings ``environ``
    overrides (``USM_BRIDGE_STORE__URL``...: see :mod:`usm_bridge.env_overrides`).

    :param tool_secrets: resolve the secrets of the connector instances' settings (a
        variable that is not set is refused, naming it). ``False`` for commands that never
        talk to a tool: the settings that name a secret are left unread (and empty), and
        :meth:`BridgeConfig.tool_settings` refuses to hand them out. Every other secret (the
        store's URL, the broker's) is resolved as always.
    :param webhook_secrets: resolve the instances' ``webhook_secret`` (default: as
        ``tool_secrets``); ``usm-bridge serve`` takes events but never talks to a tool.
    :param store_secret: resolve ``[store] url`` when it names a secret. ``False`` for a
        command that never opens the store (``usm-bridge serve``): such a URL is left unread
        and the store's default stands in, so the store's password need not be given there.
    :raises ConfigurationError: naming the file, the key and (where known) the line, or the
        environment variable that gave the value.
    """
    path = Path(path)
    env = dict(os.environ) if environ is None else environ
    text = _read_text(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"not valid TOML: {exc}", where=str(path)) from None
    except RecursionError:  # arrays or inline tables nested hundreds deep
        raise ConfigurationError(
            f"tables and arrays are nested more than {MAX_NESTING} deep", where=str(path)
        ) from None
    locator = KeyLocator(path, text)
    _check_shape(raw, locator)
    # Before a read-only command drops the webhook secrets: the mistake is named everywhere.
    _check_webhook_kinds(_instance_kinds(raw), locator)
    unread: frozenset[str] = frozenset()
    if not tool_secrets:
        raw, unread = _without_secret_settings(raw)
    if not (tool_secrets if webhook_secrets is None else webhook_secrets):
        raw = _without_webhook_secrets(raw)
    if not store_secret:
        raw = _without_store_secret(raw)
    _refuse_unset_variables(raw, (), env, locator)
    resolved = _resolve_secrets(raw, (), env, locator, path.parent)
    if not isinstance(resolved, dict):  # pragma: no cover - tomllib always returns a table
        raise ConfigurationError("top level must be a table", where=str(path))
    overrides = read_overrides(resolved, env)
    locator.origins = overrides.origins
    if overrides.values:
        # A value from the environment is taken as given: no ${VAR} in it is expanded (it
        # came from the environment already), but { "file": ... } reads a secret file.
        _check_shape(overrides.values, locator)
        values = _resolve_secrets(overrides.values, (), {}, locator, path.parent, expand=False)
        resolved = Overrides(values).merged_into(resolved)
    if unread:  # what the environment gave them is left unread too
        resolved = _without_settings(resolved, unread)
    resolved = _inject_names(resolved, locator)
    try:
        config = BridgeConfig.model_validate({**resolved, "path": path})
    except ValidationError as exc:
        raise _config_error(exc, locator) from None
    config._overrides = overrides
    config._unread_settings = unread
    _check_references(config, locator)
    return _absolutise(config, path.parent)


def _names_a_secret(value: Any) -> bool:
    """Whether ``value`` holds a ``${VAR}`` or a ``{ file = ... }`` anywhere."""
    if isinstance(value, dict):
        if set(value) == {"file"}:
            return True
        return any(_names_a_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_names_a_secret(v) for v in value)
    return isinstance(value, str) and _ENV_REF.search(value) is not None


def _without_secret_settings(raw: dict[str, Any]) -> tuple[dict[str, Any], frozenset[str]]:
    """``raw`` without the settings of the instances whose settings name a secret, and
    those instances' names."""
    instances = raw.get("instances")
    if not isinstance(instances, dict):
        return raw, frozenset()
    unread = frozenset(
        name
        for name, body in instances.items()
        if isinstance(body, dict) and _names_a_secret(body.get("settings"))
    )
    return (_without_settings(raw, unread), unread) if unread else (raw, unread)


def _without_webhook_secrets(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` without the webhook secrets that name a secret: a command that reads the store
    only never takes events, and must run where the secret is not set."""
    instances = dict(raw.get("instances") or {})
    for name, body in instances.items():
        if isinstance(body, dict) and _names_a_secret(body.get("webhook_secret")):
            instances[name] = {k: v for k, v in body.items() if k != "webhook_secret"}
    return {**raw, "instances": instances}


def _without_store_secret(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` without ``[store] url`` if it names a secret: a command that never opens the
    store must run where the store's credentials are not given."""
    store = raw.get("store")
    if not isinstance(store, dict) or not _names_a_secret(store.get("url")):
        return raw
    return {**raw, "store": {k: v for k, v in store.items() if k != "url"}}


def _without_settings(raw: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    instances = dict(raw.get("instances") or {})
    for name in names:
        body = instances.get(name)
        if isinstance(body, dict) and "settings" in body:
            instances[name] = {**body, "settings": {}}
    return {**raw, "instances": instances}


def _read_text(path: Path) -> str:
    try:
        return read_text_or_explain(path, limit=MAX_CONFIG_BYTES, use="a config file")
    except UnreadableFile as exc:
        if exc.missing:
            raise ConfigurationError(
                "config file not found; create one with 'usm-bridge init'", where=str(path)
            ) from None
        raise ConfigurationError(exc.reason, where=exc.where) from None


def _check_shape(raw: dict[str, Any], locator: KeyLocator) -> None:
    """Refuse tables and arrays nested deeper than :data:`MAX_NESTING` (no config needs it,
    and validation would recurse into them), and NUL characters in keys and strings (TOML
    allows ``"\u0000"``, but no name, path, URL or secret holds one, and the system calls
    taking paths refuse them); iterative, so any depth is measured safely."""
    pending: list[tuple[object, tuple[str | int, ...]]] = [(raw, ())]
    while pending:
        value, loc = pending.pop()
        if len(loc) >= MAX_NESTING:
            raise ConfigurationError(
                f"tables and arrays are nested more than {MAX_NESTING} deep",
                where=locator.where(loc[:MAX_NESTING]),
            )
        if isinstance(value, dict):
            for key, child in value.items():
                if "\x00" in key:
                    raise ConfigurationError(
                        "a key holds a NUL character", where=locator.where(loc)
                    )
                pending.append((child, (*loc, key)))
        elif isinstance(value, list):
            pending.extend((child, (*loc, index)) for index, child in enumerate(value))
        elif isinstance(value, str) and "\x00" in value:
            raise ConfigurationError(
                "a NUL character (\\u0000) in a value", where=locator.where(loc)
            )


_KEY_PART = re.compile(r'\s*("[^"]*"|\'[^\']*\'|[^."\']+)\s*')


def _dotted(text: str) -> tuple[str, ...]:
    """A TOML dotted key's parts; a quoted part may hold dots (``"data.priority"``)."""
    return tuple(m.group(1).strip("\"'") for m in _KEY_PART.finditer(text) if m.group(1).strip())


class KeyLocator:
    """Finds the line of a dotted key in TOML text (tomllib keeps no positions)."""

    # No two quantifiers may compete for the same characters (``[^\]]+?`` then ``\s*`` did):
    # a long line that almost matches, valid inside a multi-line string, took quadratic time.
    _HEADER = re.compile(r"^\s*(\[\[?)([^\]]*)\]\]?[ \t]*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        #: The key of each value an environment variable gave, and the variable.
        self.origins: Mapping[tuple[str, ...], str] = {}
        # (table path, line number, key or None)
        self._entries: list[tuple[tuple[str, ...], int, str | None]] = []
        # The first line of each path: a lookup per error, not a scan of the file's entries
        # (a file of many broken routes has as many errors as lines).
        self._first: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        arrays: dict[tuple[str, ...], int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if header := self._HEADER.match(line):
                parts = _dotted(header.group(2))
                if header.group(1) == "[[":
                    index = arrays.get(parts, -1) + 1
                    arrays[parts] = index
                    parts = (*parts, str(index))
                table = parts
                self._entries.append((table, number, None))
            elif key := self._KEY.match(line):
                keys = _dotted(key.group(1))
                self._entries.append(((*table, *keys), number, keys[-1]))

    def variable_of(self, loc: tuple[str | int, ...]) -> str | None:
        """The environment variable that gave the value at ``loc`` or around it, if any."""
        wanted = tuple(str(part) for part in loc)
        for length in range(len(wanted), 0, -1):
            if variable := self.origins.get(wanted[:length]):
                return variable
        return None

    def line_of(self, loc: tuple[str | int, ...]) -> int | None:
        """The line of the longest prefix of ``loc`` that the file spells out."""
        wanted = tuple(str(part) for part in loc)
        if not self._first:
            for table, number, _ in self._entries:
                self._first.setdefault(table, number)
        for length in range(len(wanted), 0, -1):
            found = self._first.get(wanted[:length])
            if found is not None:
                return found
        return None

    def where(self, loc: tuple[str | int, ...]) -> str:
        key = ".".join(str(part) for part in loc) or "(top level)"
        if variable := self.variable_of(loc):
            return f"environment variable {variable} (key {key})"
        line = self.line_of(loc)
        return f"{self.path}:{line}: key {key}" if line else f"{self.path}: key {key}"


def _unset_variables(
    value: Any, loc: tuple[str | int, ...], env: Mapping[str, str]
) -> Iterator[tuple[str, tuple[str | int, ...]]]:
    """Each ``${NAME}`` the file names that ``env`` lacks, with the key naming it."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _unset_variables(item, (*loc, key), env)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unset_variables(item, (*loc, index), env)
    elif isinstance(value, str) and "${" in value:
        for match in _ENV_REF.finditer(value):
            if match.group(1) not in env:
                yield match.group(1), loc


def _refuse_unset_variables(
    raw: dict[str, Any], loc: tuple[str | int, ...], env: Mapping[str, str], locator: KeyLocator
) -> None:
    """Name every variable the file needs and the environment lacks at once, so that an admin
    exports them all after one run of ``check`` rather than one per run."""
    unset = list(dict.fromkeys(_unset_variables(raw, loc, env)))
    if not unset:
        return
    (name, where), others = unset[0], unset[1:]
    message = f"environment variable {name} is not set"
    if others:
        message += "; also not set: " + ", ".join(
            f"{other} ({locator.where(other_loc)})" for other, other_loc in others
        )
    names = " ".join(dict.fromkeys(f"{n}=..." for n, _ in unset))
    raise ConfigurationError(
        message, where=locator.where(where), expected=f"export {names} before starting usm-bridge"
    )


def _resolve_secrets(
    value: Any,
    loc: tuple[str | int, ...],
    env: Mapping[str, str],
    locator: KeyLocator,
    base: Path,
    *,
    expand: bool = True,
) -> Any:
    if isinstance(value, dict):
        if set(value) == {"file"} and isinstance(value["file"], str):
            # The path may name a variable: systemd's ${CREDENTIALS_DIRECTORY}, say.
            name = _expand(value["file"], env) if expand else value["file"]
            return _read_secret_file(name, loc, locator, base)
        return {
            k: _resolve_secrets(v, (*loc, k), env, locator, base, expand=expand)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _resolve_secrets(v, (*loc, i), env, locator, base, expand=expand)
            for i, v in enumerate(value)
        ]
    if expand and isinstance(value, str):
        return _expand(value, env)
    return value


def _expand(value: str, env: Mapping[str, str]) -> str:
    """``value`` with each ``${NAME}`` replaced by the variable's value. Every name is set:
    :func:`_refuse_unset_variables` refused the file otherwise, naming all of them."""
    return _ENV_REF.sub(lambda match: env[match.group(1)], value) if "${" in value else value


def _read_secret_file(
    name: str, loc: tuple[str | int, ...], locator: KeyLocator, base: Path
) -> str:
    secret_path = Path(name) if Path(name).is_absolute() else base / name
    try:
        return read_small_text(secret_path, limit=MAX_SECRET_BYTES).strip()
    except NotATextFile as exc:
        raise ConfigurationError(
            f"cannot use secret file {secret_path}: {exc}", where=locator.where(loc)
        ) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the file name
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigurationError(
            f"cannot read secret file {secret_path}: {reason}", where=locator.where(loc)
        ) from None


def _inject_names(raw: dict[str, Any], locator: KeyLocator) -> dict[str, Any]:
    """Units and instances are keyed by name in the file; the models carry the name too."""
    out = dict(raw)
    for section, field in (
        ("units", "name"),
        ("instances", "name"),
        ("services", "id"),
        ("agreements", "id"),
    ):
        table = raw.get(section)
        if table is None:
            continue
        if not isinstance(table, dict):
            raise ConfigurationError(
                f"[{section}] must be a table of named entries", where=locator.where((section,))
            )
        named = {}
        for name, body in table.items():
            if not isinstance(body, dict):
                raise ConfigurationError(
                    "must be a table",
                    where=locator.where((section, name)),
                    expected=f"[{section}.NAME]",
                )
            named[name] = {**body, field: name}
        out[section] = named
    routes = raw.get("routes")
    if isinstance(routes, list):
        out["routes"] = [
            {"name": f"{r.get('from', '?')}-to-{r.get('to', '?')}", **r}
            if isinstance(r, dict)
            else r
            for r in routes
        ]
    return out


def _config_error(exc: ValidationError, locator: KeyLocator) -> ConfigurationError:
    # Input values are left out on purpose: they may be resolved secrets.
    errors = exc.errors(include_input=False, include_url=False)
    lines = []
    for error in errors[:MAX_REPORTED]:
        loc = tuple(p for p in error["loc"] if p != "path")
        lines.append(f"{locator.where(loc)}: {error['msg']}")
    # One line, whatever the number of problems: each starts with its own file:line: key.
    message = "; also ".join(lines)
    if len(errors) > MAX_REPORTED:
        message += f"; and {len(errors) - MAX_REPORTED} more"
    return ConfigurationError(message)


def _instance_kinds(raw: dict[str, Any]) -> list[tuple[str, object, bool]]:
    """(name, kind, whether it has a webhook secret) of each instance table of ``raw``."""
    instances = raw.get("instances")
    if not isinstance(instances, dict):
        return []
    return [
        (name, body.get("kind"), body.get("webhook_secret") is not None)
        for name, body in instances.items()
        if isinstance(body, dict)
    ]


def _check_webhook_kinds(found: list[tuple[str, object, bool]], locator: KeyLocator) -> None:
    """A ``webhook_secret`` only on an instance of a kind that takes events (Jira,
    ServiceNow): on another (``email``) it would be silently useless."""
    from .events.kinds import EVENT_KINDS

    for name, kind, has_secret in found:
        if has_secret and kind not in EVENT_KINDS:
            raise ConfigurationError(
                f"instance {name!r} is of kind {kind!r}, which takes no events: its "
                "webhook_secret would never be used; remove it",
                where=locator.where(("instances", name, "webhook_secret")),
                expected=f"webhook_secret only on a {' or '.join(sorted(EVENT_KINDS))} instance",
            )


def _check_references(config: BridgeConfig, locator: KeyLocator) -> None:
    # Again on the validated config: the environment may have given a kind or a secret.
    _check_webhook_kinds(
        [(n, i.kind, i.webhook_secret is not None) for n, i in config.instances.items()], locator
    )
    units = set(config.units)
    for name, inst in config.instances.items():
        if inst.unit not in units:
            raise ConfigurationError(
                f"instance {name!r} names unit {inst.unit!r}, which is not defined",
                where=locator.where(("instances", name, "unit")),
                expected=f"one of {sorted(units)}" if units else "a [units.NAME] table",
            )
    names = set()
    for index, route in enumerate(config.routes):
        for key, unit in (("from", route.from_unit), ("to", route.to_unit)):
            if unit not in units and not (key == "to" and route.by_service):
                raise ConfigurationError(
                    f"route names unit {unit!r}, which is not defined",
                    where=locator.where(("routes", index, key)),
                    expected=f"one of {sorted(units)}",
                )
        if route.from_unit == route.to_unit:
            raise ConfigurationError(
                "a route must lead to another unit", where=locator.where(("routes", index, "to"))
            )
        targets = config.instances_of(route.to_unit)
        if route.by_service:
            for loc, problem in by_service_problems(config, route):
                raise ConfigurationError(problem, where=locator.where(("routes", index, *loc)))
        elif route.targets:
            raise ConfigurationError(
                f"targets names an instance per provider unit, for to = {BY_SERVICE!r} routes",
                where=locator.where(("routes", index, "targets")),
                expected='target = "INSTANCE"',
            )
        elif route.target is not None:
            target = config.instances.get(route.target)
            if target is None or target.unit != route.to_unit:
                raise ConfigurationError(
                    f"target {route.target!r} is not an instance of unit {route.to_unit!r}",
                    where=locator.where(("routes", index, "target")),
                    expected=f"one of {[t.name for t in targets]}",
                )
        elif len(targets) != 1:
            raise ConfigurationError(
                f"unit {route.to_unit!r} has {len(targets)} instances; say which one receives "
                "supplier calls",
                where=locator.where(("routes", index)),
                expected='target = "INSTANCE"',
            )
        for key, problem in condition_problems(route.when):
            raise ConfigurationError(problem, where=locator.where(("routes", index, "when", key)))
        if route.name in names:
            raise ConfigurationError(
                f"two routes are named {route.name!r}", where=locator.where(("routes", index))
            )
        names.add(route.name)
    for index, field, problem in owner_problems(config.routes):
        raise ConfigurationError(problem, where=locator.where(("routes", index, "owners", field)))
    for index, under, problem in route_type_problems(config.routes):
        raise ConfigurationError(problem, where=locator.where(("routes", index, *under)))
    for registered in registry_problems(config):
        raise ConfigurationError(registered.message, where=locator.where(registered.loc))
    for unit, problem in unit_problems(config.conformance, units):
        where = locator.where(("conformance", "units", unit, "thresholds"))
        raise ConfigurationError(problem, where=where)
    for loc, problem in workflow_problems(config.workflows, units):
        raise ConfigurationError(problem, where=locator.where(("workflows", *loc)))


def _absolutise(config: BridgeConfig, base: Path) -> BridgeConfig:
    instances = {
        name: inst.model_copy(
            update={"mapping": inst.mapping if inst.mapping.is_absolute() else base / inst.mapping}
        )
        for name, inst in config.instances.items()
    }
    url = config.store.url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////") and url != "sqlite://":
        rest = url[len(prefix) :]
        if rest and rest != ":memory:":
            url = prefix + str((base / rest).resolve())
    # A folder the file (or the environment) names; the default spool stays in the working
    # directory, the state folder: the config's folder is read-only where the service runs
    # (/etc/usm-bridge under systemd and in the image).
    files = config.attachments
    quarantine = files.quarantine
    spool = base / files.spool if "spool" in files.model_fields_set else files.spool
    folders = files.model_copy(
        update={"spool": spool, "quarantine": None if quarantine is None else base / quarantine}
    )
    return config.model_copy(
        update={"instances": instances, "store": StoreConfig(url=url), "attachments": folders}
    )


def starter_config() -> str:
    """The commented starter file ``usm-bridge init`` writes, for the installed connectors
    (generated by :mod:`usm_bridge.starter`)."""
    from .plugins import default_host
    from .starter import render_starter

    return render_starter(default_host()).text
