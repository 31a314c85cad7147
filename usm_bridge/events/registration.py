"""``usm-bridge webhooks register``: the Jira admin webhook of each Jira instance that takes
events, created through Jira's REST API where the account may, else printed for the admin UI.

Jira's admin webhooks (Cloud and Data Center: ``/rest/webhooks/1.0/webhook``, Jira
administration > System > WebHooks) need the Jira administrators global permission; an account
without it gets 401 or 403, and a site without the API 404. Cloud signs the deliveries of a
webhook saved with a ``secret`` (``X-Hub-Signature``); Data Center is taken not to sign, so an
instance on Data Center registers a URL carrying the secret (``webhook_auth = "url_secret"``),
or is left to the admin's hands.

Idempotent: a webhook already registered with the same URL (its query aside, where a secret may
be) is reported and left alone, never duplicated. No secret is ever printed: the variable or
file it comes from is named instead.

The vendor calls are the connector's (:class:`WebhookAdmin`: the Jira connector implements it);
what to register, whether it exists, and what to tell the admin are decided here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable
from urllib.parse import quote, urlsplit, urlunsplit

from ..errors import RemoteError, UsmBridgeError
from .receiver import URL_SECRET_PARAMETER

if TYPE_CHECKING:
    from ..config import BridgeConfig
    from ..plugins import PluginHost

__all__ = [
    "JIRA_EVENTS",
    "RegisteredWebhook",
    "Registration",
    "WebhookAdmin",
    "WebhookSpec",
    "register_all",
    "render",
    "webhook_spec",
]

#: The events registered: what changes an issue the bridge reads (Jira's names).
JIRA_EVENTS = (
    "jira:issue_created",
    "jira:issue_updated",
    "jira:issue_deleted",
    "comment_created",
    "comment_updated",
)
#: How the admin UI labels them, for the printed settings.
_UI_EVENTS = "Issue: created, updated, deleted; Comment: created, updated"

Action = Literal["exists", "created", "would_create", "manual", "failed"]


@dataclass(frozen=True)
class WebhookSpec:
    """One webhook to register."""

    name: str
    #: The URL Jira posts to, as sent to Jira (with the secret in it under ``url_secret``).
    url: str
    #: The same URL with any secret replaced by a placeholder naming where it comes from.
    shown_url: str
    events: tuple[str, ...]
    #: The JQL filter ("": every issue); the connector's choice (Jira: the instance's projects).
    jql: str
    #: The secret Jira signs with (``webhook_auth = "signature"``), else ``None``.
    secret: str | None
    #: Where the secret comes from, to tell the admin without showing it.
    secret_source: str
    #: The secret itself, to mask it in any message (never shown).
    secret_value: str


@dataclass(frozen=True)
class RegisteredWebhook:
    """A webhook as Jira lists it."""

    id: str
    name: str
    url: str


@runtime_checkable
class WebhookAdmin(Protocol):
    """The vendor calls of a connector whose tool has admin webhooks (the Jira connector).

    Each call raises :class:`~usm_bridge.errors.RemoteError` (with the HTTP status) when the
    tool refuses."""

    def webhook_deployment(self) -> Literal["cloud", "datacenter"]: ...

    def webhook_filter(self) -> str: ...

    def list_webhooks(self) -> list[RegisteredWebhook]: ...

    def create_webhook(self, spec: WebhookSpec) -> RegisteredWebhook: ...


@dataclass(frozen=True)
class Registration:
    """What became of one instance's webhook."""

    instance: str
    action: Action
    spec: WebhookSpec | None
    detail: str = ""
    webhook_id: str | None = None
    #: The Jira deployment, when it was found.
    deployment: str | None = None


def _receiver_url(config: BridgeConfig, name: str) -> str | None:
    inst = config.instances[name]
    if inst.webhook_url is not None:
        return inst.webhook_url
    if config.daemon.public_url is None:
        return None
    return f"{config.daemon.public_url.rstrip('/')}/events/jira/{quote(name, safe='')}"


def secret_source(config: BridgeConfig, name: str) -> str:
    """Where ``name``'s webhook secret comes from (a variable, a file, the config), for the
    admin: never the secret itself."""
    key = f"instances.{name}.webhook_secret"
    for override in config.from_environment:
        if override.dotted == key:
            return f"the value of ${override.variable}"
    raw: object = None
    if config.path is not None:
        try:
            with open(config.path, "rb") as file:
                raw = tomllib.load(file).get("instances", {}).get(name, {}).get("webhook_secret")
        except (OSError, tomllib.TOMLDecodeError, AttributeError):
            raw = None
    if isinstance(raw, str) and "${" in raw:
        return f"the value of {raw.strip()}"
    if isinstance(raw, dict) and "file" in raw:
        return f"the content of the file {raw['file']}"
    return f"the value of {key} in {config.path}"


def webhook_spec(config: BridgeConfig, name: str, jql: str) -> WebhookSpec | None:
    """The webhook of instance ``name`` (``None``: no receiver URL is configured)."""
    inst = config.instances[name]
    url = _receiver_url(config, name)
    if url is None or inst.webhook_secret is None:
        return None
    secret = inst.webhook_secret.get_secret_value()
    source = secret_source(config, name)
    if inst.webhook_auth == "url_secret":
        sent = _with_query(url, f"{URL_SECRET_PARAMETER}={quote(secret, safe='')}")
        shown = _with_query(url, f"{URL_SECRET_PARAMETER}=<{source}, URL-encoded>")
        signing: str | None = None
    else:
        sent = shown = url
        signing = secret
    return WebhookSpec(
        name=f"usm-bridge {name}",
        url=sent,
        shown_url=shown,
        events=JIRA_EVENTS,
        jql=jql,
        secret=signing,
        secret_source=source,
        secret_value=secret,
    )


