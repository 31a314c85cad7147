"""What ``usm-bridge sync --once`` and ``usm-bridge status`` print: summaries, a progress bar
for long backfills (on a terminal only), and the status table.

``sync --once --census`` keeps the time of each census it runs where the daemon keeps its own
(``instance_states.last_census``), so the daemon's census schedule and ``status`` know of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .status import StatusReport
from .summary import CycleProgress, CycleSummary
from .waiting import WaitingItem

if TYPE_CHECKING:
    from .engine import SyncEngine

__all__ = [
    "OnceResult",
    "format_lag",
    "print_once",
    "run_once",
    "status_table",
    "waiting_table",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnceResult:
    """One instance's cycle in ``sync --once``; ``summary`` is ``None`` when the engine raised."""

    instance: str
    ok: bool
    error: str | None
    summary: CycleSummary | None
    #: Records the census newly marked vanished (``None``: no census ran, or it failed).
    census: int | None = None
    census_error: str | None = None

    @property
    def skipped(self) -> str | None:
        """Why the cycle did not run (its instance runs in another process), if it did not."""
        return None if self.summary is None else self.summary.skipped

    @property
    def seconds(self) -> float | None:
        if self.summary is None:
            return None
        return (self.summary.finished - self.summary.started).total_seconds()

    def as_json(self) -> dict[str, Any]:
        summary = self.summary
        return {
            "instance": self.instance,
            "ok": self.ok,
            "error": self.error,
            "started": summary.started.isoformat() if summary else None,
            "finished": summary.finished.isoformat() if summary else None,
            "counters": summary.counters() if summary else {},
            "census": self.census,
            "census_error": self.census_error,
            "skipped": self.skipped,
        }


