"""One pass over a report's calls, feeding every check and view that reads them.

A report over a million calls reads each call once: the built-in data checks, the process
views and the chain view are *feeds*, each fed every page of calls in turn
(:meth:`ReportContext.pages`) and keeping only what its outcome shows: counts, the exact time
samples as compact arrays, and the exceptions found (each as its evidence, never the call).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .api import CheckOutcome, Evidence
from .evidence_spool import SpooledEvidence

if TYPE_CHECKING:
    from .context import ReportContext

__all__ = ["CallFeed", "FedCheck", "UnitTally", "read_pages", "run_fed"]


@runtime_checkable
class CallFeed(Protocol):
    """Something that reads the report's calls page by page."""

    def start(self, context: ReportContext) -> None:
        """Forget any earlier pass: a pass starts."""

    def feed(self, context: ReportContext) -> None:
        """Read the context's current page (:meth:`ReportContext.page_calls` and the rest)."""


@runtime_checkable
class FedCheck(CallFeed, Protocol):
    """A conformance check that reads the calls as a feed, and gives its outcomes after."""

    id: str
    title: str

    def finish(self, context: ReportContext) -> list[CheckOutcome]:
        """The outcomes of what the pass fed it."""


def read_pages(
    context: ReportContext,
    feeds: Sequence[CallFeed],
    failed: Callable[[CallFeed, Exception], None],
) -> None:
    """Feed every page of the context to every feed. A feed that raises is given to
    ``failed`` and fed no more; the others go on."""
    live: list[CallFeed] = []
    for feed in feeds:
        try:
            feed.start(context)
            live.append(feed)
        except Exception as exc:
            failed(feed, exc)
    for _ in context.pages():
        for feed in list(live):
            try:
                feed.feed(context)
            except Exception as exc:
                live.remove(feed)
                failed(feed, exc)


def _raise(_: CallFeed, exc: Exception) -> None:
    raise exc


def run_fed(context: ReportContext, check: FedCheck) -> list[CheckOutcome]:
    """A fed check run on its own: a pass of its own, then its outcomes."""
    read_pages(context, [check], _raise)
    return check.finish(context)


@dataclass
class UnitTally:
    """What a data check keeps of one unit's calls while they stream by."""

    #: The unit's calls in the period.
    calls: int = 0
    #: The items the check tested.
    population: int = 0
    #: The evidence of each exception, in the order the calls came (a fed check's tally
    #: spools it: :meth:`spooled`).
    evidence: list[Evidence] | SpooledEvidence = field(default_factory=list)
    #: Additive figures for the metrics, by name.
    counts: Counter[str] = field(default_factory=Counter)
    #: Figures counted by key (a key's first sighting decides its place among equals).
    keyed: dict[str, Counter[str]] = field(default_factory=dict)
    #: Largest values seen, by name.
    maxima: dict[str, float] = field(default_factory=dict)
    #: With a sample asked for: every population item as (key, (what, the call's evidence)).
    items: list[tuple[str, tuple[str, Evidence]]] = field(default_factory=list)
    #: With a sample asked for: each exception's details, by call id.
    found: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def spooled(cls, context: ReportContext) -> UnitTally:
        """An empty tally whose evidence goes to the report's spool."""
        return cls(evidence=context.evidence_list())

    def most(self, name: str, value: float) -> None:
        """Keep ``value`` if it is the largest ``name`` so far."""
        self.maxima[name] = max(self.maxima.get(name, value), value)

    def by_key(self, name: str) -> Counter[str]:
        """The counter ``name`` (made empty on first use)."""
        return self.keyed.setdefault(name, Counter())