def _with_query(url: str, query: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=query))


def same_receiver(a: str, b: str) -> bool:
    """Whether two webhook URLs post to the same receiver: the same URL, its query (where a
    secret may be) and a trailing slash aside; scheme and host case-insensitive."""

    def key(url: str) -> tuple[str, str, str]:
        parts = urlsplit(url.strip())
        return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/")

    return key(a) == key(b)


def _masked(text: str, spec: WebhookSpec) -> str:
    secret = spec.secret_value
    for form in {secret, quote(secret, safe="")}:
        if form:
            text = text.replace(form, "***")
    return text


def register_one(
    config: BridgeConfig, name: str, admin: WebhookAdmin, *, dry_run: bool
) -> Registration:
    """Register instance ``name``'s webhook through ``admin`` (see the module)."""
    inst = config.instances[name]
    try:
        deployment = admin.webhook_deployment()
        spec = webhook_spec(config, name, admin.webhook_filter())
    except RemoteError as exc:
        return Registration(name, "failed", None, f"Jira did not answer: {exc}")
    if spec is None:
        return Registration(
            name, "failed", None,
            f"no receiver URL: set [daemon] public_url, or webhook_url of [instances.{name}]",
        )  # fmt: skip
    if deployment == "datacenter" and inst.webhook_auth == "signature":
        return Registration(
            name, "manual", spec,
            "Jira Data Center does not sign webhooks: enter these settings where your version "
            "offers a secret, or set webhook_auth = \"url_secret\" on the instance and run "
            "this again",
            deployment=deployment,
        )  # fmt: skip
    try:
        existing = admin.list_webhooks()
    except RemoteError as exc:
        return _refused(name, spec, exc, deployment, "list")
    for hook in existing:
        if same_receiver(hook.url, spec.url):
            return Registration(name, "exists", spec, f"webhook {hook.id} ({hook.name!r})",
                                hook.id, deployment)  # fmt: skip
    if dry_run:
        return Registration(name, "would_create", spec, "", None, deployment)
    try:
        made = admin.create_webhook(spec)
    except RemoteError as exc:
        return _refused(name, spec, exc, deployment, "create")
    return Registration(name, "created", spec, f"webhook {made.id}", made.id, deployment)


def _refused(
    name: str, spec: WebhookSpec, exc: RemoteError, deployment: str, what: str
) -> Registration:
    reason = _masked(str(exc), spec)
    if exc.status in (401, 403, 404):
        why = {401: "not allowed", 403: "not an admin", 404: "no such API"}[exc.status]
        return Registration(
            name, "manual", spec,
            f"Jira refused to {what} webhooks ({why}: HTTP {exc.status})",
            deployment=deployment,
        )  # fmt: skip
    return Registration(name, "failed", spec, f"could not {what} webhooks: {reason}",
                        deployment=deployment)  # fmt: skip


def register_all(
    config: BridgeConfig,
    host: PluginHost,
    instances: list[str] | None = None,
    *,
    dry_run: bool = False,
) -> list[Registration]:
    """Register the webhook of each of ``instances`` (default: every enabled Jira instance
    with a ``webhook_secret``); an instance named that takes no events is reported as failed."""
    from ..connector import build_connector

    names = instances or [
        name for name, inst in config.instances.items()
        if inst.enabled and inst.kind == "jira" and inst.webhook_secret is not None
    ]  # fmt: skip
    if not names:
        raise UsmBridgeError(
            "no Jira instance has a webhook_secret: nothing to register (see the README, 'Events')"
        )
    results: list[Registration] = []
    for name in names:
        inst = config.instances[name]
        if inst.kind != "jira" or inst.webhook_secret is None:
            results.append(Registration(name, "failed", None,
                                        "not a Jira instance with a webhook_secret"))  # fmt: skip
            continue
        connector = build_connector(
            host.connector_type(inst.kind), name, config.tool_settings(name),
            base_dir=config.base_dir,
        )  # fmt: skip
        try:
            if not isinstance(connector, WebhookAdmin):
                results.append(Registration(name, "failed", None,
                                            "its connector cannot manage webhooks"))  # fmt: skip
                continue
            results.append(register_one(config, name, connector, dry_run=dry_run))
        finally:
            connector.close()
    return results


def render(results: list[Registration]) -> Iterator[str]:
    """What the command prints: one line per instance, and the settings for the admin UI
    where they are to be entered by hand. No secret."""
    for item in results:
        spec = item.spec
        where = f" ({item.deployment})" if item.deployment else ""
        if item.action == "exists":
            yield f"{item.instance}: exists{where}: {item.detail}, posting to {_url(spec)}"
        elif item.action == "created":
            yield f"{item.instance}: created{where}: {item.detail}, posting to {_url(spec)}"
        elif item.action == "would_create":
            yield f"{item.instance}: would create{where} (dry run): posting to {_url(spec)}"
        elif item.action == "failed":
            yield f"{item.instance}: failed: {item.detail}"
        else:
            assert spec is not None
            yield f"{item.instance}: manual{where}: {item.detail}."
            yield "  In Jira administration > System > WebHooks > Create a WebHook, enter:"
            yield f"    Name:        {spec.name}"
            yield "    Status:      Enabled"
            yield f"    URL:         {spec.shown_url}"
            if spec.secret is not None:
                yield f"    Secret:      {spec.secret_source}"
            yield f"    Events:      {_UI_EVENTS}"
            yield f"    JQL:         {spec.jql or '(none: every issue)'}"
            yield "    Exclude body: no"


def _url(spec: WebhookSpec | None) -> str:
    return spec.shown_url if spec is not None else "?"