@contextmanager
def _progress_bar(console: Console | None) -> Iterator[Callable[[str], Callable[..., None]]]:
    """Yields ``start(instance) -> callback``; the bar is drawn only on a terminal."""
    if console is None or not console.is_terminal:
        yield lambda _name: lambda _progress: None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),  # no total is known: the bar pulses
        TextColumn("read {task.fields[read]:>7,}  stored {task.fields[stored]:>7,}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:

        def start(name: str) -> Callable[[CycleProgress], None]:
            task: TaskID = bar.add_task(escape(name), total=None, read=0, stored=0)

            def update(progress: CycleProgress) -> None:
                bar.update(task, read=progress.read, stored=progress.stored)

            return update

        yield start


def run_once(
    engine: SyncEngine,
    instances: Sequence[str],
    *,
    stop: threading.Event,
    census: bool = False,
    record_census: Callable[[str, datetime], None] | None = None,
    progress_console: Console | None = None,
    on_result: Callable[[OnceResult], None] | None = None,
) -> list[OnceResult]:
    """One cycle of each instance in turn (and a census after it with ``census``); stops
    starting new ones once ``stop`` is set.

    :param record_census: called with the instance and the time a census started, once it ran
        (failed or not, as the daemon books it), to keep it in the store; a failure to keep
        it is logged, the census stands.
    """
    results: list[OnceResult] = []
    with _progress_bar(progress_console) as start:
        for name in instances:
            if stop.is_set():
                break
            try:
                summary = engine.run_cycle(name, progress=start(name))
            except Exception as exc:
                log.debug("cycle %s raised", name, exc_info=True)
                result = OnceResult(name, False, f"{type(exc).__name__}: {exc}", None)
            else:
                result = OnceResult(name, summary.ok, summary.error, summary)
            if census and result.ok and result.skipped is None and not stop.is_set():
                at = datetime.now(UTC)
                try:
                    result = _with_census(result, engine.census(name), None)
                except Exception as exc:
                    result = _with_census(result, None, f"{type(exc).__name__}: {exc}")
                _keep_census(record_census, name, at)
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results


def _keep_census(
    record: Callable[[str, datetime], None] | None, instance: str, at: datetime
) -> None:
    if record is None:
        return
    try:
        record(instance, at)
    except Exception as exc:  # the census ran; the daemon's schedule merely runs it again early
        log.warning("cannot record the census of %s in the store: %s: %s", instance,
                    type(exc).__name__, exc)  # fmt: skip


def _with_census(result: OnceResult, count: int | None, error: str | None) -> OnceResult:
    return OnceResult(
        result.instance, result.ok and error is None, result.error, result.summary, count, error
    )


_LABELS = {"dead_letters": "dead letters"}


def print_once(console: Console, result: OnceResult) -> None:
    """One line per cycle: outcome, instance, duration, counters or the error."""
    if result.skipped is not None:
        console.print(f"[yellow]skipped[/] {escape(result.instance)}: {escape(result.skipped)}")
        return
    seconds = f"{result.seconds:.1f}s" if result.seconds is not None else "-"
    counters = result.summary.counters() if result.summary is not None else {}
    text = ", ".join(f"{_LABELS.get(k, k)} {v}" for k, v in counters.items())
    mark = "[green]ok[/]    " if result.ok else "[red]failed[/]"
    line = f"{mark} {escape(result.instance)}  {seconds}"
    if text:
        line += f"  {escape(text)}"
    if result.census is not None:
        # What SyncEngine.census returns: the records it found gone, not those it listed.
        line += f"; census: {result.census} newly vanished"
    console.print(line)
    if result.error:
        console.print(f"       [red]error:[/] {escape(result.error)}")
    if result.census_error:
        console.print(f"       [red]census failed:[/] {escape(result.census_error)}")


def format_lag(lag: timedelta | None) -> str:
    """``42s``, ``3m 05s``, ``2h 10m``, ``4d 3h``; ``-`` when unknown."""
    if lag is None:
        return "-"
    seconds = int(lag.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


_STATE_STYLE = {
    "ok": "green",
    "late": "yellow",
    "failing": "red",
    "never synced": "yellow",
    "disabled": "dim",
}


def _ago(now: datetime, moment: datetime | None) -> str:
    # An age, not a time: the table stays narrow enough for the last error on one line.
    return "-" if moment is None else f"{format_lag(max(now - moment, timedelta(0)))} ago"


def status_table(report: StatusReport) -> Table:
    table = Table(title=f"usm-bridge status ({escape(report.store)})")
    for column in ("instance", "unit", "state", "last success (UTC)", "lag", "backlog"):
        table.add_column(column, overflow="fold")
    table.add_column("dead letters", justify="right")
    table.add_column("failures", justify="right")
    table.add_column("last census", overflow="fold")
    table.add_column("last error", overflow="fold")
    for row in report.instances:
        success = row.last_success
        style = _STATE_STYLE[row.state]
        table.add_row(
            escape(row.instance),
            escape(row.unit),
            f"[{style}]{row.state}[/]",
            success.strftime("%Y-%m-%d %H:%M:%S") if success else "-",
            format_lag(row.lag),
            str(row.backlog),
            str(row.dead_letters),
            str(row.consecutive_failures),
            _ago(row.now, row.stored.last_census if row.stored else None),
            escape((row.last_error or "")[:200]) or "-",
        )
    return table


def waiting_table(items: Sequence[WaitingItem], *, now: datetime, title: str) -> Table:
    """Writes waiting in the outbox: target, record, attempts, next try and the last error."""
    table = Table(title=escape(title))
    for column in ("id", "target", "record", "operation"):
        table.add_column(column, overflow="fold")
    table.add_column("attempts", justify="right")
    table.add_column("next try", overflow="fold")
    table.add_column("waiting since", overflow="fold")
    table.add_column("last error", overflow="fold")
    for item in items:
        due = item.next_attempt_at
        table.add_row(
            str(item.id),
            escape(item.target),
            escape(item.record or f"(new) {item.call_id}"),
            escape(item.operation),
            str(item.attempts),
            "now" if due <= now else f"in {format_lag(due - now)}",
            _ago(now, item.since),
            escape(item.why[:200]),
        )
    return table
