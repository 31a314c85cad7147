"""The ``usm-bridge`` command.

Exit codes: 0 success; 1 the bridge could not do its job (a remote or the store failed);
2 the user's input is wrong (config, mapping, arguments) - always with one clear message and
no traceback; 3 ``report conformance`` scored below ``--fail-under``; 70 an internal error (the
traceback is shown with ``--debug``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .config import (
    DEFAULT_CONFIG_NAME,
    BridgeConfig,
    default_config_path,
    load_config,
)
from .errors import ConfigurationError, PluginError, StoreSchemaError, UsmBridgeError

if TYPE_CHECKING:
    from .store import DeadLetter

__all__ = ["cli", "main"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70

# Piped output (a log, a CI job) has no terminal width; Rich would assume 80 and cut tables.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    sys.exit(code)


def _escape(text: str) -> str:
    # Ticket text and file names are untrusted: never let them act as Rich markup.
    from rich.markup import escape

    return escape(text)


def _one_line(message: str) -> str:
    """A problem an admin must fix is one line (a log or a CI job greps for it), also where a
    message lists several: ``first; also second``."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def friendly_errors(func: F) -> F:
    """Turn the bridge's own errors into one line and an exit code instead of a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigurationError as exc:
            _fail(_escape(_one_line(str(exc))), EXIT_USAGE)
        except PluginError as exc:
            _fail(_escape(_one_line(str(exc))), EXIT_USAGE)
        except StoreSchemaError as exc:  # the admin upgrades the store (or usm-bridge) first
            _fail(_escape(str(exc)), EXIT_USAGE)
        except UsmBridgeError as exc:
            _fail(_escape(str(exc)), EXIT_FAILURE)
        return None

    return wrapper  # type: ignore[return-value]


config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Config file. Default: $USM_BRIDGE_CONFIG, else ./{DEFAULT_CONFIG_NAME}.",
)


migrate_option = click.option(
    "--migrate",
    is_flag=True,
    help="Upgrade a store whose schema is older than this usm-bridge (as 'usm-bridge db "
    "upgrade' does) instead of refusing it. Back the store up first.",
)

#: The log lines' format of the long-running commands (``daemon``, ``serve``).
log_format_option = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Log lines as text, or as one JSON object per line. Default: [daemon] log_format.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="usm-bridge")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """usm-bridge: every department keeps its ticketing tool; all of them work to USM.

    \b
    Start here:
      usm-bridge init            write a commented starter config (usm-bridge.toml)
      usm-bridge check           validate the config, sign in to every tool, open the store
      usm-bridge connectors      list the installed connector plugins
      usm-bridge mapping apply   see how a mapping turns one record into a USM call
      usm-bridge sync --once     sync every instance once (cron)
      usm-bridge daemon          sync on a schedule; /healthz and /metrics
      usm-bridge worker          a Celery worker running cycles and pushes (scale-out)
      usm-bridge scheduler       enqueue each instance's cycle for the workers
      usm-bridge serve           receive tool events (webhooks) for the workers
      usm-bridge webhooks register   create the Jira webhooks that post events to the bridge
      usm-bridge status          last success, lag, backlog and dead letters per instance
      usm-bridge trace REF       one call across the chain: routes, writes, dead letters, audit
      usm-bridge db upgrade      bring the store's schema up to this version (after a backup)
      usm-bridge demo            see it work on a sample enterprise, on loopback
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING)


# -------------------------------------------------------------------------------------------
# init / check
# -------------------------------------------------------------------------------------------


