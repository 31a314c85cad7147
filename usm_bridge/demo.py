"""``usm-bridge demo``: the bridge at work on a sample enterprise, start to finish, on loopback.

The enterprise is ``usm_bridge/data/enterprise/usm-bridge.toml`` (package data, so the demo
runs from an installed wheel too): HR on a shared mailbox (a Maildir a local SMTP server
delivers answers out of), Facilities on Jira Service Management (the Jira simulator), IT on
ServiceNow (the ServiceNow simulator, seeded by replaying the real incident
event log). The demo starts those tools on free loopback ports, writes the config with their
addresses into a run folder, runs the sync daemon in a thread, and lets simulated people work
one onboarding through the chain HR -> Facilities -> IT and back, narrating each step:

1. Hannah, a hiring manager, mails HR: a new hire needs a desk, a badge and a laptop; the
   signed onboarding form is attached (a small PDF made in code, :mod:`usm_bridge.demo_form`),
   and travels with the request to Facilities' Jira issue and IT's ServiceNow item, once each:
   the demo reads each copy back from its tool and says where it is, with its SHA-256;
2. a Facilities agent reserves the desk, prints the badge, and labels the Jira issue
   ``needs-it`` for the laptop (the route Facilities -> IT matches that label);
3. an IT agent works the laptop in ServiceNow, comments, and closes the requested item;
4. the Facilities agent resolves the Jira issue; HR's call resumes, and IT's item is confirmed
   by Facilities (Facilities delivered using it: an explicit acceptance);
5. Hilda, an HR agent, answers in the thread with the line ``Status: fulfilled`` (a mailbox has
   no status field: the mailbox's ``agents`` may set one by mail, anybody else's command is
   not one); the bridge reads it like any change of the tool, Facilities' issue is confirmed by
   HR and closed, Hannah is asked to confirm, her "Yes" confirms HR's call, and the bridge
   closes it: every link of the chain ends closed (:mod:`usm_bridge.sync.closure`).

It then lets the daemon run a few quiet cycles (no writes: nothing echoes), stops it, writes
the conformance report (HTML and Markdown) while the tools still answer, stops the tools and
says where the store, the logs, the report and the mail folders are. The people act through
the tools' own interfaces (mail delivered into a Maildir, Jira's REST API and the ServiceNow
simulator's Python API, which is its "UI"), never through the bridge.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import importlib
import logging
import mailbox
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .config import BridgeConfig, load_config
from .demo_commands import PROGRAM, follow_up_commands
from .demo_events import (
    EVENTS_INTERVAL,
    EventsMoved,
    Quiet,
    event_receivers,
    events_moved,
    with_webhook_secret,
)
from .demo_form import FORM_NAME, FormCopy, signed_form
from .demo_needs import DEMO_NEEDS, missing_demo_needs, missing_needs_message
from .errors import UsmBridgeError
from .file_modes import open_log
from .model import Call, Status, utcnow

if TYPE_CHECKING:
    from .store import Store
    from .sync.daemon import Daemon

__all__ = [
    "DEFAULT_RUN_DIR",
    "EXAMPLE_DIR",
    "DemoError",
    "DemoResult",
    "Tools",
    "WriteCounter",
    "render_config",
    "run_demo",
    "start_tools",
]

log = logging.getLogger(__name__)

#: The sample enterprise: its config (a template with ``${USM_DEMO_*}`` variables), README and
#: site-specific mapping; the config names the shipped mappings as ``../mappings/*.yaml``.
#: Package data: wheels install unpacked, so these are plain files the config can name.
EXAMPLE_DIR = Path(__file__).resolve().parent / "data" / "enterprise"
DEFAULT_RUN_DIR = Path("demo-run")
#: A run folder holds this file; only such a folder is emptied by the next run.
MARKER = ".usm-bridge-demo"

HR_ADDRESS = "servicedesk@hr.example"
HANNAH = "Hannah Hiring <hannah@example.com>"
#: One of the HR mailbox's ``agents`` (data/enterprise/usm-bridge.toml): her status
#: commands by mail count.
HR_AGENT = "Hilda from HR <hilda@example.com>"
SUBJECT = "[request] Onboarding: Maria Lopez needs a desk, a badge and a laptop"
BODY = (
    "Hello HR,\n\nMaria Lopez joins the finance team on Monday.\n"
    "She needs a desk, a badge and a laptop.\n\nThanks, Hannah"
)
IT_LABEL = "needs-it"
#: The instances the onboarding passes through.
CHAIN = ("hr-mail", "facilities-jira", "it-requests")
#: The key of Facilities' service-desk project in Jira (data/enterprise/usm-bridge.toml).
FACILITIES_PROJECT = "FAC"
FACILITIES_AGENT = ("5b10ffffacilities0000000001", "Frank Facilities", "frank@facilities.example")
IT_AGENT = ("ian.it", "Ian from IT")
#: With events, how long the daemon must have nothing to do before the people act again
#: (longer than the 1 s debounce, so that an event still on its way is seen first).
_QUIET_HOLD = 1.5
#: Jira's write requests that only read (a search sent as POST).
_READ_POSTS = ("/search/jql", "/search")

T = TypeVar("T")


class DemoError(UsmBridgeError):
    """The demo could not go on (a tool did not start, a step did not happen in time)."""


# --- counting what the bridge writes -------------------------------------------------------------


class WriteCounter:
    """Counts the write requests a simulator serves (GET and searches sent as POST are reads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.writes: list[tuple[float, str, str]] = []
        self.requests = 0

    def wrap(self, answer: Callable[..., T]) -> Callable[..., T]:
        def counted(method: str, path: str, *args: Any) -> T:
            bare = path.split("?", 1)[0].rstrip("/")
            with self.lock:
                self.requests += 1
                if method != "GET" and not bare.endswith(_READ_POSTS):
                    self.writes.append((time.monotonic(), method, bare))
            return answer(method, path, *args)

        return counted

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.writes)


