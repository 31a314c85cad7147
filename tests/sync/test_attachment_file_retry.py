"""Files a tool would not let the bridge read for now (issue #20 follow-up): a 403 on one file
holds up nothing else, and the file is read again later, with a back-off, until it travels.

Facilities' Jira (Cloud simulator) refuses the download of one file with 403 while its other
files, its record and the records after it are read; the bridge lists that file as not read
for now with a dead letter naming the 403, and reads it again: on the record's next change,
and without one on later cycles, the wait doubling from the instance's interval (1 s here).
The tests move the engine's clock (``open_runtime(clock=...)``) instead of sleeping, and count
the simulator's requests. Every file a test attaches has its outcome asserted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from e2e.held_upload import HeldUpload, kill_when_held, sync_once
from usm_bridge_jira.simulator import JiraSimulator
from usm_bridge_jira.simulator.replies import errors

from sync.memory_files import files_bridge, files_config, sha
from sync.memory_tool import Clock
from usm_bridge.dead_letters import retry_dead_letters
from usm_bridge.errors import PermanentRemoteError, RetriableRemoteError, UntrustedURLError
from usm_bridge.runtime import open_runtime
from usm_bridge.store import Store
from usm_bridge.sync.engine import SyncEngine
from usm_bridge.sync.ingest import Outcome

from .test_attachment_flow import (
    FORM,
    NO_PDF,
    NOTES,
    Chain,
    _policy,
    _sha,
    calls,
    dead_letters,
)

ONE_MIB = "  max_size: 1MiB\n"
HR = "hr-tool"
CONTENT = "/attachment/content/"


class Refusing:
    """Facilities' Jira answers 403 to the download of the files ``ids`` while :attr:`on`;
    :attr:`refused` counts the 403s, :attr:`served` the downloads of those files served."""

    def __init__(self, sim: JiraSimulator, ids: set[str]) -> None:
        self.on = True
        self.refused = 0
        self.served = 0
        answer = sim.answer

        def refusing(method: str, path: str, *rest: Any) -> Any:
            hit = method == "GET" and CONTENT in path and path.rsplit("/", 1)[-1] in ids
            if hit and self.on:
                self.refused += 1
                return errors(403, "You do not have permission to view this attachment.")
            if hit:
                self.served += 1
            return answer(method, path, *rest)

        sim.answer = refusing  # type: ignore[method-assign]


@contextmanager
def _chain(tmp: Path, store_url: str, fac_policy: str = ONE_MIB) -> Iterator[Chain]:
    chain = Chain(tmp, store_url, ONE_MIB, fac_policy)
    try:
        yield chain
    finally:
        chain.stop()


def _cycle(engine: SyncEngine, *names: str) -> None:
    for name in names or ("fac-jira", "it-jira"):
        summary = engine.run_cycle(name)
        assert summary.ok, summary.error


def _files(engine: SyncEngine, unit: str) -> dict[str, dict[str, tuple[str | None, str | None]]]:
    """Each call of the unit by title: its files, each with (why refused, on what basis)."""
    return {
        c.title: {a.name: (a.refused, a.refused_under) for a in c.attachments}
        for c in calls(engine, unit)
    }


def _retry_rows(engine: SyncEngine) -> list[tuple[str, int]]:
    with engine.store.begin(readonly=True) as tx:
        rows = tx.connection.execute(sa.text("SELECT file_id, attempts FROM file_retries"))
        return [(str(f), int(a)) for f, a in rows]


def _it_files(chain: Chain) -> dict[str, list[tuple[str, str]]]:
    return {
        issue.summary: [(a.filename, a.sha256) for a in issue.attachments]
        for issue in chain.it.site.issues.values()
    }


def _two_requests(chain: Chain) -> tuple[Any, Any, Refusing]:
    """Two requests: the first's form refused (403), the second's notes readable."""
    first = chain.fac.site.add_issue("New hire: signed form")
    form = chain.fac.site.attachments.add(first, "form.pdf", FORM)
    second = chain.fac.site.add_issue("New hire: desk notes")
    chain.fac.site.attachments.add(second, "notes.txt", NOTES)
    return first, second, Refusing(chain.fac, {str(form.id)})


def _closed(engine: SyncEngine, letter_id: int) -> Any:
    with engine.store.begin(readonly=True) as tx:
        return tx.get_dead_letter(letter_id)


def test_a_403_on_one_file_holds_up_nothing_and_the_file_travels_once_allowed(
    tmp_path: Path, store_url: str
) -> None:
    clock = Clock()
    with _chain(tmp_path, store_url) as chain:
        _, _, refusing = _two_requests(chain)
        with open_runtime(chain.config, clock=clock) as runtime:
            engine = runtime.engine
            _cycle(engine)  # the read goes on past the 403: both records stored
            files = _files(engine, "facilities")
            assert set(files) == {"New hire: signed form", "New hire: desk notes"}
            assert files["New hire: desk notes"] == {"notes.txt": (None, None)}
            [(why, basis)] = files["New hire: signed form"].values()
            assert basis == "retry: 403"
            assert "not read for now" in str(why) and "403" in str(why)
            assert "check what the bridge's account may read" in str(why)
            [letter] = dead_letters(engine)
            assert letter.subject.startswith("attachment:") and letter.subject.endswith(":form.pdf")
            assert "403" in letter.reason and str(letter.stage) == "map"
            # The other file travels; no note on the call for a file that may yet be read.
            assert sorted(f for fs in _it_files(chain).values() for f in fs) == [
                ("notes.txt", _sha(NOTES))
            ]
            assert not any(
                "was not read" in str(c.body)
                for issue in chain.fac.site.issues.values()
                for c in issue.comments
            )
            assert refusing.refused == 1
            # The bridge's write to the record (IT's reference) is a change read back: the
            # file is tried with it, once; then, the clock standing, not again.
            _cycle(engine)
            settled = refusing.refused
            assert settled == 2
            _cycle(engine)
            _cycle(engine)
            assert refusing.refused == settled
            # The back-off: one request per due time, the wait doubling from the interval
            # (1 s): tried at 1, 3, 7 and 15 s of 20 cycles a second apart.
            for _ in range(20):
                clock.advance(seconds=1)
                _cycle(engine, "fac-jira")
            assert refusing.refused == settled + 4
            assert [a for _, a in _retry_rows(engine)] == [5]
            [still] = dead_letters(engine)
            assert (still.id, still.attempts) == (letter.id, 5)
            assert "403" in still.reason
            # Allowed now: the next due try reads it (at 31 s), and it travels, once.
            refusing.on = False
            clock.advance(seconds=11)
            _cycle(engine)
            _cycle(engine)
            assert refusing.served == 1 and refusing.refused == settled + 4
            assert _files(engine, "facilities") == {
                "New hire: signed form": {"form.pdf": (None, None)},
                "New hire: desk notes": {"notes.txt": (None, None)},
            }
            travelled = sorted(f for fs in _it_files(chain).values() for f in fs)
            assert travelled == [("form.pdf", _sha(FORM)), ("notes.txt", _sha(NOTES))]
            assert dead_letters(engine) == [] and _retry_rows(engine) == []
            closed = _closed(engine, letter.id)
            assert str(closed.status) == "resolved" and "it travels" in str(closed.resolution)
            uploads = chain.requests("it", "POST", "/attachments")
            for _ in range(3):  # quiet: neither read nor written again
                clock.advance(hours=1)
                _cycle(engine)
            assert chain.requests("it", "POST", "/attachments") == uploads == 2
            assert refusing.served == 1
            assert len(dead_letters(engine)) == 0


def test_the_records_next_change_reads_a_waiting_file_at_once(tmp_path: Path) -> None:
    clock = Clock()
    with _chain(tmp_path, f"sqlite:///{tmp_path / 'b.db'}") as chain:
        first, _, refusing = _two_requests(chain)
        with open_runtime(chain.config, clock=clock) as runtime:
            engine = runtime.engine
            _cycle(engine)
            _cycle(engine)  # the bridge's write to the record read back: tried with it
            _cycle(engine)
            _cycle(engine)
            assert refusing.refused == 2  # the clock stands: not due, not read again
            [letter] = dead_letters(engine)
            refusing.on = False
            chain.fac.site.add_comment(first, "Permissions fixed.")  # the record's change
            _cycle(engine)
            _cycle(engine)
            assert refusing.served == 1
            files = _files(engine, "facilities")
            assert files["New hire: signed form"] == {"form.pdf": (None, None)}
            travelled = sorted(f for fs in _it_files(chain).values() for f in fs)
            assert travelled == [("form.pdf", _sha(FORM)), ("notes.txt", _sha(NOTES))]
            assert dead_letters(engine) == [] and _retry_rows(engine) == []
            assert str(_closed(engine, letter.id).status) == "resolved"
            clock.advance(days=1)
            _cycle(engine)
            assert refusing.served == 1 and chain.requests("it", "POST", "/attachments") == 2


def test_dead_letters_retry_reads_a_file_refused_by_a_policy_since_changed(
    tmp_path: Path, store_url: str
) -> None:
    """No change of the record: ``dead-letters retry`` of the refusal's letter reads the file
    now, under the policy now, and it travels; the letter is resolved."""
    with _chain(tmp_path, store_url, NO_PDF) as chain:
        chain.fac.site.attachments.add(chain.fac.site.add_issue("New hire"), "form.pdf", FORM)
        with open_runtime(chain.config) as runtime:
            engine = runtime.engine
            _cycle(engine)
            [letter] = dead_letters(engine)
            assert "application/pdf" in letter.reason
            again = retry_dead_letters(engine, ids=[letter.id])  # the same policy: refused again
            assert again.failed and not again.resolved
            assert "refused" in again.failed[0][1]
            assert chain.requests("fac", "GET", CONTENT) == 2
            _policy(chain, tmp_path, ONE_MIB)
            done = retry_dead_letters(engine, ids=[letter.id])
            assert [i for i, _ in done.resolved] == [letter.id] and not done.failed
            assert "accepted" in done.resolved[0][1]
            _cycle(engine)
            _cycle(engine)
            assert chain.requests("fac", "GET", CONTENT) == 3
            assert [f for fs in _it_files(chain).values() for f in fs] == [("form.pdf", _sha(FORM))]
            assert _files(engine, "facilities") == {"New hire": {"form.pdf": (None, None)}}
            assert dead_letters(engine) == []
            assert chain.requests("it", "POST", "/attachments") == 1


def _files_due_now(engine: SyncEngine) -> None:
    with engine.store.begin() as tx:
        tx.connection.execute(
            sa.text("UPDATE file_retries SET next_try_at = :at"),
            {"at": datetime(2000, 1, 1, tzinfo=UTC)},
        )


def test_a_sync_killed_between_reading_a_waiting_file_and_storing_it_loses_nothing(
    tmp_path: Path,
) -> None:
    """``sync --once`` SIGKILLed once Facilities' Jira served the file it refused before, before
    the bridge stored it: the file still waits, its letter open; the next run reads it again
    and it reaches IT once."""
    with _chain(tmp_path, f"sqlite:///{tmp_path / 'b.db'}") as chain:
        _, _, refusing = _two_requests(chain)
        with open_runtime(chain.config) as runtime:
            _cycle(runtime.engine)
            [letter] = dead_letters(runtime.engine)
            _files_due_now(runtime.engine)
        refusing.on = False
        held = HeldUpload(chain.fac.answer, "GET", re.compile(CONTENT))
        chain.fac.answer = held  # type: ignore[method-assign]
        config, log = tmp_path / "usm-bridge.toml", tmp_path / "sync.log"
        assert kill_when_held(held, config, tmp_path, log) > 0
        assert refusing.served == 1
        with open_runtime(chain.config) as runtime:
            engine = runtime.engine
            files = _files(engine, "facilities")
            assert files["New hire: signed form"]["form.pdf"][1] == "retry: 403"
            assert [d.id for d in dead_letters(engine)] == [letter.id]
            assert [a for _, a in _retry_rows(engine)] == [1]
        with log.open("ab") as out:
            assert sync_once(config, tmp_path, out).wait(timeout=60) == 0, log.read_text()[-3000:]
        with open_runtime(chain.config) as runtime:
            engine = runtime.engine
            _cycle(engine)
            assert refusing.served == 2
            assert _files(engine, "facilities")["New hire: signed form"] == {
                "form.pdf": (None, None)
            }
            assert dead_letters(engine) == [] and _retry_rows(engine) == []
        travelled = sorted(f for fs in _it_files(chain).values() for f in fs)
        assert travelled == [("form.pdf", _sha(FORM)), ("notes.txt", _sha(NOTES))]
        assert chain.requests("it", "POST", "/attachments") == 2


def test_files_refused_for_an_untrusted_url_are_read_again_a_bounded_number_per_cycle(
    store: Store, tmp_path: Path
) -> None:
    """Three files of one record whose URLs the connector will not request, and one it reads:
    the record is stored with the one, the three wait (``retry: untrusted URL``), each with its
    letter; a cycle reads again at most ``per_cycle`` of those due; once the URLs are fixed,
    each travels and its letter closes: four files in, four outcomes."""
    bridge = files_bridge(store, files_config(tmp_path))
    try:
        hr, shelf = bridge.tools[HR], bridge.shelves[HR]
        ticket = hr.add(title="New hire", kind="service_request")
        refused = [shelf.attach(ticket, f"form-{n}.pdf", FORM + bytes([n])) for n in range(3)]
        shelf.attach(ticket, "notes.txt", NOTES)
        for file_id in refused:
            shelf.refusing[file_id] = UntrustedURLError(f"the URL of {file_id} is off the site")
        bridge.engine.file_retries.per_cycle = 2
        bridge.cycle(HR)
        with store.begin(readonly=True) as tx:
            stored = tx.find_call(HR, ticket)
            letters = tx.list_dead_letters()
        assert stored is not None
        outcome = {a.name: (a.refused is None, a.refused_under) for a in stored.call.attachments}
        assert outcome == {
            "notes.txt": (True, None),
            **{f"form-{n}.pdf": (False, "retry: untrusted URL") for n in range(3)},
        }
        assert sorted(letter.subject.rsplit(":", 1)[-1] for letter in letters) == [
            f"form-{n}.pdf" for n in range(3)
        ]
        assert all("untrusted URL" in letter.reason for letter in letters)
        assert all("base_url" in letter.reason for letter in letters)
        assert shelf.downloads.count(refused[0]) == 1
        # The record read again as stored (a read's overlap): the waiting files are left to
        # their back-off; changed, it has them read again with it.
        shelf.downloads.clear()
        [same] = bridge.engine.ingest.ingest_page(HR, bridge.records(HR, ticket))
        assert (same.outcome, shelf.downloads) == (Outcome.UNCHANGED, [])
        bridge.clock.advance(seconds=1)
        hr.edit(ticket, title="New hire, permissions asked for")
        [changed] = bridge.engine.ingest.ingest_page(HR, bridge.records(HR, ticket))
        assert changed.outcome is Outcome.ROUTED and sorted(shelf.downloads) == sorted(refused)
        shelf.downloads.clear()
        bridge.clock.advance(hours=2)  # all three due
        bridge.cycle(HR)
        assert len([d for d in shelf.downloads if d in refused]) == 2  # per_cycle
        bridge.cycle(HR)
        assert len([d for d in shelf.downloads if d in refused]) == 3  # the third, now
        shelf.refusing.clear()
        shelf.downloads.clear()
        bridge.clock.advance(days=2)  # the longest wait is a day
        bridge.cycle(HR)
        bridge.cycle(HR)
        assert sorted(shelf.downloads) == sorted(refused)  # each once
        with store.begin(readonly=True) as tx:
            stored = tx.find_call(HR, ticket)
            assert tx.list_dead_letters() == []
            rows = tx.connection.execute(sa.text("SELECT count(*) FROM file_retries")).scalar()
        assert rows == 0
        assert stored is not None
        assert sorted((a.name, a.sha256) for a in stored.call.attachments) == sorted(
            [
                ("notes.txt", sha(NOTES)),
                *((f"form-{n}.pdf", sha(FORM + bytes([n]))) for n in range(3)),
            ]
        )
    finally:
        bridge.engine.close()


def test_a_bug_reading_one_waiting_file_again_holds_up_neither_the_others_nor_the_cycle(
    store: Store, tmp_path: Path
) -> None:
    bridge = files_bridge(store, files_config(tmp_path))
    try:
        hr, shelf = bridge.tools[HR], bridge.shelves[HR]
        ticket = hr.add(title="New hire", kind="service_request")
        first = shelf.attach(ticket, "form.pdf", FORM)
        second = shelf.attach(ticket, "notes.txt", NOTES)
        for file_id in (first, second):
            shelf.refusing[file_id] = UntrustedURLError(f"the URL of {file_id} is off the site")
        bridge.cycle(HR)
        shelf.refusing = {first: RuntimeError("a connector's bug")}
        bridge.clock.advance(hours=2)
        [summary] = bridge.cycle(HR)
        assert summary.ok, summary.error
        with store.begin(readonly=True) as tx:
            stored = tx.find_call(HR, ticket)
            rows = tx.due_file_retries(HR, now=bridge.clock.now + timedelta(days=2), limit=10)
            [letter] = tx.list_dead_letters()
        assert stored is not None
        outcome = {a.name: a.refused_under for a in stored.call.attachments}
        assert outcome == {"form.pdf": "retry: untrusted URL", "notes.txt": None}
        assert [(r.file_id, r.attempts) for r in rows] == [(first, 2)]
        assert letter.subject.endswith(":form.pdf")
    finally:
        bridge.engine.close()


def _rows_of(store: Store) -> dict[tuple[str, str], tuple[int, datetime]]:
    """Every row to read again: (instance, file id) -> (tries, when due)."""
    with store.begin(readonly=True) as tx:
        rows = tx.connection.execute(
            sa.text("SELECT instance, file_id, attempts, next_try_at FROM file_retries")
        )
        return {(str(i), str(f)): (int(a), _utc(n)) for i, f, a, n in rows}


def _utc(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def test_an_outage_stops_the_files_read_again_at_the_first_and_doubles_no_back_off(
    store: Store, tmp_path: Path
) -> None:
    """25 files refused (403), all due; then the tool answers 503 to everything. A cycle whose
    read fails asks for no file; one whose read passes but whose first download gets a 503
    asks for that one only: it is put off by the interval, uncounted, the other 24 keep their
    due time, and no letter counts the outage. Once the tool is back, all 25 travel."""
    bridge = files_bridge(store, files_config(tmp_path))
    try:
        hr, shelf = bridge.tools[HR], bridge.shelves[HR]
        ticket = hr.add(title="New hire", kind="service_request")
        other = hr.add(title="Desk move", kind="service_request")
        files = [shelf.attach(ticket, f"f{n}.pdf", FORM + bytes([n])) for n in range(25)]
        for file_id in files:
            shelf.refusing[file_id] = PermanentRemoteError("no permission", status=403)
        bridge.cycle(HR)
        before = _rows_of(store)
        assert sorted(f for _, f in before) == sorted(files)
        assert {a for a, _ in before.values()} == {1}
        bridge.clock.advance(hours=2)  # all 25 due
        down = RetriableRemoteError("service unavailable", status=503)
        shelf.refusing = dict.fromkeys(files, down)
        shelf.downloads.clear()
        [summary] = bridge.cycle(HR)  # nothing changed: the read passes, the first file 503s
        assert summary.ok, summary.error
        [first] = shelf.downloads
        after = _rows_of(store)
        interval = timedelta(seconds=bridge.config.instances[HR].interval)
        assert after[(HR, first)] == (1, bridge.clock.now + interval)
        assert {k: v for k, v in after.items() if k != (HR, first)} == {
            k: v for k, v in before.items() if k != (HR, first)
        }
        with store.begin(readonly=True) as tx:
            letters = tx.list_dead_letters()
        assert len(letters) == 25
        assert all(letter.attempts == 1 and "403" in letter.reason for letter in letters)
        # ``dead-letters retry`` of one meanwhile: said unavailable, its letter as it was.
        mine = next(x for x in letters if x.payload["attachment"]["source"]["remote_id"] == first)
        done = retry_dead_letters(bridge.engine, ids=[mine.id])
        assert not done.resolved and [i for i, _ in done.failed] == [mine.id]
        assert "unavailable" in done.failed[0][1] and "service unavailable" in done.failed[0][1]
        assert [(x.attempts, x.reason) for x in _letters(store) if x.id == mine.id] == [
            (1, mine.reason)
        ]
        after = _rows_of(store)
        assert after[(HR, first)] == (1, bridge.clock.now + interval)
        # The read itself fails: no file is asked for at all.
        hr.edit(other, title="Desk move, urgent")
        bridge.connectors[HR].fail_read_after = (0, down)
        shelf.downloads.clear()
        [summary] = bridge.cycle(HR)
        assert summary.error is not None and "service unavailable" in summary.error
        assert shelf.downloads == [] and _rows_of(store) == after
        # Back: 20 a cycle, each read once, each letter closed.
        shelf.refusing.clear()
        shelf.downloads.clear()
        bridge.clock.advance(hours=2)
        bridge.cycle(HR)
        bridge.cycle(HR)
        assert sorted(shelf.downloads) == sorted(files)
        with store.begin(readonly=True) as tx:
            stored = tx.find_call(HR, ticket)
            assert tx.list_dead_letters() == []
        assert stored is not None and _rows_of(store) == {}
        assert sorted((a.name, a.sha256) for a in stored.call.attachments) == sorted(
            (f"f{n}.pdf", sha(FORM + bytes([n]))) for n in range(25)
        )
    finally:
        bridge.engine.close()


def _one_form_refused_403(bridge: Any) -> tuple[Any, Any, str, str]:
    """HR's tool, its files, a ticket and its form, refused 403 and waiting after a cycle."""
    hr, shelf = bridge.tools[HR], bridge.shelves[HR]
    ticket = hr.add(title="New hire", kind="service_request")
    form = shelf.attach(ticket, "form.pdf", FORM)
    shelf.refusing[form] = PermanentRemoteError("no permission", status=403)
    bridge.cycle(HR)
    return hr, shelf, ticket, form