@cli.command()
@click.argument(
    "path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_CONFIG_NAME
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option(
    "--print", "to_stdout", is_flag=True, help="Print the config instead of writing files."
)
@click.option(
    "--connector",
    "kinds",
    multiple=True,
    metavar="KIND",
    help="Only this connector kind (repeatable); default every installed one.",
)
@friendly_errors
def init(path: Path, force: bool, to_stdout: bool, kinds: tuple[str, ...]) -> None:
    """Write a commented starter config to PATH (default ./usm-bridge.toml).

    The starter file describes three units, HR on a mailbox, Facilities on Jira and IT on
    ServiceNow, and the routes between them, and lists every setting of every installed
    connector with its default. The shipped mapping files it names are copied next to it
    (into mappings/), so you can adapt them to your tools.
    """
    from .plugins import default_host
    from .starter.command import write_starter

    if to_stdout:
        from .starter import render_starter

        click.echo(render_starter(default_host(), kinds).text, nl=False)
        return
    for line in write_starter(path, default_host(), kinds=kinds, force=force):
        out.print(_escape(line))


@cli.command()
@config_option
@click.option(
    "--offline",
    is_flag=True,
    help="Only validate the files (config, mappings, routes): sign in nowhere (CI lint).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1, max=86_400),
    default=60,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait, overall, for the tools and the store to answer; all are asked at "
    "once, and one that has not answered by then fails the check.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@friendly_errors
def check(config_path: Path | None, offline: bool, timeout: float, as_json: bool) -> None:
    """Validate the config file and every mapping, connector and route it names, then sign in
    to every enabled instance's tool and open the store (read-only: it never migrates).

    \b
    Exits 2 with the file, key and line of the first problem in the files; 1 when a tool
    or the store cannot be used (wrong credentials, unreachable host, a store that cannot
    be opened or whose schema is not this usm-bridge's), with each one's own message;
    0 only when the bridge could run. --offline stops after the files.

    \b
    Environment variables override settings of the file: USM_BRIDGE_STORE__URL,
    USM_BRIDGE_INSTANCES__HR_MAIL__INTERVAL (see the README); check lists them by name.
    """
    from .checks import check_config
    from .online_checks import reach_all
    from .plugins import default_host

    path = config_path or default_config_path()
    config = load_config(path)
    host = default_host()
    lines = check_config(config, host)
    reached = [] if offline else reach_all(config, host, deadline=timeout)
    failed = [item.subject for item in reached if not item.ok]
    if as_json:
        document = {
            "config": str(path),
            "ok": not failed,
            "offline": offline,
            "checks": lines,
            "reached": [item.as_json() for item in reached],
            # Names only: a value may be a secret.
            "environment": [
                {"variable": o.variable, "key": o.dotted} for o in config.from_environment
            ],
        }
        click.echo(json.dumps(document, indent=2))
    else:
        for line in lines:
            out.print(f"[green]ok[/] {_escape(line)}")
        for override in config.from_environment:  # names only: a value may be a secret
            names = f"{_escape(override.variable)} sets {_escape(override.dotted)}"
            out.print(f"from the environment: {names}")
        for item in reached:
            mark = "[green]ok[/]" if item.ok else "[bold red]failed[/]"
            out.print(f"{mark} {_escape(item.subject)}: {_escape(_one_line(item.detail))}")
        summary = (
            f"{_escape(str(path))}: {len(config.units)} units, {len(config.instances)} "
            f"instances, {len(config.routes)} routes: valid"
        )
        if offline:
            out.print(f"{summary} (offline: no tool or store was asked)")
        elif not failed:
            out.print(f"{summary}; every tool and the store answered")
    if failed:
        _fail(_escape(f"{len(failed)} of {len(reached)} failed: {', '.join(failed)}"), EXIT_FAILURE)


# -------------------------------------------------------------------------------------------
# connectors / schema
# -------------------------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@friendly_errors
def connectors(as_json: bool) -> None:
    """List installed plugins: connector kinds, distributions, versions and hooks.

    Plugins are found through the 'usm_bridge' entry point group; set
    USM_BRIDGE_DISABLE_PLUGINS=name,... to block some.
    """
    from .plugins import PluginHost

    host = PluginHost()
    infos = host.plugin_info()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "plugin": i.name,
                        "distribution": i.distribution,
                        "version": i.version,
                        "connector_kinds": list(i.connector_kinds),
                        "hooks": list(i.hooks),
                    }
                    for i in infos
                ],
                indent=2,
            )
        )
        return
    table = Table(title="usm-bridge plugins")
    for column in ("plugin", "distribution", "version", "connector kinds", "hooks"):
        # Names are never cut: fold long ones onto the next line in a narrow terminal.
        table.add_column(column, overflow="fold")
    for info in infos:
        table.add_row(
            _escape(info.name),
            _escape(info.distribution or "-"),
            _escape(info.version or "-"),
            _escape("\n".join(info.connector_kinds) or "-"),
            _escape("\n".join(h.removeprefix("usm_bridge_") for h in info.hooks)),
        )
    out.print(table)
    if not host.connector_types():
        out.print(
            "no connector installed yet: pip install usm-bridge-jira (or -servicenow, -email)"
        )


@cli.command()
@click.option(
    "--model",
    type=click.Choice(["all", "call", "unit", "service", "agreement", "person"]),
    default="all",
    show_default=True,
    help="Which model to export.",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file."
)
def schema(model: str, output: Path | None) -> None:
    """Export the canonical USM model as JSON Schema (draft 2020-12)."""
    from .schema import json_schema

    text = json.dumps(json_schema(None if model == "all" else model), indent=2) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {_escape(str(output))}")
    else:
        click.echo(text, nl=False)


# -------------------------------------------------------------------------------------------
# export / import: the USM Workflow Interchange Format (see docs/wif.md)
# -------------------------------------------------------------------------------------------


@cli.group("export")
def export_group() -> None:
    """Write the config in interchange formats other USM tools read."""


@export_group.command("wif")
@config_option
@click.option("--unit", "units", multiple=True, metavar="UNIT", help="Only this unit (repeatable).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to write into (created if missing); files of the same names are replaced.",
)
@friendly_errors
def export_wif(config_path: Path | None, units: tuple[str, ...], out_dir: Path) -> None:
    """Write each unit's workflows as USM Workflow Interchange Format documents.

    One document per workflow pattern (W1..W8) the unit runs: a pattern configured with
    steps in [workflows.UNIT.WN] is a workflow (UNIT-wN-SLUG.workflow.json), any other a
    template of the pattern's processes (UNIT-wN-SLUG.workflow-template.json). The same
    config always writes the same bytes, so exports diff cleanly.

    \b
    Examples:
      usm-bridge export wif --out wif/
      usm-bridge export wif --unit it --out wif/it/
    """
    from .wif.command import export_wif as write_documents

    config = load_config(config_path or default_config_path())
    for path in write_documents(config, units, out_dir):
        out.print(f"wrote {_escape(str(path))}")


@cli.group("import")
def import_group() -> None:
    """Read interchange documents other USM tools wrote."""