# --- the tools ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Delivery:
    """The local mail server's delivery agent: each recipient's mail into ``mail/<local part>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.delivered = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                local = re.sub(r"[^a-z0-9._-]", "_", str(rcpt).split("@", 1)[0].lower())
                mailbox.Maildir(self.root / local, create=True).add(raw)
            self.delivered += 1
        return "250 Message accepted for delivery"


@dataclass
class Tools:
    """The three departments' tools, running on loopback."""

    mail_root: Path
    #: ``usm_bridge_jira.simulator.JiraSimulator`` (the connectors are optional to the core)
    jira: Any
    #: ``usm_bridge_servicenow.simulator.ServiceNowSimulator``
    snow: Any
    #: ``aiosmtpd.controller.Controller``
    smtp: Any
    smtp_port: int
    delivery: _Delivery
    jira_writes: WriteCounter = field(default_factory=WriteCounter)
    snow_writes: WriteCounter = field(default_factory=WriteCounter)
    replayed: int = 0

    @property
    def hr_maildir(self) -> Path:
        return self.mail_root / "hr"

    def mailbox_of(self, local_part: str) -> Path:
        return self.mail_root / local_part

    def variables(self) -> dict[str, str]:
        """The ``${USM_DEMO_*}`` values of the example config for these tools."""
        return {
            "USM_DEMO_MAIL": str(self.mail_root),
            "USM_DEMO_SMTP_PORT": str(self.smtp_port),
            "USM_DEMO_JIRA_URL": self.jira.base_url,
            "USM_DEMO_JIRA_TOKEN": str(_module("usm_bridge_jira.simulator").CLOUD_TOKEN),
            "USM_DEMO_SNOW_URL": self.snow.base_url,
            "USM_DEMO_SNOW_USER": self.snow.username,
            "USM_DEMO_SNOW_PASSWORD": self.snow.password,
        }

    # -- people ---------------------------------------------------------------------------------

    def deliver_to_hr(
        self,
        subject: str,
        body: str,
        *,
        sender: str = HANNAH,
        in_reply_to: str | None = None,
        pdf: tuple[str, bytes] | None = None,
    ) -> str:
        """A person's mail delivered into HR's Maildir, as a mail server would; its Message-ID.

        :param pdf: a PDF file (name, content) attached to the mail."""
        message = EmailMessage(policy=email.policy.SMTP)
        message["From"] = sender
        message["To"] = HR_ADDRESS
        message["Subject"] = subject
        message["Date"] = email.utils.format_datetime(utcnow())
        message_id = email.utils.make_msgid(domain="example.com")
        message["Message-ID"] = message_id
        if in_reply_to:
            message["In-Reply-To"] = in_reply_to
            message["References"] = in_reply_to
        message.set_content(body)
        if pdf is not None:
            message.add_attachment(pdf[1], maintype="application", subtype="pdf", filename=pdf[0])
        mailbox.Maildir(self.hr_maildir, create=True).add(message.as_bytes())
        return message_id

    def inbox(self, local_part: str) -> list[EmailMessage]:
        """The mail delivered to ``local_part`` (the customer), oldest first."""
        folder = self.mailbox_of(local_part)
        if not folder.is_dir():
            return []
        found: list[tuple[float, EmailMessage]] = []
        for sub in ("new", "cur"):
            for path in (folder / sub).iterdir() if (folder / sub).is_dir() else ():
                parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                assert isinstance(parsed, EmailMessage)
                found.append((path.stat().st_mtime, parsed))
        return [message for _, message in sorted(found, key=lambda pair: pair[0])]

    def jira_rest(self, method: str, path: str, body: Any = None) -> Any:
        """Jira's REST API, as the Facilities agent's browser uses it (signed in as Frank)."""
        import requests

        response = requests.request(
            method,
            f"{self.jira.base_url}/rest/api/3/{path}",
            json=body,
            headers=self.jira.site.sign_in(FACILITIES_AGENT[0]),
            timeout=10,
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def jira_issue(self, key: str) -> Any:
        issue = self.jira.site.issue(key)
        if issue is None:
            raise DemoError(f"Jira has no issue {key}")
        return issue

    def facilities_comment(self, key: str, text: str) -> None:
        """The Facilities agent comments in Jira (publicly: the customer sees it)."""
        adf = _module("usm_bridge_jira.simulator.state").text_adf
        self.jira_rest("POST", f"issue/{key}/comment", {"body": adf(text)})

    def facilities_label_and_take(self, key: str, label: str) -> None:
        """The Facilities agent takes the issue and adds a label (an ``update`` operation, as
        Jira's issue view sends it: the labels already there stay)."""
        self.jira_rest(
            "PUT",
            f"issue/{key}",
            {
                "fields": {"assignee": {"accountId": FACILITIES_AGENT[0]}},
                "update": {"labels": [{"add": label}]},
            },
        )

    def facilities_resolve(self, key: str) -> None:
        """Resolve through the workflow (a transition with a resolution), as the UI does."""
        transitions = self.jira_rest("GET", f"issue/{key}/transitions")["transitions"]
        target = next((t for t in transitions if t["to"]["name"] == "Resolved"), None)
        if target is None:
            names = ", ".join(t["to"]["name"] for t in transitions)
            raise DemoError(f"Jira offers no transition to Resolved from here (only: {names})")
        self.jira_rest(
            "POST",
            f"issue/{key}/transitions",
            {"transition": {"id": target["id"]}, "fields": {"resolution": {"name": "Done"}}},
        )

    def it_update(self, sys_id: str, values: dict[str, str]) -> None:
        """The IT agent changes a requested item in ServiceNow."""
        self.snow.update("sc_req_item", sys_id, values, user=IT_AGENT[0])

    def stop(self) -> None:
        for stop in (self.smtp.stop, self.jira.stop, self.snow.stop):
            try:
                stop()
            except Exception:  # stop the others anyway
                log.warning("stopping a demo tool failed", exc_info=True)


def _module(name: str) -> Any:
    """A module of the connector distributions or of aiosmtpd, which the core does not need."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = (exc.name or name).split(".", 1)[0]
        missing = [need for need in DEMO_NEEDS if need.module == top]
        if not missing:
            raise
        raise DemoError(missing_needs_message(missing)) from None


def start_tools(mail_root: Path, *, seed: bool = True) -> Tools:
    """Start Jira, ServiceNow (with the event log replayed) and SMTP on loopback; stop with
    :meth:`Tools.stop`.

    :raises DemoError: a simulator is not installed (the connectors' distributions).
    """
    controller = _module("aiosmtpd.controller").Controller
    jira_simulator = _module("usm_bridge_jira.simulator").JiraSimulator
    snow_simulator = _module("usm_bridge_servicenow.simulator").ServiceNowSimulator
    replay = _module("usm_bridge_servicenow.simulator.replay").EventLogReplay
    mail_root.mkdir(parents=True, exist_ok=True)
    mailbox.Maildir(mail_root / "hr", create=True)  # new, cur, tmp
    with ExitStack() as undo:
        jira = jira_simulator("cloud", projects={FACILITIES_PROJECT: "Facilities Service Desk"})
        undo.callback(jira.stop)
        site = jira.site
        # A Facilities service desk: its project offers JSM's four work categories, not a
        # software team's Task, Bug and Story (which no USM type fits at Facilities).
        site.offer_types(FACILITIES_PROJECT, "[System] ")
        # Frank signs in with his own API token: what he does in Jira is his, not the bridge's.
        site.add_user(*FACILITIES_AGENT, "frank", secrets.token_urlsafe(24))
        snow = snow_simulator()
        snow.insert("sys_user", {"user_name": IT_AGENT[0], "name": IT_AGENT[1]}, rules=False)
        replayed = len(replay(snow).play()) if seed else 0
        delivery = _Delivery(mail_root)
        port = free_port()
        smtp = controller(delivery, hostname="127.0.0.1", port=port)
        tools = Tools(mail_root, jira, snow, smtp, port, delivery, replayed=replayed)
        jira.answer = tools.jira_writes.wrap(jira.answer)
        snow.answer = tools.snow_writes.wrap(snow.answer)
        jira.start()
        snow.start()
        undo.callback(snow.stop)
        smtp.start()
        undo.pop_all()
    return tools


# --- the config -----------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(USM_DEMO_[A-Z_]+)\}")
_SECRETS = {"USM_DEMO_JIRA_TOKEN": "jira-api-token", "USM_DEMO_SNOW_PASSWORD": "snow-password"}


def render_config(
    template: str,
    variables: dict[str, str],
    *,
    mappings_base: Path,
    secrets_dir: Path | None = None,
    interval: float | None = None,
) -> str:
    """The example config with its ``${USM_DEMO_*}`` filled in: URLs, ports and absolute mail
    folders written out; secrets as ``{ file = ... }`` in ``secrets_dir`` (or inline when
    ``None``); mapping paths made absolute from ``mappings_base`` (the template's folder);
    every ``interval`` replaced when one is given."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise DemoError(f"the example config uses ${{{name}}}, which the demo does not know")
        return variables[name]

    out: list[str] = []
    for line in template.splitlines():
        for name, file_name in _SECRETS.items():
            quoted = f'"${{{name}}}"'
            if quoted in line and secrets_dir is not None:
                secrets_dir.mkdir(parents=True, exist_ok=True)
                secret = secrets_dir / file_name
                secret.write_text(variables[name] + "\n", encoding="utf-8")
                secret.chmod(0o600)
                line = line.replace(quoted, f"{{ file = {_quote(str(secret))} }}")
        line = _VARIABLE.sub(value, line)
        line = re.sub(r'port = "(\d+)"', r"port = \1", line)
        mapping = re.match(r'^mapping = "([^"]+)"(.*)$', line)
        if mapping and not Path(mapping.group(1)).is_absolute():
            resolved = (mappings_base / mapping.group(1)).resolve()
            line = f"mapping = {_quote(str(resolved))}{mapping.group(2)}"
        if interval is not None and re.match(r"^interval = ", line):
            line = f'interval = "{interval:g}s"'
        out.append(line)
    return "\n".join(out) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- narration ------------------------------------------------------------------------------------


class _Narrator:
    def __init__(self, console: Console, started: float) -> None:
        self.console = console
        self.started = started

    def _stamp(self) -> str:
        return f"[dim]{time.monotonic() - self.started:6.1f}s[/]"

    def step(self, number: int, text: str) -> None:
        self.console.print()
        self.console.print(f"{self._stamp()} [bold cyan]Step {number}.[/] [bold]{text}[/]")

    def person(self, who: str, text: str) -> None:
        self.console.print(f"{self._stamp()}   [yellow]{who}[/]: {escape(text)}")

    def bridge(self, text: str) -> None:
        self.console.print(f"{self._stamp()}   [green]bridge[/] {text}")

    def note(self, text: str) -> None:
        self.console.print(f"{self._stamp()}   [dim]{text}[/]")


# --- the run --------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """Where everything is, and what the chain came to."""

    run_dir: Path
    config_path: Path
    store_url: str
    log_file: Path
    report_html: Path | None
    report_markdown: Path | None
    mail_root: Path
    seconds: float
    #: Status of each unit's call of the chain, by unit.
    statuses: dict[str, str] = field(default_factory=dict)
    #: Each unit's reference for its call (HR-1, FAC-1, RITM0010001).
    references: dict[str, str] = field(default_factory=dict)
    #: Write requests each tool served during the quiet cycles at the end (0: no echo).
    quiet_writes: dict[str, int] = field(default_factory=dict)
    enterprise_score: float | None = None
    #: With ``events``: what moved the story (deliveries, wakes, the daemon's cycles).
    events: EventsMoved | None = None
    #: The signed form at each unit: where its tool holds it, and its bytes' SHA-256 there.
    form: dict[str, FormCopy] = field(default_factory=dict)


def _prepare(run_dir: Path) -> Path:
    run_dir = run_dir.resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        if not (run_dir / MARKER).exists():
            raise DemoError(
                f"{run_dir} exists and is not a demo run folder; choose another with --run-dir"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / MARKER).write_text("made by usm-bridge demo; emptied by its next run\n")
    return run_dir


#: An instance failing this many cycles in a row ends the demo (it would not recover).
_FAILURES = 3


class _Waiter:
    """Waits for what a step expects, and gives up early when an instance keeps failing."""

    def __init__(
        self, daemon: Daemon, timeout: float, quiet: Quiet | None = None, log: Path | None = None
    ) -> None:
        self.daemon = daemon
        self.timeout = timeout
        #: With events, "settled" is the daemon quiet for a moment, not more polls.
        self.quiet = quiet
        self.log = log

    def __call__(
        self,
        what: str,
        check: Callable[[], T | None],
        poll: float = 0.05,
        explain: Callable[[], str] | None = None,
    ) -> T:
        """What ``check`` returns once it is something; :class:`DemoError` after the timeout,
        saying what ``explain`` finds then (what is there of what was waited for)."""
        deadline = time.monotonic() + self.timeout
        while True:
            found = check()
            if found is not None and found is not False:
                return found
            for name, slot in self.daemon.schedule.slots.items():
                if slot.failures >= _FAILURES:
                    raise DemoError(
                        f"instance {name} failed {slot.failures} cycles in a row while waiting "
                        f"for {what}: {slot.last_error}"
                    )
            if time.monotonic() > deadline:
                found_then = f" ({explain()})" if explain is not None else ""
                where = f" in {self.log}" if self.log is not None else ""
                raise DemoError(
                    f"timed out after {self.timeout:.0f}s waiting for {what}{found_then}; "
                    f"see the log{where}"
                )
            time.sleep(poll)

    def settled(self, *instances: str, cycles: int = 2) -> None:
        """Until each of ``instances`` ended ``cycles`` more cycles: the last began after this
        call, so it read what the tool holds now (the bridge's own writes included).

        The people of the demo act on a settled chain: a person's change that meets a read of
        the bridge's own write still in flight can be lost (see data/enterprise/README.md,
        "Known limits"), which is the engine's business, not the demo's. With events, the
        chain is settled once the daemon is quiet (:class:`~usm_bridge.demo_events.Quiet`):
        the bridge's own writes come back as events and are read by then."""
        if self.quiet is not None:
            self.quiet.wait(self)
            return
        slots = [self.daemon.schedule.slots[name] for name in instances]
        targets = [slot.cycles + cycles for slot in slots]
        self(
            f"{cycles} more cycles of {', '.join(instances)}",
            lambda: all(s.cycles >= t for s, t in zip(slots, targets, strict=True)) or None,
        )


class _Chain:
    """Reads the onboarding's calls from the store."""

    def __init__(self, store: Store, message_id: str) -> None:
        self.store = store
        self.message_id = message_id

    def hr(self) -> Call | None:
        with self.store.begin(readonly=True) as tx:
            found = tx.find_call("hr-mail", self.message_id)
            return found.call if found is not None else None

    def supplier(self, call: Call | None) -> Call | None:
        if call is None or not call.chain.suppliers:
            return None
        with self.store.begin(readonly=True) as tx:
            found = tx.get_call(call.chain.suppliers[0])
            return found.call if found is not None else None

    def facilities(self) -> Call | None:
        return self.supplier(self.hr())

    def it(self) -> Call | None:
        return self.supplier(self.facilities())


def _status(call: Call | None) -> str:
    if call is None:
        return "-"
    if call.status is Status.WAITING and call.waiting_on is not None:
        return f"waiting on {call.waiting_on.value}"
    return call.status.value.replace("_", " ")


def run_demo(
    run_dir: Path = DEFAULT_RUN_DIR,
    *,
    interval: float | None = None,
    console: Console | None = None,
    step_timeout: float = 60.0,
    quiet_cycles: int = 2,
    report: bool = True,
    program: str = PROGRAM,
    events: bool = False,
) -> DemoResult:
    """Run the demo (see the module docstring); returns where everything is.

    :param interval: every instance's sync interval in seconds (default: the example's).
    :param step_timeout: how long one step may take before the demo gives up.
    :param program: how the follow-up commands printed at the end start usm-bridge (see
        :func:`usm_bridge.demo_commands.invoked_as`).
    :param events: move the work by the tools' events alone, every instance polled only
        every ``interval`` (5 minutes by default): see :mod:`usm_bridge.demo_events`.
    :raises DemoError: a distribution the demo needs is not installed (see
        :mod:`usm_bridge.demo_needs`), a tool did not start or a step did not happen in time.
    """
    from .plugins import PluginHost
    from .runtime import open_runtime
    from .sync.daemon import Daemon
    from .sync.logs import log_to_stream
    from .sync.watchers import watches_of

    console = console or Console(highlight=False)
    started = time.monotonic()
    say = _Narrator(console, started)
    # Before anything starts or the last run is emptied: name every distribution missing.
    if missing := missing_demo_needs():
        raise DemoError(missing_needs_message(missing))
    run_dir = _prepare(run_dir)
    template = (EXAMPLE_DIR / "usm-bridge.toml").read_text(encoding="utf-8")
    if events and interval is None:
        interval = EVENTS_INTERVAL
    log_file = run_dir / "logs" / "usm-bridge.log"
    log_file.parent.mkdir(parents=True)
    console.rule("[bold]usm-bridge demo: one onboarding, three departments, three tools")
    say.note("starting the tools on loopback and replaying IT's real incident log ...")
    tools = start_tools(run_dir / "mail")
    try:
        config_path = run_dir / "usm-bridge.toml"
        text = render_config(
            template,
            tools.variables(),
            mappings_base=EXAMPLE_DIR,
            secrets_dir=run_dir / "secrets",
            interval=interval,
        )
        secret = None
        if events:
            text, secret = with_webhook_secret(text, run_dir / "secrets")
        # Files on their way stay in the run folder: the default spool is the working
        # directory's, and a demo started in a checkout left one in the repository.
        spool = _quote(str(run_dir / "attachments-spool"))
        text += f"\n[attachments]\nspool = {spool}\n"
        config_path.write_text(text, encoding="utf-8")
        config = load_config(config_path)
        _print_setup(console, config, tools)
        # Loaded before the log is set up: it raises to INFO only the connector packages'
        # loggers that exist by then (the e-mail connector says there whose command it obeyed).
        host = PluginHost()
        stop = threading.Event()
        with (
            open_log(log_file) as log_stream,
            log_to_stream("text", level=logging.INFO, stream=log_stream),
            open_runtime(config, host=host, stop=stop) as runtime,
        ):
            store = runtime.store
            names = [n for n, i in config.instances.items() if i.enabled]
            last_success = None
            if events:
                # One first cycle each, then the next poll is an interval away: what moves the
                # story from here is the tools' events.
                say.note("a first cycle of every instance before the daemon starts ...")
                for name in names:
                    runtime.engine.run_cycle(name)
                last_success = dict.fromkeys(names, utcnow())
            daemon = Daemon(
                config,
                runtime.engine,
                stop=stop,
                last_success=last_success,
                watches=watches_of(config, runtime.instances, names) if events else None,
                just_polled=events,
            )
            thread = threading.Thread(target=daemon.run, name="usm-demo-daemon", daemon=True)
            with ExitStack() as receivers:
                if secret is not None:
                    url = receivers.enter_context(event_receivers(config, daemon, tools, secret))
                    say.note(
                        f"event receivers on {url}: Jira's webhook, ServiceNow's business "
                        "rule and HR's mailbox watch wake the daemon"
                    )
                thread.start()
                say.note(
                    "sync daemon started: "
                    + ", ".join(f"{n} every {i.interval:g}s" for n, i in config.instances.items())
                )
                try:
                    quiet = Quiet(daemon, CHAIN, hold=_QUIET_HOLD) if events else None
                    wait = _Waiter(daemon, step_timeout, quiet, log_file)
                    result = _story(say, tools, store, wait)
                    result.quiet_writes = _quiet(say, tools, config, wait, quiet_cycles)
                    if events:
                        result.events = events_moved(daemon)
                        say.note(result.events.line())
                finally:
                    daemon.stop()
                    thread.join(timeout=60)
            say.note("sync daemon stopped")
        html = markdown = None
        score = None
        if report:
            html, markdown, score = _report(config, run_dir)
            say.note(f"conformance report written: enterprise score {score}")
    finally:
        tools.stop()
    seconds = time.monotonic() - started
    outcome = DemoResult(
        run_dir=run_dir,
        config_path=config_path,
        store_url=config.store.url,
        log_file=log_file,
        report_html=html,
        report_markdown=markdown,
        mail_root=tools.mail_root,
        seconds=seconds,
        statuses=result.statuses,
        references=result.references,
        quiet_writes=result.quiet_writes,
        enterprise_score=score,
        events=result.events,
        form=result.form,
    )
    _print_where(console, outcome, program)
    return outcome


def _print_setup(console: Console, config: BridgeConfig, tools: Tools) -> None:
    table = Table(title="The enterprise", title_justify="left", show_edge=False)
    for column in ("unit", "instance", "tool", "where", "interval"):
        table.add_column(column)
    where = {
        "email": f"Maildir {tools.hr_maildir} (answers by SMTP on :{tools.smtp_port})",
        "jira": (
            f"Jira simulator {tools.jira.base_url}, "
            f"project {FACILITIES_PROJECT} (Facilities Service Desk)"
        ),
        "servicenow": f"ServiceNow simulator {tools.snow.base_url}",
    }
    for name, inst in config.instances.items():
        table.add_row(
            inst.unit, name, inst.kind, escape(where.get(inst.kind, "")), f"{inst.interval:g}s"
        )
    console.print(table)
    console.print(
        f"  ServiceNow holds {len(tools.snow.ids('incident'))} real incidents "
        f"({tools.replayed} events of the UCI 498 event log, CC BY 4.0, replayed)."
    )
    for route in config.routes:
        console.print(
            f"  route [bold]{route.name}[/]: {route.from_unit} -> {route.to_unit} when "
            f"{escape(str(route.when))}"
        )


@dataclass
class _StoryResult:
    statuses: dict[str, str]
    references: dict[str, str]
    quiet_writes: dict[str, int] = field(default_factory=dict)
    events: EventsMoved | None = None
    form: dict[str, FormCopy] = field(default_factory=dict)


def _story(say: _Narrator, tools: Tools, store: Store, wait: _Waiter) -> _StoryResult:
    # 1. -----------------------------------------------------------------------------------
    say.step(1, "A hiring manager mails HR, the signed onboarding form attached")
    form = signed_form()
    message_id = tools.deliver_to_hr(SUBJECT, BODY, pdf=(FORM_NAME, form))
    say.person("Hannah (mail to servicedesk@hr.example)", SUBJECT)
    say.person("Hannah (attached)", f"{FORM_NAME} ({len(form)} bytes, a signed PDF)")
    chain = _Chain(store, message_id)
    hr = wait("HR's call", chain.hr)
    hr_ref = _ref(hr)
    say.bridge(
        f"HR mailbox -> HR call [bold]{hr_ref}[/] ({hr.call_type.value.replace('_', ' ')}); "
        "acknowledged to Hannah"
    )
    fac = wait("the Facilities supplier call in Jira", lambda: _sourced(chain.facilities()))
    fac_key = _ref(fac)
    say.bridge(
        f"route hr-to-facilities -> Jira issue [bold]{fac_key}[/] in Facilities' service desk"
    )
    wait("HR's call to wait on Facilities", lambda: _is(chain.hr(), Status.WAITING))
    wait("Hannah's status mail", lambda: _mail_with(tools, "waiting, on supplier"))
    say.bridge(f"{hr_ref} waits on its supplier; Hannah is told so by mail")

    # 2. -----------------------------------------------------------------------------------
    say.step(2, "Facilities does the desk and the badge, and passes the laptop to IT")
    wait.settled(*CHAIN)
    desk = (
        "Desk 4.12 on the fourth floor is reserved for Maria and her badge is printed. "
        "The laptop is IT's: I have passed it on."
    )
    tools.facilities_comment(fac_key, desk)
    tools.facilities_label_and_take(fac_key, IT_LABEL)
    say.person(f"{FACILITIES_AGENT[1]} (Jira {fac_key})", desk)
    say.person(f"{FACILITIES_AGENT[1]} (Jira {fac_key})", f"takes the issue, adds label {IT_LABEL}")
    it = wait("the IT supplier call in ServiceNow", lambda: _sourced(chain.it()))
    it_ref = _ref(it)
    say.bridge(
        f"route facilities-to-it (label {IT_LABEL}) -> ServiceNow requested item [bold]{it_ref}[/]"
    )
    copies = wait(
        "the signed form in Jira and ServiceNow",
        lambda: _form_copies(tools, chain),
        explain=lambda: _form_whereabouts(tools, chain),
    )
    say.bridge(
        f"{FORM_NAME} travels with the request, once to each tool, its SHA-256 equal: "
        + "; ".join(f"{unit}: {copy.where}" for unit, copy in copies.items())
    )
    wait("the Facilities comment in Hannah's mail", lambda: _mail_with(tools, "Desk 4.12"))
    say.bridge("Frank's comment travels up: mailed to Hannah from the HR mailbox")
    wait("Facilities' call to wait on IT", lambda: _is(chain.facilities(), Status.WAITING))
    jira_status = wait(
        "the Facilities issue to leave Open",
        lambda: status if (status := _jira_status(tools, fac_key)) != "Open" else None,
    )
    say.bridge(f"{fac_key} waits on IT (Jira status: {jira_status})")

    # 3. -----------------------------------------------------------------------------------
    say.step(3, "IT works the laptop in ServiceNow")
    wait.settled(*CHAIN)
    sys_id = _sys_id(it)
    laptop = "Laptop ordered: a ThinkPad, imaged and enrolled; it will be on desk 4.12 Monday 8:00."
    tools.it_update(sys_id, {"state": "2", "comments": laptop})
    say.person(f"{IT_AGENT[1]} (ServiceNow {it_ref})", f"Work in Progress; comments: {laptop}")
    wait("IT's comment in Jira", lambda: _jira_comment(tools, fac_key, "ThinkPad"))
    say.bridge(f"Ian's comment travels up one link: a comment on Jira {fac_key}")
    wait.settled(*CHAIN)
    done = "Laptop delivered to desk 4.12."
    tools.it_update(sys_id, {"state": "3", "comments": done})
    say.person(f"{IT_AGENT[1]} (ServiceNow {it_ref})", f"Closed Complete; comments: {done}")
    wait("Facilities to resume", lambda: _is(chain.facilities(), Status.IN_PROGRESS))
    # Frank works from what Jira shows him: the bridge's move to In Progress, once written.
    wait("Jira to show the resumed issue", lambda: _jira_status(tools, fac_key) == "In Progress")
    say.bridge(f"{it_ref} closed -> Facilities' call {fac_key} resumes (Jira: In Progress)")

    # 4. -----------------------------------------------------------------------------------
    say.step(4, "Facilities resolves; HR's call resumes")
    wait.settled(*CHAIN)
    ready = "All set for Maria: desk 4.12, badge and laptop are ready for Monday."
    tools.facilities_comment(fac_key, ready)
    tools.facilities_resolve(fac_key)
    say.person(f"{FACILITIES_AGENT[1]} (Jira {fac_key})", f"{ready} -> Resolved (Done)")
    wait("HR's call to resume", lambda: _is(chain.hr(), Status.IN_PROGRESS))
    say.bridge(f"{fac_key} fulfilled -> HR's call {hr_ref} resumes (in progress)")
    it_done = wait("Facilities to accept IT's item", lambda: _accepted(chain.it()))
    say.bridge(
        f"Facilities delivered using IT's work: {it_ref} is confirmed by Facilities "
        f"({_how(it_done)}); ServiceNow had closed it already (Closed Complete), so the "
        "confirmation is the bridge's record and a work note on the item says so"
    )
    wait("Frank's last comment in Hannah's mail", lambda: _mail_with(tools, "All set"))
    say.bridge("Frank's comment is mailed to Hannah")

    # 5. -----------------------------------------------------------------------------------
    say.step(5, "HR fulfils the request by mail; Hannah confirms")
    wait.settled(*CHAIN)
    # A mailbox has no status field: an agent of the desk replies in the thread with a status
    # command at the top (only the mailbox's agents may; anybody else's stays a plain reply).
    command = "Status: fulfilled"
    tools.deliver_to_hr(f"Re: {SUBJECT}", command, sender=HR_AGENT, in_reply_to=message_id)
    say.person("Hilda, HR agent (reply to servicedesk@hr.example)", command)
    wait("HR's call to be fulfilled", lambda: _is(chain.hr(), Status.FULFILLED))
    say.bridge(
        f"Hilda is one of hr-mail's agents: her command sets {hr_ref} fulfilled (a reply that "
        "is only a command adds no comment)"
    )
    fac_done = wait("Facilities' issue to close", lambda: _is(chain.facilities(), Status.CLOSED))
    wait("Jira to show the issue closed", lambda: _jira_status(tools, fac_key) == "Closed")
    say.bridge(
        f"HR delivered using Facilities' work: {fac_key} is confirmed by HR ({_how(fac_done)}) "
        "and closed (Jira: Closed)"
    )
    request = wait("the confirmation request in Hannah's mail", lambda: _mail_with(tools, "YES"))
    say.bridge(f"asks Hannah to confirm: {escape(str(request['Subject']))}")
    wait.settled(*CHAIN)
    answer = "Yes, everything is there. Thank you!"
    tools.deliver_to_hr(f"Re: {request['Subject']}", answer, in_reply_to=str(request["Message-ID"]))
    say.person("Hannah (reply)", answer)
    wait("HR's call to be confirmed", lambda: _confirmed_by_customer(chain.hr()))
    say.bridge(f"{hr_ref} confirmed by Hannah, the customer")
    wait("HR's call to be closed", lambda: _is(chain.hr(), Status.CLOSED))
    say.bridge(f"{hr_ref} closed after its confirmation: every link of the onboarding is closed")

    calls = {"hr": chain.hr(), "facilities": chain.facilities(), "it": chain.it()}
    return _StoryResult(
        statuses={unit: _status(call) for unit, call in calls.items()},
        references={unit: _ref(call) for unit, call in calls.items() if call is not None},
        form=copies,
    )


def _quiet(
    say: _Narrator, tools: Tools, config: BridgeConfig, wait: _Waiter, cycles: int
) -> dict[str, int]:
    """Let every instance run ``cycles`` more cycles: nothing changed, so nothing is written."""
    if cycles <= 0:
        return {}
    say.step(
        6,
        "Quiet: nobody works; the daemon goes on "
        + ("waiting for events" if wait.quiet else "syncing"),
    )
    wait.settled(*CHAIN)  # Hannah's "Yes" travels on to Facilities as a comment first
    # With events the daemon only works when told: a quiet spell of several debounces shows
    # that nothing echoes (an echo would be a write, its event, a cycle, another write ...).
    if wait.quiet is not None:
        spell = cycles * (config.daemon.event_debounce + wait.quiet.hold)
        what = f"{spell:.1f} s with nobody working (polls 5 minutes apart)"
    else:
        spell = max(inst.interval for inst in config.instances.values()) * 1.1 * cycles + 0.5
        what = f"{cycles} more cycles of every instance"
    before = {
        "jira": tools.jira_writes.count,
        "servicenow": tools.snow_writes.count,
        "mail": tools.delivery.delivered,
    }
    time.sleep(spell)
    after = {
        "jira": tools.jira_writes.count,
        "servicenow": tools.snow_writes.count,
        "mail": tools.delivery.delivered,
    }
    writes = {tool: after[tool] - before[tool] for tool in before}
    say.bridge(
        f"{what}: "
        + ", ".join(f"{n} write(s) to {tool}" for tool, n in writes.items())
        + (" - no echoes, no loops" if not any(writes.values()) else "")
    )
    return writes


def _report(config: BridgeConfig, run_dir: Path) -> tuple[Path, Path, float | None]:
    from .conformance.command import run_conformance_report, write_output

    folder = run_dir / "report"
    html_run = run_conformance_report(config, format="html")
    html = folder / "conformance.html"
    write_output(html, html_run.text)
    markdown = folder / "conformance.md"
    write_output(markdown, run_conformance_report(config, format="markdown").text)
    return html, markdown, html_run.report.enterprise.score


def _print_where(console: Console, result: DemoResult, program: str) -> None:
    console.print()
    console.rule("[bold]Done")
    table = Table(title="The onboarding's calls", title_justify="left", show_edge=False)
    for column in ("unit", "tool reference", "status"):
        table.add_column(column)
    for unit, status in result.statuses.items():
        table.add_row(unit, result.references.get(unit, "-"), status)
    console.print(table)
    cwd = Path.cwd()

    def show(path: Path | None) -> str:
        if path is None:
            return "(not written)"
        try:
            return str(path.relative_to(cwd))
        except ValueError:
            return str(path)

    config = show(result.config_path)
    lines = [
        ("config", config),
        ("store", result.store_url),
        ("log", show(result.log_file)),
        ("report", f"{show(result.report_html)}  (and {show(result.report_markdown)})"),
        ("HR mailbox", f"{show(result.mail_root / 'hr')}  (answers sent: .Sent)"),
        ("Hannah's mail", show(result.mail_root / "hannah")),
    ]
    lines += [
        (f"form at {unit}", f"{copy.where}  (SHA-256 {copy.sha256[:16]}...)")
        for unit, copy in result.form.items()
    ]
    for label, value in lines:
        console.print(f"  [bold]{label:<18}[/] {escape(value)}")
    console.print(f"  finished in {result.seconds:.1f}s. Look around with:")
    for command in follow_up_commands(program, config, result.references.get("hr")):
        # Never wrapped: a command broken over two lines would not work when pasted.
        console.print(f"    {escape(command)}", soft_wrap=True)


# --- small readers --------------------------------------------------------------------------------


def _ref(call: Call | None) -> str:
    if call is None or call.source is None:
        return "?"
    return call.source.remote_key or call.source.remote_id


def _sourced(call: Call | None) -> Call | None:
    """The call once its tool holds it (its create was pushed and read back)."""
    return call if call is not None and call.source is not None else None


def _is(call: Call | None, status: Status) -> Call | None:
    return call if call is not None and call.status is status else None


def _accepted(call: Call | None) -> Call | None:
    """The supplier call once its customer's acceptance is recorded on it."""
    return call if call is not None and call.confirmation is not None else None


def _how(call: Call) -> str:
    assert call.confirmation is not None
    return f"{call.confirmation.kind.value}: {call.confirmation.how}"


def _confirmed_by_customer(call: Call | None) -> Call | None:
    """The call once its customer confirmed it (the bridge may have closed it since)."""
    if call is None or call.confirmed is None:
        return None
    return call if call.status in (Status.CONFIRMED, Status.CLOSED) else None


def _sys_id(call: Call) -> str:
    assert call.source is not None
    return call.source.remote_id


def _mail_with(tools: Tools, text: str) -> EmailMessage | None:
    """The newest mail in Hannah's Maildir whose text holds ``text``."""
    for message in reversed(tools.inbox("hannah")):
        body = message.get_body(("plain",))
        content: object = body.get_content() if body is not None else ""
        if text in str(content):
            found: EmailMessage = message
            return found
    return None


def _jira_status(tools: Tools, key: str) -> str | None:
    site = tools.jira.site
    with site.lock:
        issue = site.issue(key)
        return site.statuses[issue.status_id].name if issue is not None else None


def _jira_comment(tools: Tools, key: str, text: str) -> bool | None:
    adf_text = _module("usm_bridge_jira.simulator.state").adf_text
    site = tools.jira.site
    with site.lock:
        issue = site.issue(key)
        if issue is None:
            return None
        return any(text in str(adf_text(c.body)) for c in issue.comments) or None


def _form_copies(tools: Tools, chain: _Chain) -> dict[str, FormCopy] | None:
    """The signed form as each unit's tool holds it, once every one does: where, and the
    SHA-256 of the bytes read there (HR's mailbox, Facilities' Jira issue, IT's item)."""
    found = _form_copies_found(tools, chain)
    return found if len(found) == 3 else None


def _form_copies_found(tools: Tools, chain: _Chain) -> dict[str, FormCopy]:
    """The signed form as the tools that hold it so far hold it (see :func:`_form_copies`)."""
    hr, fac, it = chain.hr(), chain.facilities(), chain.it()
    if hr is None or fac is None or it is None or fac.source is None or it.source is None:
        return {}
    found: dict[str, FormCopy] = {}
    for message in _hr_mail(tools):
        for part in message.iter_attachments():
            if part.get_filename() == FORM_NAME:
                content = part.get_content()
                found["hr"] = FormCopy(
                    f"HR mailbox, mail {message['Message-ID']}", hashlib.sha256(content).hexdigest()
                )
    site = tools.jira.site
    with site.lock:
        issue = site.issue(fac.source.remote_key or fac.source.remote_id)
        for attachment in issue.attachments if issue is not None else ():
            if attachment.filename == FORM_NAME:
                found["facilities"] = FormCopy(
                    f"Jira {fac.source.remote_key}, attachment {attachment.id}",
                    hashlib.sha256(attachment.path.read_bytes()).hexdigest(),
                )
    for copy in (a for a in it.attachments if a.name == FORM_NAME and a.source is not None):
        assert copy.source is not None
        path = tools.snow.attachments.path_of(copy.source.remote_id)
        if path.is_file():
            found["it"] = FormCopy(
                f"ServiceNow {it.source.remote_key}, sys_attachment {copy.source.remote_id}",
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
    return found


def _form_whereabouts(tools: Tools, chain: _Chain) -> str:
    """Where the signed form is found so far, and each call's files as the store lists them
    (the copy each names, or why it could not travel): what a timed-out wait reports."""
    held = _form_copies_found(tools, chain)
    parts = [f"found in: {', '.join(sorted(held)) or 'no tool'}"]
    for unit, call in (("hr", chain.hr()), ("facilities", chain.facilities()), ("it", chain.it())):
        if call is None:
            parts.append(f"{unit}: no call")
            continue
        files = [
            (f"{a.name} from {a.source.instance}:{a.source.remote_id}" if a.source else a.name)
            + (f", refused: {a.refused}" if a.refused else "")
            for a in call.attachments
        ]
        parts.append(f"{unit} call {call.id}: {'; '.join(files) or 'no files'}")
    return "; ".join(parts)


def _hr_mail(tools: Tools) -> list[EmailMessage]:
    """Every mail HR's Maildir holds (its inbox folders, not the bridge's ``.Sent``)."""
    found = []
    for message in mailbox.Maildir(tools.hr_maildir, factory=None, create=False):
        parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(parsed)
    return found
