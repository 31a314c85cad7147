"""The workers' part of ``usm-bridge status`` as tables (:mod:`.inspection` collects it)."""

from __future__ import annotations

from datetime import timedelta

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from ..sync.console import format_lag
from .inspection import ActiveTask, WorkersView
from .send_log import QueueAge

__all__ = ["workers_renderables"]


def workers_renderables(view: WorkersView) -> list[RenderableType]:
    """The workers and the queues, or one line saying why they are not known."""
    if view.broker_problem is not None:
        return [f"[yellow]workers:[/] {escape(view.broker_problem)}"]
    shown: list[RenderableType] = []
    if view.workers:
        workers = Table(title=f"workers ({escape(view.broker)})")
        for column in ("worker", "queues", "running"):
            workers.add_column(column, overflow="fold")
        for worker in view.workers:
            running = (
                ", ".join(_task(task) for task in worker.active) or "idle"
                if worker.active_known
                else "did not say what it runs in time"
            )
            workers.add_row(escape(worker.name), escape(" ".join(worker.queues)), escape(running))
        shown.append(workers)
    else:
        shown.append(f"[yellow]workers:[/] {escape(view.workers_problem or 'none')}")
    queues = Table(title=f"queues ({escape(view.broker)})")
    queues.add_column("queue", overflow="fold")
    queues.add_column("instance", overflow="fold")
    queues.add_column("waiting", justify="right")
    queues.add_column("oldest waiting", overflow="fold")
    for queue in view.queues:
        oldest = _age(queue.oldest) if queue.waiting else "-"
        queues.add_row(escape(queue.queue), escape(queue.instance), str(queue.waiting), oldest)
    shown.append(queues)
    if view.age_problem is not None:
        shown.append(f"[yellow]queues:[/] {escape(view.age_problem)}")
    return shown


def _task(task: ActiveTask) -> str:
    seconds = task.running_seconds
    running = "" if seconds is None else f" for {format_lag(timedelta(seconds=seconds))}"
    return f"{task.task} {task.instance or '?'}{running}"


def _age(age: QueueAge | None) -> str:
    if age is None:
        return "unknown"
    text = format_lag(timedelta(seconds=age.seconds))
    return text if age.exact else f"at least {text}"