@import_group.command("wif")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--unit", metavar="UNIT", help="Configure this unit, instead of each document's context."
)
@click.option("--check", "check_only", is_flag=True, help="Only validate; print no config.")
@friendly_errors
def import_wif(files: tuple[Path, ...], unit: str | None, check_only: bool) -> None:
    """Read USM Workflow Interchange Format documents (FILES) and print the [workflows]
    config that reproduces them, to paste into the config file.

    Each document is validated against the format's JSON Schema; members the bridge does not
    know are ignored (the draft's must-ignore policy). An invalid document exits 2 naming the
    file and the JSON path ($.steps[1].process) of each problem.

    \b
    Examples:
      usm-bridge import wif wif/it-w3-incident-with-change.workflow.json
      usm-bridge import wif --check wif/*.json
      usm-bridge import wif --unit facilities supplier-incident.workflow.json >> usm-bridge.toml
    """
    from .wif.command import check_documents
    from .wif.to_config import config_snippet

    adopted = check_documents(files, unit)
    if check_only:
        for item in adopted:
            what = f"{item.document.type or 'document'} {item.unit} {item.pattern.id}"
            out.print(f"[green]ok[/] {_escape(item.source)}: {_escape(what)}")
        return
    click.echo(config_snippet(adopted), nl=False)


# -------------------------------------------------------------------------------------------
# mapping
# -------------------------------------------------------------------------------------------


@cli.group()
def mapping() -> None:
    """Check mapping files and try them on records."""


@mapping.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@friendly_errors
def mapping_check(files: tuple[Path, ...]) -> None:
    """Validate mapping FILES: syntax, keys, value tables, transforms, outbound ambiguity."""
    from .mapping import check_mapping
    from .plugins import PluginHost

    transforms = PluginHost().transforms()
    for file in files:
        warnings: list[str] = []
        summary = check_mapping(file, transforms, warnings=warnings)
        out.print(f"[green]ok[/] {_escape(str(file))}: {_escape(summary)}")
        for warning in warnings:  # valid but lossy: said before runtime, not a refusal
            out.print(f"  [yellow]warning[/] {_escape(warning)}")


@mapping.command("apply")
@click.argument("file", type=click.Path(path_type=Path))
@click.argument("record_file", metavar="RECORD.json", type=click.Path(path_type=Path))
@click.option("--unit", default="unit", show_default=True, help="Unit the call belongs to.")
@click.option("--instance", default="instance", show_default=True, help="Connector instance.")
@click.option("--outbound", is_flag=True, help="Also map the call back to the tool's fields.")
@friendly_errors
def mapping_apply(file: Path, record_file: Path, unit: str, instance: str, outbound: bool) -> None:
    """Map one raw record (RECORD.json, '-' for stdin) through FILE and print the USM call.

    RECORD.json is the tool's record as JSON (e.g. one issue from the Jira API), or an object
    {"remote_id": ..., "data": {...}} as a connector yields it.
    """
    from .mapping.cli import apply_file

    text = sys.stdin.read() if str(record_file) == "-" else _read_record(record_file)
    source = "<stdin>" if str(record_file) == "-" else str(record_file)
    result = apply_file(file, text, unit=unit, instance=instance, outbound=outbound, source=source)
    click.echo(json.dumps(result, indent=2, ensure_ascii=False))