def test_a_waiting_file_gone_on_its_records_read_gets_its_note_and_no_more_tries(
    store: Store, tmp_path: Path
) -> None:
    """A file refused 403, then gone (404) when its record's change reads it again: its letter
    says the 404 (not the 403 any more), the call gets its note, and its row goes (no
    download after)."""
    bridge = files_bridge(store, files_config(tmp_path))
    try:
        hr, shelf, ticket, form = _one_form_refused_403(bridge)
        [waiting] = _letters(store)
        assert "403" in waiting.reason and [f for _, f in _rows_of(store)] == [form]
        assert _notes(bridge, ticket) == []
        shelf.refusing[form] = PermanentRemoteError("attachment not found", status=404)
        bridge.clock.advance(seconds=1)
        hr.edit(ticket, title="New hire, form re-uploaded")
        shelf.downloads.clear()
        bridge.cycle(HR)
        assert shelf.downloads == [form]
        [letter] = _letters(store)
        assert letter.id == waiting.id and letter.attempts == 2
        assert "attachment not found" in letter.reason and "403" not in letter.reason
        [note] = _notes(bridge, ticket)
        assert "form.pdf" in note and "attachment not found" in note
        assert _rows_of(store) == {}
        bridge.clock.advance(days=2)
        shelf.downloads.clear()
        bridge.cycle(HR)
        assert shelf.downloads == []
        with store.begin(readonly=True) as tx:
            stored = tx.find_call(HR, ticket)
        assert stored is not None
        [file] = stored.call.attachments
        assert file.refused is not None and "attachment not found" in file.refused
    finally:
        bridge.engine.close()


