"""``usm-bridge serve`` (the webhook receivers beside Celery workers) and ``usm-bridge webhooks
register`` (the Jira admin webhooks that post to them). See docs/workers.md and the README's
"Events" section."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import click

from ..cli import (
    _listen_option,
    _selected_instances,
    config_option,
    friendly_errors,
    log_format_option,
)
from ..config import DEFAULT_LISTEN, default_config_path, load_config
from ..errors import ConfigurationError, UsmBridgeError

__all__ = ["serve", "webhooks"]

log = logging.getLogger(__name__)


@click.command()
@config_option
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help=f"Where to serve (0.0.0.0:PORT in a container). Default: [daemon] listen, else "
    f"{DEFAULT_LISTEN}.",
)
@click.option(
    "--instance",
    "-i",
    "instances",
    multiple=True,
    metavar="NAME",
    help="Take this instance's events (repeatable). Default: every enabled Jira or ServiceNow "
    "instance with a webhook_secret.",
)
@log_format_option
@click.pass_context
@friendly_errors
def serve(
    ctx: click.Context,
    config_path: Path | None,
    listen: str | None,
    instances: tuple[str, ...],
    log_format: str | None,
) -> None:
    """Receive tool events (webhooks) for the Celery workers: each accepted event enqueues
    its instance's cycle on the broker ([workers] broker_url). No cycle runs here.

    \b
    Use it with `usm-bridge worker` and `usm-bridge scheduler` (docs/workers.md); the
    embedded daemon takes events on its own --listen port and needs no serve.

    \b
    Endpoints:
      POST /events/jira/NAME        Jira webhooks of instance NAME (with a webhook_secret)
      POST /events/servicenow/NAME  ServiceNow's business rule (docs/servicenow-events.md)
      /healthz                      200 while the broker answers, else 503
      /metrics                      deliveries by outcome, cycles enqueued, broker failures

    \b
    What a delivery gets:
      202 accepted     signed and new: the instance's cycle is enqueued, unless one
                       already waits in its queue (a burst of events is one cycle)
      200 replayed     a delivery id seen before: nothing is done
      401/403/404/413  unsigned, badly signed, unknown instance, body too large
      503 unavailable  signed, but the broker does not answer; logged once per
                       outage. Jira retries on 5xx; ServiceNow's rule does not,
                       and the scheduler's next poll catches the change
    An event is a hint: the cycle reads the truth from the tool, and polling (the
    scheduler) goes on whatever happens to events.

    \b
    The receivers only need the webhook secrets and the broker: the tools' own
    credentials may be left out of this process's environment. Put a TLS proxy in
    front, and register Jira's webhooks with `usm-bridge webhooks register`.
    SIGTERM or Ctrl-C stops it: the requests in flight are answered, then it exits 0.

    \b
    Example:
      usm-bridge serve -c /etc/usm-bridge.toml --listen 0.0.0.0:9465
    """
    from ..sync.logs import log_to_stream
    from ..sync.signals import stop_on_signals
    from .kinds import EVENT_KINDS
    from .serve_app import serve_app
    from .server import AppServer

    # Never talks to a tool nor opens the store: their secrets need not be given here (the
    # systemd unit loads the webhook secrets and the broker's URL only).
    config = load_config(
        config_path or default_config_path(),
        tool_secrets=False,
        webhook_secrets=True,
        store_secret=False,
    )
    if not config.uses_workers:
        # Without workers nothing would run the cycles it enqueues.
        raise ConfigurationError(
            "serve enqueues cycles for Celery workers, and the config has no [workers] "
            "section; with the daemon, events arrive on its own --listen port",
            where=str(config.path),
            expected="a [workers] section with broker_url (docs/workers.md)",
        )
    parsed = _listen_option(listen)
    address = config.daemon.address if parsed is False else parsed
    if not isinstance(address, tuple):
        raise ConfigurationError(
            "serve needs an address to listen on, not 'off'",
            where=str(config.path),
            expected="--listen HOST:PORT or [daemon] listen",
        )
    names = _selected_instances(config, instances)
    served = serve_app(config, names)
    if not served.instances:
        raise ConfigurationError(
            "no instance takes events: serve would only answer /healthz",
            where=str(config.path),
            expected="a webhook_secret on a Jira or ServiceNow instance (see the README)",
        )
    fmt = log_format or config.daemon.log_format
    debug = bool(ctx.obj.get("debug")) if ctx.obj else False
    stop = threading.Event()
    with log_to_stream(
        "json" if fmt == "json" else "text", level=logging.DEBUG if debug else logging.INFO
    ):
        try:
            server = AppServer(served.app, address[0], address[1])
        except OSError as exc:
            raise UsmBridgeError(
                f"cannot serve on {address[0]}:{address[1]}: {exc.strerror or exc}; choose "
                "another with --listen HOST:PORT"
            ) from None
        with stop_on_signals(stop.set), server:
            for name in served.instances:
                kind = EVENT_KINDS[config.instances[name].kind]
                log.info("taking %s events for %s at %s/events/%s/%s", kind.tool, name,
                         server.url, kind.kind, name,
                         extra={"event": "webhooks", "instance": name})  # fmt: skip
            ok, why = served.wake.check()
            if not ok:  # not fatal: it answers 503 until the broker is back
                log.warning("the broker does not answer yet (%s)", why,
                            extra={"event": "broker_down"})  # fmt: skip
            log.info("serving %s (/healthz, /metrics, /events)", server.url,
                     extra={"event": "listening", "url": server.url})  # fmt: skip
            stop.wait()
        log.info("stopped", extra={"event": "serve_stop"})


@click.group()
def webhooks() -> None:
    """The tools' webhooks that post events to the bridge."""


@webhooks.command("register")
@config_option
@click.option(
    "--instance",
    "-i",
    "instances",
    multiple=True,
    metavar="NAME",
    help="Only this Jira instance (repeatable). Default: every enabled Jira instance with a "
    "webhook_secret.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be created; change nothing in Jira.")
@friendly_errors
def register(config_path: Path | None, instances: tuple[str, ...], dry_run: bool) -> None:
    """Create the Jira admin webhook of each enabled Jira instance with a webhook_secret, posting
    to its receiver: [daemon] public_url + /events/jira/NAME, or the instance's
    webhook_url.

    \b
    For each instance, one of:
      exists     a webhook with this URL is registered already: nothing is changed
      created    made through Jira's REST API (/rest/webhooks/1.0/webhook; needs an
                 account with the Jira administrators global permission)
      manual     Jira refused (not an admin, or no such API), or it is a Data Center
                 that does not sign: the exact settings to enter under Jira
                 administration > System > WebHooks are printed instead
    Running it again is safe. The secret itself is never printed: its variable is.

    \b
    Example:
      usm-bridge webhooks register -c /etc/usm-bridge.toml --dry-run
    """
    from ..plugins import default_host
    from .registration import register_all, render

    config = load_config(config_path or default_config_path())
    chosen = list(instances) if instances else None
    if chosen is not None:
        _selected_instances(config, tuple(chosen))  # unknown names: a clear error
    results = register_all(config, default_host(), chosen, dry_run=dry_run)
    for line in render(results):
        click.echo(line)
    failed = [r for r in results if r.action == "failed"]
    if failed:
        raise UsmBridgeError(
            f"{len(failed)} of {len(results)} webhook(s) could not be registered: "
            + ", ".join(r.instance for r in failed)
        )