def _read_record(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read: {exc.strerror}", where=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"not UTF-8 ({exc.reason})", where=str(path)) from None


# -------------------------------------------------------------------------------------------
# dead letters
# -------------------------------------------------------------------------------------------


@cli.group("dead-letters")
def dead_letters() -> None:
    """Records and writes that could not go through, kept raw with the reason.

    Nothing a tool sends is dropped: what cannot be mapped, stored or written lands here.
    Fix the cause (usually the mapping file), then retry.
    """


@dead_letters.command("list")
@config_option
@click.option("--instance", help="Only this connector instance.")
@click.option(
    "--stage", type=click.Choice(["map", "store", "push"]), help="Only letters of this stage."
)
@click.option(
    "--status",
    type=click.Choice(["open", "resolved", "dismissed", "all", "waiting"]),
    default="open",
    show_default=True,
    help="Letters by status, or 'waiting': writes still pending, with their last error.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON, payloads included.")
@friendly_errors
def dead_letters_list(
    config_path: Path | None, instance: str | None, stage: str | None, status: str, as_json: bool
) -> None:
    """List dead letters, oldest first (first and last time each failed).

    \b
    --status waiting lists the writes that have not become dead letters yet: each pending
    outbox item with its target, record, attempts, next try and last error.
    """
    from .store import SchemaPolicy, Store

    config = load_config(config_path or default_config_path(), tool_secrets=False)
    if status == "waiting":
        if stage not in (None, "push"):
            raise click.BadParameter(
                "waiting writes are pushes: --stage must be 'push' or left out",
                param_hint="'--stage'",
            )
        _list_waiting(config.store.url, instance, as_json)
        return
    with (
        Store.open(config.store.url, schema=SchemaPolicy.READ) as store,
        store.begin(readonly=True) as tx,
    ):
        letters = tx.list_dead_letters(
            status=None if status == "all" else status, instance=instance, stage=stage
        )
    if as_json:
        click.echo(json.dumps([letter.model_dump(mode="json") for letter in letters], indent=2))
        return
    if not letters:
        out.print("no dead letters")
        return
    out.print(_letters_table(letters, config))


def _letters_table(letters: list[DeadLetter], config: BridgeConfig) -> Table:
    """The letters with their unit (from the config; ``-`` for an instance no longer in it) and
    age (since the first failure), and for a closed letter how it was closed instead of why it
    failed."""
    from datetime import UTC, datetime, timedelta

    from .sync.console import format_lag

    now = datetime.now(UTC)
    table = Table(title=f"{len(letters)} dead letters")
    columns = ("id", "instance", "unit", "stage", "status", "attempts", "age", "first seen")
    for column in (*columns, "last seen", "reason"):
        table.add_column(column)
    for letter in letters:
        known = config.instances.get(letter.instance)
        table.add_row(
            str(letter.id),
            _escape(letter.instance),
            _escape(known.unit) if known is not None else "-",
            letter.stage.value,
            letter.status.value,
            str(letter.attempts),
            format_lag(max(now - letter.created_at, timedelta(0))),
            letter.created_at.strftime("%Y-%m-%d %H:%M"),
            letter.last_seen.strftime("%Y-%m-%d %H:%M"),
            _escape((letter.resolution if letter.status.value != "open" else None) or "")[:200]
            or _escape(letter.reason[:200]),
        )
    return table


def _list_waiting(url: str, instance: str | None, as_json: bool) -> None:
    """``dead-letters list --status waiting``: every pending write, oldest first."""
    from datetime import UTC, datetime

    from .store import SchemaPolicy, Store
    from .sync.console import waiting_table
    from .sync.waiting import list_waiting

    with Store.open(url, schema=SchemaPolicy.READ) as store, store.begin(readonly=True) as tx:
        items = list_waiting(tx, instance=instance)
    if as_json:
        click.echo(json.dumps([item.as_json() for item in items], indent=2))
        return
    if not items:
        out.print("no writes waiting")
        return
    now = datetime.now(UTC)
    out.print(waiting_table(items, now=now, title=f"{len(items)} writes waiting"))


@dead_letters.command("retry")
@config_option
@click.option("--instance", help="Only this connector instance.")
@click.option("--id", "ids", type=int, multiple=True, help="Only this letter (repeatable).")
@friendly_errors
def dead_letters_retry(
    config_path: Path | None, instance: str | None, ids: tuple[int, ...]
) -> None:
    """Replay open dead letters: records are mapped again with the current mapping files,
    writes are queued again for the next cycle. Exits 1 if any letter failed again.

    \b
    A file's letter (subject attachment:...) from where the file was read (refused by the
    mapping's attachments: policy, or not read for now after a 401 or 403) has the file read
    again now, under the policy now: accepted, it travels (the next cycle pushes it) and the
    letter is resolved; refused again, it stays open. So after changing the policy, retry the
    file's letter instead of waiting for a change of its record. A file a target refused is
    skipped."""
    from .dead_letters import retry_dead_letters
    from .runtime import open_runtime

    config = load_config(config_path or default_config_path())
    with open_runtime(config) as runtime:
        outcome = retry_dead_letters(runtime.engine, ids=ids, instance=instance)
    for letter_id, note in outcome.resolved:
        out.print(f"[green]resolved[/] {letter_id}: {_escape(note)}")
    for letter_id, note in outcome.skipped:
        out.print(f"[yellow]skipped[/] {letter_id}: {_escape(note)}")
    for letter_id, note in outcome.failed:
        out.print(f"[red]failed again[/] {letter_id}: {_escape(note)}")
    out.print(
        f"{len(outcome.resolved)} resolved, {len(outcome.failed)} failed again, "
        f"{len(outcome.skipped)} skipped"
    )
    if outcome.failed:
        sys.exit(EXIT_FAILURE)


@dead_letters.command("dismiss")
@config_option
@click.argument("ids", type=int, nargs=-1)
@click.option("--reason", required=True, help="Why the letters will not be retried (audited).")
@click.option("--by", "by", help="Who dismisses them (audited); default: the OS user.")
@click.option("--instance", help="Every open letter of this connector instance.")
@click.option(
    "--stage", type=click.Choice(["map", "store", "push"]), help="Every open letter of this stage."
)
@click.option("--all", "everything", is_flag=True, help="Every open letter (no id, no filter).")
@friendly_errors
def dead_letters_dismiss(
    config_path: Path | None,
    ids: tuple[int, ...],
    reason: str,
    by: str | None,
    instance: str | None,
    stage: str | None,
    everything: bool,
) -> None:
    """Give up on open dead letters: by ID, by --instance/--stage, or --all.

    \b
    A dismissed letter is kept (list --status dismissed) but leaves the backlog counts, the
    metrics and the conformance report; who and why go to the audit log. It is not retried;
    if the same record fails again, a new letter opens. Unknown or closed ids: nothing is
    dismissed, exit 1.
    """
    import getpass

    from .dead_letters import dismiss_dead_letters
    from .store import Store

    filtered = instance is not None or stage is not None
    if ids and (filtered or everything):
        raise click.UsageError("give letter ids, or filters (--instance/--stage/--all), not both")
    if not ids and not filtered and not everything:
        raise click.UsageError("name the letters: ids, --instance/--stage, or --all for every one")
    if not reason.strip():
        raise click.BadParameter("must not be empty", param_hint="'--reason'")
    who = by if by is not None else getpass.getuser()
    config = load_config(config_path or default_config_path(), tool_secrets=False)
    with Store.open(config.store.url) as store:
        dismissed = dismiss_dead_letters(
            store, reason=reason, by=who, ids=ids, instance=instance, stage=stage
        )
    for letter in dismissed:
        out.print(f"[yellow]dismissed[/] {letter.id}: {_escape(letter.instance)} {letter.stage}")
    out.print(f"{len(dismissed)} dismissed by {_escape(who)}")


# -------------------------------------------------------------------------------------------
# sync: daemon, sync --once, status
# -------------------------------------------------------------------------------------------


def _listen_option(value: str | None) -> tuple[str, int] | bool | None:
    """--listen parsed; ``False`` when not given (the config decides)."""
    from .config import parse_listen

    if value is None:
        return False
    try:
        return parse_listen(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None


@cli.command()
@config_option
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Serve /healthz and /metrics here ('off': not at all). "
    "Default: [daemon] listen, else 127.0.0.1:9464.",
)
@log_format_option
@click.option(
    "--wait",
    is_flag=True,
    help="If another daemon runs on the same store, wait for it to stop and take over "
    "(default: exit 2 at once, naming it).",
)
@migrate_option
@click.pass_context
@friendly_errors
def daemon(
    ctx: click.Context,
    config_path: Path | None,
    listen: str | None,
    log_format: str | None,
    wait: bool,
    migrate: bool,
) -> None:
    """Run the sync daemon: sync every enabled instance on its interval until stopped.

    \b
    Each instance is synced every `interval` seconds of its config, give or take 10 %
    so that instances do not fire in step. A failing instance is retried with
    exponential backoff (up to 10 intervals or 30 minutes) without holding back the
    others; every cycle is logged as one line with its counters.

    \b
    Endpoints, on loopback unless you say otherwise:
      /healthz   200 when every instance succeeded within its last 3 intervals, else 503
      /metrics   Prometheus metrics (records read, stored, pushed, backlog, ...)
      POST /events/jira/NAME   Jira webhooks of instance NAME (with a webhook_secret):
                 a signed delivery wakes its cycle early; polling goes on
      POST /events/servicenow/NAME   the same for ServiceNow instance NAME (the
                 business rule of docs/servicenow-events-update-set.xml)

    \b
    SIGTERM or Ctrl-C stops gracefully: the writes in flight finish and commit, then
    the daemon exits 0. A second signal exits at once.

    \b
    One daemon per store: a second one exits 2 naming the first (pid and host), or
    waits for it with --wait. A `sync --once` beside it skips the instances whose
    cycle runs in the daemon at that moment. After a crash (even a SIGKILL) its locks
    are free at once and the writes it had claimed are pushed again by the next one.

    \b
    Example:
      usm-bridge daemon --config /etc/usm-bridge.toml --log-format json
    """
    from .store.locks import LockHeldError
    from .sync.daemon import serve
    from .sync.logs import log_to_stream

    config = load_config(config_path or default_config_path())
    parsed = _listen_option(listen)
    address = config.daemon.address if parsed is False else parsed
    fmt = log_format or config.daemon.log_format
    debug = bool(ctx.obj.get("debug"))
    with log_to_stream(
        "json" if fmt == "json" else "text", level=logging.DEBUG if debug else logging.INFO
    ):
        try:
            serve(
                config,
                listen=address if isinstance(address, tuple) else None,
                migrate=migrate,
                wait=wait,
            )
        except LockHeldError as exc:
            _fail(_escape(str(exc)), EXIT_USAGE)


def _selected_instances(config: BridgeConfig, names: tuple[str, ...]) -> list[str]:
    if not names:
        chosen = [name for name, inst in config.instances.items() if inst.enabled]
        if not chosen:
            raise ConfigurationError(
                "no enabled connector instance to sync",
                where=str(config.path),
                expected="an [instances.NAME] table with enabled = true",
            )
        return chosen
    unknown = [name for name in names if name not in config.instances]
    if unknown:
        raise ConfigurationError(
            f"no instance named {', '.join(map(repr, unknown))} in the config",
            where=str(config.path),
            expected=f"one of {sorted(config.instances)}",
        )
    return list(dict.fromkeys(names))


@cli.command()
@config_option
@click.option(
    "--once",
    is_flag=True,
    help="Run one cycle of each instance and exit (required: the daemon is what loops).",
)
@click.option(
    "--instance",
    "-i",
    "instances",
    multiple=True,
    metavar="NAME",
    help="Only this instance (repeatable). Default: every enabled instance.",
)
@click.option(
    "--census",
    is_flag=True,
    help="Also look for records that vanished from the tools; kept as the daemon's census.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summaries as JSON.")
@migrate_option
@click.pass_context
@friendly_errors
def sync(
    ctx: click.Context,
    config_path: Path | None,
    once: bool,
    instances: tuple[str, ...],
    census: bool,
    as_json: bool,
    migrate: bool,
) -> None:
    """Sync once and exit: for cron, CI and first backfills.

    \b
    Runs one cycle of each selected instance in turn (read, map, store, route, push)
    and prints its counters. Exits 0 when every cycle succeeded, 1 otherwise, so
    cron or a pipeline can alert. A long backfill shows a progress bar on a terminal;
    piped or under cron the command stays quiet apart from its summaries.

    \b
    Examples:
      usm-bridge sync --once                       every enabled instance
      usm-bridge sync --once -i hr-mail -i it-snow  only these two
      */5 * * * * usm-bridge -c /etc/usm-bridge.toml sync --once --json >> sync.log
    """
    import threading
    from datetime import datetime

    from .runtime import open_runtime
    from .sync.console import print_once, run_once
    from .sync.logs import log_to_stream
    from .sync.signals import stop_on_signals
    from .sync.spool_sweep import sweep_spool
    from .sync.startup_gc import collecting_for_backfill

    if not once:
        raise click.UsageError(
            "pass --once: 'sync' runs one cycle per instance and exits; "
            "'usm-bridge daemon' syncs on a schedule"
        )
    config = load_config(config_path or default_config_path())
    names = _selected_instances(config, instances)
    debug = bool(ctx.obj.get("debug"))
    stop = threading.Event()
    with (
        log_to_stream(config.daemon.log_format, level=logging.DEBUG if debug else logging.WARNING),
        open_runtime(config, stop=stop, migrate=migrate) as runtime,
    ):
        store = runtime.store
        # What a killed run left (a cron job is killed more often than anything).
        sweep_spool(config.attachments.spool, config.attachments.kept_files())

        def record_census(name: str, at: datetime) -> None:
            # Where the daemon keeps its own: its census schedule counts this one too.
            with store.begin() as tx:
                tx.record_census(name, at=at)

        # After the start-up: what it built is frozen out of the collector's sight.
        with stop_on_signals(stop.set) as signals, collecting_for_backfill():
            results = run_once(
                runtime.engine,
                names,
                stop=stop,
                census=census,
                record_census=record_census,
                progress_console=None if as_json else err,
                on_result=None if as_json else lambda result: print_once(out, result),
            )
    if as_json:
        click.echo(json.dumps([result.as_json() for result in results], indent=2))
    else:
        failed = sum(not result.ok for result in results)
        busy = sum(result.skipped is not None for result in results)
        skipped = len(names) - len(results)
        line = f"{len(results)} cycles: {len(results) - failed - busy} ok, {failed} failed"
        if busy:
            line += f", {busy} skipped (running elsewhere)"
        if skipped:
            line += f", {skipped} not run (stopped by a signal)"
        out.print(line)
    if signals or any(not result.ok for result in results) or len(results) < len(names):
        sys.exit(EXIT_FAILURE)


@cli.command()
@config_option
@click.option("--instance", "-i", "instances", multiple=True, metavar="NAME",
              help="Only this instance (repeatable).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=60),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="With [workers]: how long to wait for the broker and for the workers' answers.",
)
@friendly_errors
def status(
    config_path: Path | None, instances: tuple[str, ...], as_json: bool, timeout: float
) -> None:
    """Where each connector instance stands, from the store (and the broker, with workers).

    \b
    Per instance: its state (ok, late, failing, never synced, disabled), the last
    successful cycle and the lag since then, the backlog (writes waiting to be pushed
    into its tool), open dead letters, failures in a row, when the last census of the
    tool's records ran (daemon or sync --once --census) and the last error.
    "late" means no success within 3 intervals, as the daemon's /healthz says.

    \b
    With a [workers] section (Celery workers, docs/workers.md), also each live worker
    with its queues and the tasks it runs, and each instance's queue: tasks waiting
    and the age of the oldest. A broker or workers that do not answer within
    --timeout are said as such; the store's part is shown all the same.

    \b
    Examples:
      usm-bridge status
      usm-bridge status --json | jq '.instances[] | select(.state != "ok")'
    """
    from datetime import UTC, datetime

    from .store import SchemaPolicy, Store
    from .sync.console import status_table, waiting_table
    from .sync.status import collect_status

    config = load_config(config_path or default_config_path(), tool_secrets=False)
    if instances:
        _selected_instances(config, instances)
    now = datetime.now(UTC)
    workers = None
    with Store.open(config.store.url, schema=SchemaPolicy.READ) as store:
        report = collect_status(config, store, now=now, instances=instances)
        if config.uses_workers:
            from .workers.inspection import collect_workers

            chosen = instances or tuple(n for n, i in config.instances.items() if i.enabled)
            workers = collect_workers(config, instances=chosen, store=store, timeout=timeout)
    if as_json:
        document = report.as_json()
        if workers is not None:
            document["workers"] = workers.as_json()
        click.echo(json.dumps(document, indent=2))
        return
    out.print(status_table(report))
    if workers is not None:
        from .workers.inspection_render import workers_renderables

        for renderable in workers_renderables(workers):
            out.print(renderable)
    waiting = [item for row in report.instances for item in row.waiting]
    if waiting:
        shown = sum(row.backlog for row in report.instances)
        out.print(waiting_table(waiting, now=now, title=f"waiting writes (oldest of {shown})"))
    if not report.history:
        out.print(
            "this store keeps no cycle history yet: last success, lag and failures appear "
            "once the sync engine has run"
        )


@cli.command()
@click.argument("reference", metavar="REF")
@config_option
@click.option("--instance", "-i", metavar="NAME", help="Only calls of this instance (when REF "
              "is a key two instances share).")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: one document for scripts (README: Tracing a "
              "call).")  # fmt: skip
@friendly_errors
def trace(reference: str, config_path: Path | None, instance: str | None, fmt: str) -> None:
    """Show one call across the chain: linked calls, routes, outbox, dead letters, audit.

    \b
    REF is a tool's key (IT-1, RITM0010001, HR-1), a record id such as a mail's
    Message-ID, or a canonical call id. Reads the store only: asks no tool and never
    migrates. Exit 1 when no call has REF; 2 when several do (narrow with --instance).
    """
    from .trace import trace_reference
    from .trace_render import trace_renderables

    config = load_config(config_path or default_config_path(), tool_secrets=False)
    found = trace_reference(config, reference, instance=instance)
    if fmt == "json":
        click.echo(json.dumps(found.as_json(), indent=2))
        return
    for renderable in trace_renderables(found):
        out.print(renderable)


@cli.command()
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-run"),
    show_default=True,
    help="Where the demo writes its config, store, logs, report and mail (emptied first).",
)
@click.option(
    "--interval",
    # The bounds of every interval in a config (usm_bridge.durations): 1 s to 1 day.
    type=click.FloatRange(min=1, max=86_400),
    metavar="SECONDS",
    help="Sync every instance this often. Default: the example config's intervals "
    "(5 minutes with --events).",
)
@click.option(
    "--events",
    is_flag=True,
    help="Move the work by the tools' events alone (Jira's webhook, ServiceNow's business "
    "rule, HR's mailbox watched), every instance polled only every 5 minutes.",
)
@friendly_errors
def demo(run_dir: Path, interval: float | None, events: bool) -> None:
    """Show the bridge at work: one onboarding travels HR -> Facilities -> IT and back.

    \b
    Starts a Jira and a ServiceNow simulator (IT seeded from a real event log) and a
    local mail server on loopback, loads the sample enterprise (usm_bridge/data/enterprise),
    runs the sync daemon while simulated people work their tickets, writes the
    conformance report, stops by itself and says where everything is.
    """
    from .demo import run_demo
    from .demo_commands import invoked_as

    program = invoked_as(sys.argv[0], Path.cwd())  # printed commands work as printed
    run_demo(run_dir, interval=interval, console=out, program=program, events=events)


