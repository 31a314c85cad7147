"""``usm-bridge worker`` and ``usm-bridge scheduler`` (see docs/workers.md).

Celery is imported when one of them runs, never when the ``usm-bridge`` command starts.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..cli import (
    EXIT_USAGE,
    _escape,
    _fail,
    _selected_instances,
    config_option,
    friendly_errors,
)
from ..config import default_config_path, load_config

if TYPE_CHECKING:
    from .worker_metrics import WorkerMetrics

__all__ = ["scheduler", "worker"]

log = logging.getLogger(__name__)


@click.command()
@config_option
@click.option(
    "--instance",
    "-i",
    "instances",
    multiple=True,
    metavar="NAME",
    help="Serve this instance's queue (repeatable). Default: every enabled instance's.",
)
@click.option(
    "--concurrency",
    "-n",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Tasks run at once by this worker (processes of the pool).",
)
@click.option(
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default="prefork",
    show_default=True,
    help="Celery's pool. Only prefork enforces [workers] time_limit and soft_time_limit.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    metavar="PORT",
    help="Serve /metrics and /healthz on this port (0: any free one, logged). Default: off.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    metavar="HOST",
    help="The address /metrics listens on (with --metrics-port).",
)
@click.pass_context
@friendly_errors
def worker(
    ctx: click.Context,
    config_path: Path | None,
    instances: tuple[str, ...],
    concurrency: int,
    pool: str,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run a Celery worker of the bridge: the cycles and pushes of some or all instances.

    \b
    Each instance has its own queue ([workers] queue_prefix + its name, tool.NAME by
    default); a worker serves the queues of the instances named with -i, else of every
    enabled one. Start as many workers, on as many machines, as the tools need: at most one
    cycle per instance and one push per target run at once anywhere (locks in the store,
    which die with their holder). The broker is [workers] broker_url (Redis or RabbitMQ);
    the store must be PostgreSQL when workers run on several machines.

    \b
    With --metrics-port, the worker serves /metrics (Prometheus: the daemon's cycle and
    push metrics, each labelled with the worker's hostname) and /healthz.

    \b
    Example:
      usm-bridge worker -c /etc/usm-bridge.toml -i it-snow -n 4 --metrics-port 9101
    """
    from ..sync.logs import log_to_stream
    from .app import make_app, safe_broker_url
    from .celery_logging import log_celery_through_the_bridge
    from .tasks import WorkerRuntime, bind_tasks, queue_of
    from .worker_metrics import WorkerMetrics

    config = load_config(config_path or default_config_path())
    names = _selected_instances(config, instances)
    app = make_app(config)
    runtime = WorkerRuntime(config)
    # Unique per process, so several workers on one host do not clash; also the hostname
    # label of its metrics.
    hostname = f"usm-bridge-{os.getpid()}@{socket.gethostname()}"
    metrics = None if metrics_port is None else WorkerMetrics(names, hostname)
    bind_tasks(app, runtime, metrics)
    log_celery_through_the_bridge(app)

    from celery.signals import worker_process_shutdown

    @worker_process_shutdown.connect(weak=False)
    def _close_runtime(**_: object) -> None:
        runtime.close()

    queues = ",".join(queue_of(config, name) for name in names)
    debug = bool(ctx.obj.get("debug")) if ctx.obj else False
    level = logging.DEBUG if debug else logging.INFO
    with log_to_stream(config.daemon.log_format, level=level):
        log.info("worker on %s, queues %s", safe_broker_url(config), queues,
                 extra={"event": "worker_started"})  # fmt: skip
        with ExitStack() as serving:
            if metrics is not None:
                serving.enter_context(_serve_metrics(metrics, metrics_host, metrics_port or 0))
            try:
                app.worker_main(
                    [
                        "worker",
                        f"--queues={queues}",
                        f"--concurrency={concurrency}",
                        f"--pool={pool}",
                        f"--loglevel={logging.getLevelName(level)}",
                        f"--hostname={hostname}",
                        # Workers need not know each other: the locks are in the store.
                        "--without-mingle",
                        "--without-gossip",
                    ]
                )
            finally:
                runtime.close()


@contextmanager
def _serve_metrics(metrics: WorkerMetrics, host: str, port: int) -> Iterator[None]:
    """/metrics and /healthz of a worker, for as long as it runs."""
    from ..errors import ConfigurationError
    from ..sync.metrics import Health, MetricsServer

    try:
        server = MetricsServer(
            host, port, metrics, lambda: Health(True, {"status": "ok", "worker": metrics.hostname})
        )
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve /metrics on {host}:{port}: {exc.strerror or exc}"
        ) from None
    metrics.start()
    with server:
        log.info("serving %s/metrics", server.url,
                 extra={"event": "metrics_listening", "url": server.url})  # fmt: skip
        try:
            yield
        finally:
            metrics.close()


@click.command()
@config_option
@click.option(
    "--wait",
    is_flag=True,
    help="If another scheduler runs on the same store, stand by and take over when it stops "
    "(default: exit 2 at once, naming it).",
)
@friendly_errors
def scheduler(config_path: Path | None, wait: bool) -> None:
    """Enqueue each enabled instance's cycle on its interval, for the workers.

    \b
    Each instance's cycle is sent to its queue every `interval` seconds of its config,
    give or take 10 %, unless a task still waits in that queue (the tool is behind: the
    turn is left out); one not started within its interval is dropped.
    An instance whose cycles fail is backed off as in the daemon (up to 10 intervals
    or 30 minutes); the others keep their interval.
    One scheduler per store: a second one exits 2 naming the first, or stands by with
    --wait. SIGTERM or Ctrl-C stops it.

    \b
    Example:
      usm-bridge scheduler -c /etc/usm-bridge.toml --wait
    """
    from ..store import Store
    from ..store.locks import LockHeldError
    from ..sync.logs import log_to_stream
    from ..sync.signals import stop_on_signals
    from .app import make_app, safe_broker_url
    from .backlog import enqueue_cycle_if_idle
    from .scheduler import CycleSchedule, run_schedule, stored_failures, take_scheduler_lock
    from .send_log import on_rabbitmq, store_recorder

    # It talks to the broker and the store, never to a tool.
    config = load_config(config_path or default_config_path(), tool_secrets=False)
    names = _selected_instances(config, ())
    stop = threading.Event()
    with (
        stop_on_signals(stop.set),
        log_to_stream(config.daemon.log_format),
        Store.open(config.store.url) as store,
    ):
        try:
            if not take_scheduler_lock(store, wait=wait, stop=stop):
                return
        except LockHeldError as exc:
            _fail(_escape(str(exc)), EXIT_USAGE)
        app = make_app(config)
        log.info("scheduler of %d instance(s) on %s", len(names), safe_broker_url(config),
                 extra={"event": "scheduler_started"})  # fmt: skip
        schedule = CycleSchedule(
            {name: config.instances[name].interval for name in names}, time.monotonic()
        )
        record = store_recorder(store) if on_rabbitmq(config) else None
        run_schedule(
            schedule,
            # Only to an empty queue: a queue behind its schedule never piles up (.backlog).
            lambda name: enqueue_cycle_if_idle(app, config, name, record=record),
            stop,
            failures=lambda: stored_failures(store),
        )