def _letters(store: Store) -> list[Any]:
    with store.begin(readonly=True) as tx:
        return tx.list_dead_letters()


def _notes(bridge: Any, ticket: str) -> list[str]:
    """The bridge's notes on ``ticket``: comments naming a file not read."""
    comments = bridge.tools[HR].tickets[ticket]["comments"]
    return [str(c["body"]) for c in comments if "not read" in str(c["body"])]


def test_a_waiting_file_whose_call_lost_its_record_keeps_its_letter_open_saying_so(
    store: Store, tmp_path: Path
) -> None:
    """The call no longer has a record in the tool the waiting file is in: nothing to read it
    from, so its row goes; its letter stays open and says why, on the cycle's retry and on
    ``dead-letters retry`` alike (never "no longer listed": the call still lists it)."""
    bridge = files_bridge(store, files_config(tmp_path))
    try:
        _hr, shelf, ticket, _form = _one_form_refused_403(bridge)
        with store.begin() as tx:
            stored = tx.find_call(HR, ticket)
            assert stored is not None
            tx.connection.execute(
                sa.text("DELETE FROM identities WHERE call_id = :c AND instance = :i"),
                {"c": stored.call.id, "i": HR},
            )
        bridge.clock.advance(hours=2)
        shelf.downloads.clear()
        # The files due, read again as the cycle does after its read (which would take the
        # record, unknown now, for a new call's).
        assert bridge.engine.file_retries.run(HR) == set()
        assert shelf.downloads == [] and _rows_of(store) == {}
        [letter] = _letters(store)
        assert letter.attempts == 2
        assert f"has no record in {HR}" in letter.reason and "403" in letter.reason
        done = retry_dead_letters(bridge.engine, ids=[letter.id])
        assert not done.resolved and [i for i, _ in done.failed] == [letter.id]
        assert f"has no record in {HR}" in done.failed[0][1]
        [still] = _letters(store)
        assert still.id == letter.id and still.attempts == 3
    finally:
        bridge.engine.close()


