"""Files travelling through the bridge, Jira to Jira: Facilities (Jira Cloud simulator) opens a
supplier call at IT (Jira Data Center simulator) and its files go along, through the real
engine, store and outbox.

Every file a test attaches has its outcome asserted: a copy in the target with the same
SHA-256, or refused (a note in the tool, a dead letter with the reason, listed as refused on the
call). The bridge's own copy read back is never routed again and nothing is read or written
twice (request counts).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from e2e.held_upload import HeldUpload, kill_when_held, spool_files, sync_once
from usm_bridge_jira.simulator import JiraSimulator, SimClock, SimFault
from usm_bridge_jira.simulator.replies import errors

from usm_bridge.config import load_config
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.model import Call
from usm_bridge.runtime import open_runtime
from usm_bridge.sync.engine import SyncEngine

FORM = b"%PDF-1.4\n% signed onboarding form\n" + bytes(range(256)) * 40
NOTES = b"desk 4.12, badge B-2231\n" * 50
SHIPPED = (SHIPPED_MAPPINGS_DIR / "jira-service-management.yaml").read_text(encoding="utf-8")


def _mapping(path: Path, policy: str) -> Path:
    """The shipped JSM mapping with another ``attachments:`` section (the file's last)."""
    head = SHIPPED[: SHIPPED.index("\nattachments:")]
    path.write_text(f"{head}\nattachments:\n{policy}", encoding="utf-8")
    return path


class Chain:
    """Two Jira sites, Facilities (Cloud) and IT (Data Center), and the engine between them."""

    def __init__(
        self, tmp: Path, store_url: str, it_policy: str, fac_policy: str, files: str = ""
    ) -> None:
        from datetime import UTC, datetime

        start = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
        self.fac = JiraSimulator("cloud", clock=SimClock(start)).start()
        self.it = JiraSimulator("datacenter", clock=SimClock(start)).start()
        self.seen: list[tuple[str, str, str]] = []
        for name, sim in (("fac", self.fac), ("it", self.it)):
            sim.site.observer = self._watch(name)
        retry = {"max_attempts": 2, "retry_budget": 2.0, "backoff_initial": 0.01,
                 "backoff_max": 0.02, "read_timeout": 5.0, "projects": ["IT"]}  # fmt: skip
        instances = {
            "fac-jira": ("facilities", self.fac, "cloud", _mapping(tmp / "fac.yaml", fac_policy)),
            "it-jira": ("it", self.it, "datacenter", _mapping(tmp / "it.yaml", it_policy)),
        }
        units = '[units.facilities]\ntitle = "Facilities"\n[units.it]\ntitle = "IT"\n'
        spool = f"spool = {json.dumps(str(tmp / 'spool'))}\n"
        lines = [f"[store]\nurl = {json.dumps(store_url)}\n",
                 f"[attachments]\n{spool}{files}", units]  # fmt: skip
        for name, (unit, sim, flavour, mapping) in instances.items():
            settings = {"base_url": sim.base_url, "deployment": flavour, **sim.credentials(),
                        **retry}  # fmt: skip
            lines += [f"[instances.{name}]", f'unit = "{unit}"', 'kind = "jira"',
                      f"mapping = {json.dumps(str(mapping))}", "interval = 1",
                      f"[instances.{name}.settings]",
                      *(f"{k} = {json.dumps(v)}" for k, v in settings.items()), ""]  # fmt: skip
        lines += ["[[routes]]", 'from = "facilities"', 'to = "it"',
                  'when = { call_type = ["service_request"] }', ""]  # fmt: skip
        (tmp / "usm-bridge.toml").write_text("\n".join(lines), encoding="utf-8")
        self.config = load_config(tmp / "usm-bridge.toml")

    def _watch(self, site: str) -> Any:
        def watch(method: str, path: str, status: int, body: Any) -> None:
            self.seen.append((site, method, path))

        return watch

    def requests(self, site: str, method: str, part: str) -> int:
        return sum(1 for s, m, p in self.seen if s == site and m == method and part in p)

    def stop(self) -> None:
        self.fac.stop()
        self.it.stop()


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    made = Chain(tmp_path, f"sqlite:///{tmp_path / 'b.db'}", "  max_size: 1MiB\n",
                 "  max_size: 1MiB\n")  # fmt: skip
    try:
        yield made
    finally:
        made.stop()


def _engine(chain: Chain) -> Any:
    return open_runtime(chain.config)


@contextmanager
def _running(
    tmp: Path, it_policy: str, fac_policy: str, files: str = ""
) -> Iterator[tuple[Chain, SyncEngine]]:
    """A chain of the policies given and its engine, stopped at the end."""
    chain = Chain(tmp, f"sqlite:///{tmp / 'b.db'}", it_policy, fac_policy, files)
    try:
        with _engine(chain) as runtime:
            yield chain, runtime.engine
    finally:
        chain.stop()


def settle(engine: SyncEngine, rounds: int = 3) -> None:
    for _ in range(rounds):
        for name in ("fac-jira", "it-jira"):
            summary = engine.run_cycle(name)
            assert summary.ok, summary.error


def calls(engine: SyncEngine, unit: str) -> list[Call]:
    with engine.store.begin(readonly=True) as tx:
        return [s.call for s in tx.list_calls(unit=unit)]


def outcomes(engine: SyncEngine, unit: str) -> dict[str, str | None]:
    """Each file of the unit's one call: ``None`` (it travels) or why it was refused."""
    [call] = calls(engine, unit)
    return {a.name: a.refused for a in call.attachments}


def dead_letters(engine: SyncEngine) -> list[Any]:
    with engine.store.begin(readonly=True) as tx:
        return list(tx.list_dead_letters())


def _request(chain: Chain, *files: tuple[str, bytes]) -> Any:
    issue = chain.fac.site.add_issue("New hire: desk, badge and laptop")
    for name, content in files:
        chain.fac.site.attachments.add(issue, name, content)
    return issue


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def test_files_travel_to_the_supplier_once_and_the_copy_read_back_is_not_routed(
    chain: Chain,
) -> None:
    _request(chain, ("form.pdf", FORM), ("notes.txt", NOTES))
    with _engine(chain) as runtime:
        engine = runtime.engine
        settle(engine)
        [upstream], [supplier] = calls(engine, "facilities"), calls(engine, "it")
        [it_issue] = chain.it.site.issues.values()
        copies = {a.filename: a.sha256 for a in it_issue.attachments}
        assert copies == {"form.pdf": _sha(FORM), "notes.txt": _sha(NOTES)}
        assert {(a.name, a.source.instance) for a in upstream.attachments if a.source} == {
            ("form.pdf", "fac-jira"), ("notes.txt", "fac-jira"),
        }  # fmt: skip
        # The supplier call lists IT's copies, by their ids there: read back, they are known.
        assert {a.source.remote_id for a in supplier.attachments if a.source} == {
            str(a.id) for a in it_issue.attachments
        }
        assert all(a.refused is None and a.origin == "fac-jira" for a in supplier.attachments)
        assert dead_letters(engine) == []
        uploads = chain.requests("it", "POST", "/attachments")
        downloads = chain.requests("fac", "GET", "/attachment/content/")
        # Each read once, at intake: the push sends the copy kept then (attachments.kept).
        assert (uploads, downloads) == (2, 2)
        # Quiet: more cycles read and write no file and change no call.
        before = [c.model_dump() for c in (*calls(engine, "facilities"), *calls(engine, "it"))]
        settle(engine)
        after = [c.model_dump() for c in (*calls(engine, "facilities"), *calls(engine, "it"))]
        assert after == before
        assert chain.requests("it", "POST", "/attachments") == uploads
        assert chain.requests("fac", "GET", "/attachment/content/") == downloads
        assert chain.requests("it", "GET", "/secure/attachment/") == 0  # never read back
        assert len(it_issue.attachments) == 2


def _due_now(engine: SyncEngine) -> None:
    """IT's deferred outbox items due at once (not after their backoff)."""
    with engine.store.begin() as tx:
        for item in tx.list_outbox(instance="it-jira"):
            tx.hand_back_outbox([item.id], at=item.created_at)


def test_a_lost_upload_answer_leaves_one_copy(chain: Chain) -> None:
    _request(chain, ("form.pdf", FORM))
    chain.it.fail_next(SimFault.LOSE_ATTACHMENT_RESPONSE)
    with _engine(chain) as runtime:
        engine = runtime.engine
        # Read, then pushed to IT: the create, then its files: the upload lands, its answer is
        # lost.
        engine.run_cycle("fac-jira")
        [it_issue] = chain.it.site.issues.values()
        assert len(it_issue.attachments) == 1
        [supplier] = calls(engine, "it")
        assert [a.source.instance for a in supplier.attachments if a.source] == ["fac-jira"]
        # The retry, before IT is read: the record's files are listed first and the copy is
        # found by name and size, then content, and recorded instead of written again.
        _due_now(engine)
        engine.push("it-jira")
        assert len(it_issue.attachments) == 1
        assert chain.requests("it", "POST", "/attachments") == 1
        [supplier] = calls(engine, "it")
        [copy] = supplier.attachments
        assert copy.source is not None and copy.source.remote_id == str(it_issue.attachments[0].id)
        settle(engine)
        assert [(a.filename, a.sha256) for a in it_issue.attachments] == [("form.pdf", _sha(FORM))]
        assert dead_letters(engine) == []


def test_a_copy_written_before_a_crash_is_recognised_when_read_back(chain: Chain) -> None:
    _request(chain, ("form.pdf", FORM))
    chain.it.fail_next(SimFault.LOSE_ATTACHMENT_RESPONSE)
    with _engine(chain) as runtime:
        engine = runtime.engine
        engine.run_cycle("fac-jira")  # the copy is made (pushed), the bridge does not know it
        assert [a.source.instance for a in calls(engine, "it")[0].attachments if a.source] == [
            "fac-jira"
        ]
        routed_before = chain.requests("fac", "POST", "/attachments")
        engine.run_cycle("it-jira")  # read back: the same file (identity), this copy of it
        [supplier] = calls(engine, "it")
        [it_issue] = chain.it.site.issues.values()
        [copy] = supplier.attachments
        assert copy.source is not None and copy.source.remote_id == str(it_issue.attachments[0].id)
        _due_now(engine)
        settle(engine)
        # Not routed again: not back to Facilities, not a second time to IT.
        assert chain.requests("fac", "POST", "/attachments") == routed_before == 0
        assert len(it_issue.attachments) == 1
        assert [a.filename for a in next(iter(chain.fac.site.issues.values())).attachments] == [
            "form.pdf"
        ]
        assert dead_letters(engine) == []


def test_a_refused_type_and_a_file_over_the_cap_are_noted_not_downloaded(chain: Chain) -> None:
    issue = _request(chain, ("setup.exe", b"MZ\x90\x00" + b"\x00" * 200),
                     ("video.mp4", b"\x00" * (1024 * 1024 + 1)), ("form.pdf", FORM))  # fmt: skip
    with _engine(chain) as runtime:
        engine = runtime.engine
        settle(engine)
        refused = outcomes(engine, "facilities")
        assert refused["form.pdf"] is None
        assert "refused" in str(refused["setup.exe"]) and "larger" in str(refused["video.mp4"])
        letters = dead_letters(engine)
        assert sorted(letter.subject.rsplit(":", 1)[-1] for letter in letters) == [
            "setup.exe",
            "video.mp4",
        ]
        assert all(letter.reason.startswith("attachment refused") for letter in letters)
        # The big one was refused by its stated size: never downloaded.
        video = next(a for a in issue.attachments if a.filename == "video.mp4")
        assert chain.requests("fac", "GET", f"/attachment/content/{video.id}") == 0
        notes = [c for c in issue.comments if "was not read from fac-jira" in str(c.body)]
        assert len(notes) == 2
        [it_issue] = chain.it.site.issues.values()
        assert [a.filename for a in it_issue.attachments] == ["form.pdf"]
        settle(engine)  # once only: no second note, no second letter
        assert len(dead_letters(engine)) == 2
        assert len([c for c in issue.comments if "was not read" in str(c.body)]) == 2


def test_the_targets_policy_refuses_with_a_push_dead_letter_and_a_note(tmp_path: Path) -> None:
    chain = Chain(tmp_path, f"sqlite:///{tmp_path / 'b.db'}",
                  "  refuse: ['application/pdf']\n", "  max_size: 1MiB\n")  # fmt: skip
    try:
        _request(chain, ("form.pdf", FORM), ("notes.txt", NOTES))
        with _engine(chain) as runtime:
            engine = runtime.engine
            settle(engine)
            outcome = outcomes(engine, "it")
            assert outcome["notes.txt"] is None and "application/pdf" in str(outcome["form.pdf"])
            [letter] = dead_letters(engine)
            assert (letter.instance, str(letter.stage)) == ("it-jira", "push")
            [it_issue] = chain.it.site.issues.values()
            assert [a.filename for a in it_issue.attachments] == ["notes.txt"]
            assert any("was not sent to it-jira" in str(c.body) for c in it_issue.comments)
    finally:
        chain.stop()


def _failing(sim: JiraSimulator, method: str, part: str, status: int, times: int) -> list[int]:
    """The next ``times`` requests of ``method`` whose path holds ``part`` answer ``status``
    (429 or a 5xx) instead of being served; the list counts those struck."""
    struck: list[int] = []
    answer = sim.answer

    def failing(m: str, path: str, *rest: Any) -> Any:
        if m == method and part in path and len(struck) < times:
            struck.append(status)
            return errors(status, "Rate limit exceeded." if status == 429 else "Internal error")
        return answer(m, path, *rest)

    sim.answer = failing
    return struck


@pytest.mark.parametrize("status", [429, 503])
def test_faults_on_download_and_upload_are_retried_to_one_copy(chain: Chain, status: int) -> None:
    _request(chain, ("form.pdf", FORM))
    # More than one request's retries: the read ends and comes back, the push item is retried.
    downloads = _failing(chain.fac, "GET", "/attachment/content/", status, times=3)
    uploads = _failing(chain.it, "POST", "/attachments", status, times=2)
    with _engine(chain) as runtime:
        engine = runtime.engine
        for _ in range(6):
            _due_now(engine)  # the retries due now, not after their backoff
            for name in ("fac-jira", "it-jira"):
                engine.run_cycle(name)  # some fail: that is the point
        assert (len(downloads), len(uploads)) == (3, 2)
        [it_issue] = chain.it.site.issues.values()
        assert [(a.filename, a.sha256) for a in it_issue.attachments] == [("form.pdf", _sha(FORM))]
        [upstream], [supplier] = calls(engine, "facilities"), calls(engine, "it")
        assert [a.name for a in upstream.attachments] == ["form.pdf"]
        assert [a.source.instance for a in supplier.attachments if a.source] == ["it-jira"]
        assert dead_letters(engine) == []


def test_a_file_the_target_refuses_for_good_is_a_failed_file_not_a_failed_item(
    chain: Chain,
) -> None:
    chain.it.site.attachments.upload_limit = 1000  # IT's Jira takes smaller files only: 413
    _request(chain, ("form.pdf", FORM), ("small.txt", b"badge B-2231\n"))
    with _engine(chain) as runtime:
        engine = runtime.engine
        settle(engine)
        outcome = outcomes(engine, "it")
        assert outcome["small.txt"] is None
        assert "attachment size limit" in str(outcome["form.pdf"])
        [letter] = dead_letters(engine)
        assert (letter.instance, str(letter.stage)) == ("it-jira", "push")
        assert letter.payload["could_not_travel"] == "failed"
        [it_issue] = chain.it.site.issues.values()
        assert [a.filename for a in it_issue.attachments] == ["small.txt"]
        settle(engine)  # tried once: a refused file is not sent again
        assert chain.requests("it", "POST", "/attachments") == 2


JIRA_UPLOAD = re.compile(r"^/rest/api/[23]/issue/[^/]+/attachments/?$")


def test_a_sync_killed_between_the_upload_to_jira_and_its_record_leaves_one_copy(
    chain: Chain, tmp_path: Path
) -> None:
    """``sync --once`` SIGKILLed after IT's Jira took the file, before the bridge recorded the
    copy (see :mod:`e2e.held_upload`); the next one finds the copy instead of writing another.
    Two ways, each enough alone (mutation-checked): IT's cycle reads the copy back and knows it
    by identity, and the push lists the issue's files before an upload."""
    _request(chain, ("form.pdf", FORM))
    held = HeldUpload(chain.it.answer, "POST", JIRA_UPLOAD)
    chain.it.answer = held  # type: ignore[method-assign]
    config, log = tmp_path / "usm-bridge.toml", tmp_path / "sync.log"
    killed = kill_when_held(held, config, tmp_path, log)
    [it_issue] = chain.it.site.issues.values()
    [copy] = it_issue.attachments
    assert copy.path.read_bytes() == FORM
    # The upload read the copy the intake kept: no temporary spool file was left, and the
    # kept copy is whole under its hash.
    assert spool_files(tmp_path / "spool") == []
    assert (tmp_path / "spool" / "by-sha256" / _sha(FORM)).read_bytes() == FORM
    assert killed > 0
    with _engine(chain) as runtime:
        [supplier] = calls(runtime.engine, "it")
        assert [a.source.instance for a in supplier.attachments if a.source] == ["fac-jira"]

    with log.open("ab") as out:
        assert sync_once(config, tmp_path, out).wait(timeout=60) == 0, log.read_text()[-3000:]
    assert spool_files(tmp_path / "spool") == []
    assert chain.requests("it", "POST", "/attachments") == 1
    assert [(a.id, a.path.read_bytes()) for a in it_issue.attachments] == [(copy.id, FORM)]
    with _engine(chain) as runtime:
        [supplier] = calls(runtime.engine, "it")
        [recorded] = supplier.attachments
        assert recorded.source is not None and recorded.refused is None
        assert (recorded.source.instance, recorded.source.remote_id) == ("it-jira", str(copy.id))
        assert recorded.sha256 == _sha(FORM)
        assert dead_letters(runtime.engine) == []
        settle(runtime.engine)
    assert chain.requests("it", "POST", "/attachments") == 1
    assert len(it_issue.attachments) == 1


def test_a_quarantine_copy_that_failed_is_said_in_the_note_and_the_dead_letter(
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "quarantine"
    blocked.write_text("a file where the folder should be")  # unwritable, even for root
    quarantine = f"quarantine = {json.dumps(str(blocked))}\n"
    with _running(tmp_path, "  max_size: 1MiB\n", "  max_size: 1MiB\n", quarantine) as (
        chain, engine,
    ):  # fmt: skip
        issue = _request(chain, ("setup.exe", b"MZ\x90\x00" + b"\x00" * 200), ("form.pdf", FORM))
        settle(engine)
        assert outcomes(engine, "facilities")["form.pdf"] is None
        [letter] = dead_letters(engine)
        assert "setup.exe" in letter.subject
        assert f"not kept in the quarantine folder {blocked}" in letter.reason
        [note] = [c for c in issue.comments if "was not read from fac-jira" in str(c.body)]
        assert "not kept in the quarantine folder" in str(note.body)
        [it_issue] = chain.it.site.issues.values()
        assert [a.filename for a in it_issue.attachments] == ["form.pdf"]
        [upstream] = calls(engine, "facilities")
        assert "not kept in the quarantine folder" in str(upstream.attachments[0].refused)


NO_PDF = "  refuse: ['application/pdf']\n"


def _policy(chain: Chain, tmp: Path, policy: str) -> None:
    """Facilities' mapping file with another ``attachments:`` section (reloaded next cycle)."""
    _mapping(tmp / "fac.yaml", policy)


def test_a_file_refused_by_a_policy_since_changed_travels_once(tmp_path: Path) -> None:
    """Issue #20: a refusal is no verdict for ever. Facilities' mapping refuses PDFs; the
    admin changes it to accept them; the record's next read decides the file afresh, and it
    reaches IT, once."""
    with _running(tmp_path, "  max_size: 1MiB\n", NO_PDF) as (chain, engine):
        issue = _request(chain, ("form.pdf", FORM))
        settle(engine)
        assert "application/pdf" in str(outcomes(engine, "facilities")["form.pdf"])
        [it_issue] = chain.it.site.issues.values()
        assert it_issue.attachments == []
        [letter] = dead_letters(engine)
        settle(engine)  # the same policy: the file is not read again
        assert chain.requests("fac", "GET", "/attachment/content/") == 1
        _policy(chain, tmp_path, "  max_size: 1MiB\n")
        chain.fac.site.add_comment(issue, "Forms may travel now.")  # the record's next read
        settle(engine)
        assert outcomes(engine, "facilities") == {"form.pdf": None}
        assert [(a.filename, a.sha256) for a in it_issue.attachments] == [("form.pdf", _sha(FORM))]
        [supplier] = calls(engine, "it")
        assert [(a.name, a.refused) for a in supplier.attachments] == [("form.pdf", None)]
        settle(engine)  # once: neither read nor written again
        assert chain.requests("fac", "GET", "/attachment/content/") == 2
        assert chain.requests("it", "POST", "/attachments") == 1
        assert len(it_issue.attachments) == 1
        # The refusal's letter is closed now that the file travels, saying so.
        assert dead_letters(engine) == []
        with engine.store.begin(readonly=True) as tx:
            closed = tx.get_dead_letter(letter.id)
        assert closed is not None and str(closed.status) == "resolved"
        assert "accepted: it travels" in str(closed.resolution) and _sha(FORM) in str(
            closed.resolution
        )


def test_a_file_refused_under_the_same_policy_is_not_read_again_when_added_again(
    tmp_path: Path,
) -> None:
    """The same refused bytes uploaded again are listed (refused) once, not read each cycle."""
    with _running(tmp_path, "  max_size: 1MiB\n", NO_PDF) as (chain, engine):
        issue = _request(chain, ("form.pdf", FORM))
        settle(engine)
        chain.fac.site.attachments.add(issue, "form.pdf", FORM)  # the same file again
        settle(engine)
        settle(engine)
        [upstream] = calls(engine, "facilities")
        assert [a.refused is not None for a in upstream.attachments] == [True, True]
        assert chain.requests("fac", "GET", "/attachment/content/") == 2  # each copy once


def test_a_file_gone_404_is_refused_and_not_read_again_after_a_policy_change(
    chain: Chain, tmp_path: Path
) -> None:
    issue = _request(chain, ("form.pdf", FORM))
    struck = _failing(chain.fac, "GET", "/attachment/content/", 404, times=1)
    with _engine(chain) as runtime:
        engine = runtime.engine
        settle(engine)
        [upstream] = calls(engine, "facilities")
        [gone] = upstream.attachments
        assert "not readable" in str(gone.refused) and gone.refused_under == "unreadable: 404"
        _policy(chain, tmp_path, "  max_size: 2MiB\n")
        chain.fac.site.add_comment(issue, "Any news?")
        settle(engine)
        # Only the 404 (struck, not served): the file is gone, no policy brings it back.
        assert struck == [404] and chain.requests("fac", "GET", "/attachment/content/") == 0
        assert len(dead_letters(engine)) == 1