# -------------------------------------------------------------------------------------------
# db: the store's schema
# -------------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """The store's schema: where it stands, and upgrading it after a usm-bridge upgrade.

    \b
    Only 'db upgrade' (and sync or daemon with --migrate) changes an existing store's
    schema; every other command refuses a store older than the code and names this one.
    """


@db.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@friendly_errors
def db_status(config_path: Path | None, as_json: bool) -> None:
    """The store's schema revision, the code's, and the migrations pending between them.

    Changes nothing. Exits 0, or 2 when the store is newer than this usm-bridge.
    """
    from .store import SchemaState
    from .store.revision import read_store_revision

    config = load_config(config_path or default_config_path(), tool_secrets=False)
    # Read without opening: a SQLite file not made yet is not made by a status.
    revision = read_store_revision(config.store.url)
    where, status = revision.url, revision.status
    if as_json:
        document = {
            "store": where,
            "revision": status.current,
            "head": status.head,
            "state": status.state.value,
            "pending": [
                {"revision": m.revision, "description": m.description} for m in status.pending
            ],
        }
        click.echo(json.dumps(document, indent=2))
    else:
        out.print(f"store: {_escape(where)}")
        out.print(f"schema revision: {_escape(status.current or 'none (empty store)')}")
        out.print(f"this usm-bridge: {_escape(status.head)}")
        if status.pending:
            out.print(f"pending migrations ({len(status.pending)}):")
            for migration in status.pending:
                out.print(f"  {_escape(migration.revision)}  {_escape(migration.description)}")
        if status.state is SchemaState.OLDER:
            out.print("back the store up, then run 'usm-bridge db upgrade'")
        elif status.state is SchemaState.EMPTY:
            out.print("empty store: sync, daemon or 'usm-bridge db upgrade' creates it")
        elif status.state is SchemaState.CURRENT:
            out.print("up to date")
    refusal = status.refusal(where)
    if status.state is SchemaState.NEWER and refusal is not None:
        raise refusal


@db.command("upgrade")
@config_option
@friendly_errors
def db_upgrade(config_path: Path | None) -> None:
    """Apply the pending migrations to the store, in one transaction, and list them.

    Back the store up first (copy the SQLite file with the bridge stopped, or pg_dump).
    A store newer than this usm-bridge is refused (exit 2).
    """
    from .store import SchemaPolicy, Store

    config = load_config(config_path or default_config_path(), tool_secrets=False)
    with Store.open(config.store.url, schema=SchemaPolicy.INSPECT) as store:
        where = store.display_url
        applied = store.upgrade()
        revision = store.schema_revision()
    for migration in applied:
        out.print(f"applied {_escape(migration.revision)}  {_escape(migration.description)}")
    if applied:
        out.print(f"{_escape(where)}: upgraded to schema revision {_escape(str(revision))}")
    else:
        out.print(f"{_escape(where)}: already at schema revision {_escape(str(revision))}")


# -------------------------------------------------------------------------------------------
# reports
# -------------------------------------------------------------------------------------------


@cli.group()
def report() -> None:
    """Reports for auditors."""


@report.command("conformance")
@config_option
@click.option(
    "--format",
    "-f",
    "fmt",
    default="html",
    show_default=True,
    help="html, json, markdown, junit, or a format a plugin adds.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
@click.option("--period", help="all (default), 7d, 4w, 3m, 1y, 2026, 2026-03 or 2026-Q1.")
@click.option("--since", help="Start of the period (ISO date or time; UTC unless it says).")
@click.option("--until", help="End of the period, exclusive.")
@click.option("--unit", "units", multiple=True, help="Only this unit (repeatable).")
@click.option(
    "--sample",
    "sample_size",
    type=click.IntRange(min=1),
    metavar="N",
    help="List N items of each check's population per unit, for manual testing.",
)
@click.option(
    "--seed",
    default="0",
    show_default=True,
    help="The sample's seed (any text): the same seed draws the same sample.",
)
@click.option(
    "--samples",
    "sample_files",
    multiple=True,
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the samples' items, one row each, to FILE: .csv or .xlsx.",
)
@click.option(
    "--discovery",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Saved discovery (JSON: a Vocabulary per instance) for offline mapping checks.",
)
@click.option(
    "--save-discovery",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save the vocabularies used to this file, for a later offline run.",
)
@click.option("--offline", is_flag=True, help="Never ask the tools; use --discovery only.")
@click.option(
    "--fail-under",
    type=click.FloatRange(0, 100),
    metavar="SCORE",
    help="Exit 3 when the enterprise score is below SCORE (for pipelines).",
)
@click.option(
    "--exceptions",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Also write every exception, one row each, to FILE: .csv or .xlsx (repeatable).",
)
@click.option(
    "--record",
    is_flag=True,
    help="Keep this period's scores in the store for trends (a closed period).",
)
@click.option("--prepared-by", metavar="NAME", help="The name in the sign-off block.")
@click.option(
    "--register",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="The accepted-exceptions register (YAML) to apply, instead of the config's.",
)
@friendly_errors
def report_conformance(config_path: Path | None, fmt: str, output: Path | None,
                       period: str | None, since: str | None, until: str | None,
                       units: tuple[str, ...], sample_size: int | None, seed: str,
                       sample_files: tuple[Path, ...], discovery: Path | None,
                       save_discovery: Path | None, offline: bool,
                       fail_under: float | None, exceptions: tuple[Path, ...],
                       record: bool, prepared_by: str | None,
                       register: Path | None) -> None:  # fmt: skip
    """How well each unit's tool, mapping and data conform to USM: scores, every check with
    its evidence, and the chain of units. See the 'Checks applied' section of a report."""
    from .conformance.command import EXIT_BELOW_THRESHOLD, run_conformance_report, write_output
    from .conformance.exceptions_export import write_exports
    from .conformance.manifest import write_manifest
    from .conformance.provenance import command_line

    config = load_config(config_path or default_config_path())
    run = run_conformance_report(
        config, format=fmt, period=period, since=since, until=until, units=units,
        discovery=discovery, save_discovery_to=save_discovery, live=not offline,
        fail_under=fail_under, exceptions=exceptions, record=record,
        prepared_by=prepared_by, argv=command_line(click.get_current_context()),
        sample_size=sample_size, seed=seed, sample_files=sample_files, register=register,
    )  # fmt: skip
    for path, rows in write_exports(run.report, exceptions).items():
        err.print(f"wrote {_escape(str(path))}: {rows} exceptions")
    for path, rows in write_exports(run.report, sample_files, sample=True).items():
        err.print(f"wrote {_escape(str(path))}: {rows} sampled items")
    score = run.report.enterprise.score
    if output is None:
        run.write(sys.stdout)  # streamed: a report may list millions of exceptions
        sys.stdout.flush()
    else:
        write_output(output, run)
        err.print(f"wrote {_escape(str(output))}: enterprise score {score}")
        err.print(f"wrote {_escape(str(write_manifest(output, exceptions)))}: SHA-256 of each")
    if run.report.trends is not None:
        err.print(_escape(run.report.trends.record_note))
    if run.below_threshold:
        err.print(f"[bold red]enterprise score {score} is below --fail-under {fail_under}[/]")
        sys.exit(EXIT_BELOW_THRESHOLD)


@report.command("schema")
def report_schema() -> None:
    """Print the JSON Schema of the JSON conformance report (--format json)."""
    from .conformance.report import published_schema

    click.echo(published_schema(), nl=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="usm-bridge", standalone_mode=True)
    except SystemExit:
        raise
    except Exception as exc:  # a bug: say so plainly, keep the traceback for --debug
        if debug:
            raise
        err.print(
            f"[bold red]internal error:[/] {_escape(type(exc).__name__)}: {_escape(str(exc))}\n"
            "run again with --debug for the traceback, and please report it",
            markup=True,
        )
        sys.exit(EXIT_INTERNAL)


def _add_worker_commands() -> None:
    # Last, because the module defines them with this one's options and error handling.
    from .events.commands import serve, webhooks
    from .workers.commands import scheduler, worker

    cli.add_command(worker)
    cli.add_command(scheduler)
    cli.add_command(serve)
    cli.add_command(webhooks)


_add_worker_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
