"""A page of mapped records stored in one unit of work, with a few statements for the whole page.

:meth:`.ingest.IngestStage.ingest_page` maps a page, then hands it here. The page is stored in
one unit of work through a :class:`~usm_bridge.store.page_transaction.PageTransaction`: its
records' rows are read with one query per table when it begins (after its chains are locked,
on PostgreSQL), each record goes through the same steps as alone
(:meth:`.ingest.IngestStage.store_in`: merge, store, recognise the echo, route) against them,
and what they write goes out in batches at the end. A backfill page of a hundred records is a
dozen statements instead of some seventeen hundred.

When the page's unit of work fails, nothing of it is kept, and:

- a conflict with another unit of work (:class:`~usm_bridge.store.StoreConflictError`) stores
  the page again, ``STORE_ATTEMPTS`` times at most;
- anything else (a record that breaks a constraint, a plugin's bug), or conflicts every time,
  stores the page again record by record, each in its own unit of work
  (:meth:`.ingest.IngestStage.store_record`), so that the record to blame becomes a dead letter
  and the others are stored.

A page that ends at a checkpoint hands its cursor (a :class:`PageEnd`) along: when every
record of the page is stored in the page's unit of work, the cursor is saved in it too, so the
page costs one commit, not two (on PostgreSQL a commit is a round trip and a flush of the
server's log). Saving it there is what the engine did in a unit of work of its own right after:
the cursor moves only past records that are stored. A page with a dead letter, stopped
early, or stored record by record leaves the cursor to the engine, after the dead letters.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from ..connector import RawRecord, RemoteDraft
from ..model import Call
from ..store import StoreConflictError
from ..store.page_transaction import PageTransaction
from .forks import FORK_REFUSED
from .references import UNKNOWN_REFERENCE
from .router import AUDITS_READ

if TYPE_CHECKING:
    from .ingest import IngestStage, RecordOutcome

__all__ = ["Mapped", "MappedRecord", "PageEnd", "store_page"]

log = logging.getLogger(__name__)

#: A record the mapping took: its instance, the record, its call and its outbound draft.
Mapped: TypeAlias = tuple[str, RawRecord, Call, RemoteDraft | None]
#: A page's record once mapped: ready to store, or its ``map`` dead letter outcome.
MappedRecord: TypeAlias = "RecordOutcome | Mapped"


@dataclass
class PageEnd:
    """The cursor of the checkpoint a page ends at, and whether the page's unit of work saved
    it (see the module docstring)."""

    instance: str
    cursor: str
    stored: bool = False


def store_page(
    stage: IngestStage,
    instance: str,
    page: list[MappedRecord],
    *,
    stop: threading.Event | None = None,
    end: PageEnd | None = None,
) -> list[RecordOutcome]:
    """One outcome per record of ``page``, in order, once stored (see the module docstring);
    when ``stop`` is set, the records after the one in flight get none. ``end``: the cursor
    ``page`` (all of the records before it) ends at, saved with them when all are stored."""
    if not any(isinstance(item, tuple) for item in page):
        return [item for item in page if not isinstance(item, tuple)]
    # Imported here: the attempts are the ingest stage's, which imports this module.
    from .ingest import STORE_ATTEMPTS

    attempt = 1
    while True:
        try:
            return _store_together(stage, instance, page, stop, end)
        except StoreConflictError as exc:
            if attempt < STORE_ATTEMPTS:
                log.info("storing a page of %d records of %s met another cycle (%s); again",
                         len(page), instance, exc)  # fmt: skip
                attempt += 1
                continue
            reason = str(exc)
        except Exception as exc:  # a record the page's unit of work cannot take
            reason = f"{type(exc).__name__}: {exc}"
        log.info("storing a page of %d records of %s together failed (%s); one by one",
                 len(page), instance, reason)  # fmt: skip
        return _store_each(stage, page, stop)


def _store_together(
    stage: IngestStage,
    instance: str,
    page: list[MappedRecord],
    stop: threading.Event | None,
    end: PageEnd | None,
) -> list[RecordOutcome]:
    calls = [item[2] for item in page if isinstance(item, tuple)]
    remote_ids = {item[1].remote_id for item in page if isinstance(item, tuple)}
    remote_ids |= {call.source.remote_id for call in calls if call.source is not None}
    comment_ids = {
        comment.remote_id
        for call in calls
        for comment in call.comments
        if comment.public and comment.origin == instance and comment.remote_id is not None
    }
    references = {
        fork.ref for call in calls if call.source is not None for fork in call.chain.forks
    }
    outcomes: list[RecordOutcome] = []
    with stage.store.begin() as tx:
        page_tx = PageTransaction.begin(
            tx, instance, remote_ids, comment_ids=comment_ids, references=references,
            audit_kinds=(UNKNOWN_REFERENCE, FORK_REFUSED, *AUDITS_READ),
        )  # fmt: skip
        for item in page:
            if isinstance(item, tuple):
                outcomes.append(stage.store_in(page_tx.as_transaction(), *item))
            else:
                outcomes.append(item)
            if stop is not None and stop.is_set():
                break
        page_tx.flush()
        # Every record mapped and stored here (a map dead letter is written after the page).
        complete = len(outcomes) == len(page) and all(isinstance(item, tuple) for item in page)
        saves_cursor = end is not None and complete and not (stop is not None and stop.is_set())
        if end is not None and saves_cursor:
            tx.set_cursor(end.instance, end.cursor)
    if end is not None:
        end.stored = saves_cursor  # once committed (an attempt again starts with it unset)
    return outcomes


def _store_each(
    stage: IngestStage, page: list[MappedRecord], stop: threading.Event | None
) -> list[RecordOutcome]:
    outcomes: list[RecordOutcome] = []
    for item in page:
        outcomes.append(stage.store_record(*item) if isinstance(item, tuple) else item)
        if stop is not None and stop.is_set():
            break
    return outcomes