def test_rows_of_an_instance_gone_from_the_config_are_dropped_at_the_first_cycle(
    store: Store, tmp_path: Path
) -> None:
    """An instance renamed in the config leaves rows no cycle would ever read: the engine's
    first cycle drops them, and keeps those of the instances it knows."""
    bridge = files_bridge(store, files_config(tmp_path))
    try:
        _hr, _shelf, ticket, form = _one_form_refused_403(bridge)
        kept = _rows_of(store)
        assert list(kept) == [(HR, form)]
        with store.begin() as tx:
            call_id = tx.find_call(HR, ticket).call.id  # type: ignore[union-attr]
            tx.schedule_file_retry("hr-old-name", "f-1", call_id, at=bridge.clock.now)
            tx.schedule_file_retry("hr-old-name", "f-2", call_id, at=bridge.clock.now)
    finally:
        bridge.engine.close()
    again = files_bridge(store, files_config(tmp_path))
    try:
        assert len(_rows_of(store)) == 3
        again.cycle("fac-tool")
        assert _rows_of(store) == kept
    finally:
        again.engine.close()


def test_a_waiting_file_refused_by_a_policy_tightened_since_gets_its_note_and_letter(
    tmp_path: Path, store_url: str
) -> None:
    """A form refused 403 waits; the admin lowers Facilities' size cap below its stated size,
    then the 403 is lifted: read again, it is refused by its stated size (never downloaded,
    no SHA-256). Its letter now says the size (not the 403), the Jira issue gets the note of
    any refused file, and it is not tried again."""
    with _chain(tmp_path, store_url, fac_policy="  max_size: 10MiB\n") as chain:
        issue = chain.fac.site.add_issue("New hire: signed form")
        big = FORM + b"x" * (2 * 1024 * 1024)
        form = chain.fac.site.attachments.add(issue, "form.pdf", big)
        refusing = Refusing(chain.fac, {str(form.id)})
        clock = Clock()
        with open_runtime(chain.config, clock=clock) as runtime:
            engine = runtime.engine
            _cycle(engine)
            [waiting] = dead_letters(engine)
            assert "403" in waiting.reason and _retry_rows(engine) == [(str(form.id), 1)]
            _policy(chain, tmp_path, ONE_MIB)
            refusing.on = False
            clock.advance(seconds=30)
            _cycle(engine)
            assert refusing.refused == 1 and refusing.served == 0  # refused by its stated size
            [letter] = dead_letters(engine)
            assert letter.id == waiting.id
            assert "larger than the 1 MiB" in letter.reason and "403" not in letter.reason
            assert _retry_rows(engine) == []
            notes = [
                str(c.body) for c in chain.fac.site.issues[issue.id].comments
                if "not read" in str(c.body)
            ]  # fmt: skip
            assert len(notes) == 1 and "larger than the 1 MiB" in notes[0]
            clock.advance(days=2)
            _cycle(engine)
            assert (refusing.refused, refusing.served) == (1, 0)  # no download after
            assert _files(engine, "facilities")["New hire: signed form"]["form.pdf"][0] == (
                "form.pdf: larger than the 1 MiB this instance takes"
            )
            assert [f for fs in _it_files(chain).values() for f in fs] == []
