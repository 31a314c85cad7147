"""The read and the mapping in a forked child process (``usm_bridge.sync.child_read``): every
record has its outcome, a child's death fails the cycle without a hang and loses or duplicates
nothing, the child dies with its parent and on a stop, and a process with threads of its own
reads in process. The cycles run in ``child_read_harness.py`` (a process without threads:
pytest's workers have some, and a fork is refused there)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from usm_bridge.errors import RetriableRemoteError
from usm_bridge.store import Store
from usm_bridge.store import schema as t
from usm_bridge.sync import child_read
from usm_bridge.sync.fork_safety import fork_refused_by_threads, mark_fork_safe

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork, prctl")

HARNESS = Path(__file__).with_name("child_read_harness.py")
COUNT, PAGE, KILL_AT = 30, 4, 9
MALFORMED = {3, 10, 22}
BOOM = {7, 17}
GOOD = COUNT - len(MALFORMED) - len(BOOM)


def _start(store_url: str, folder: Path, scenario: str) -> subprocess.Popen[str]:
    tests = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, *sys.path])}
    return subprocess.Popen(
        [sys.executable, str(HARNESS), store_url, str(folder), scenario],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _run(store_url: str, folder: Path, scenario: str) -> list[dict[str, Any]]:
    process = _start(store_url, folder, scenario)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _pids(folder: Path) -> list[int]:
    return [int(line) for line in (folder / "read-pids").read_text().split()]


def _stored(store: Store) -> tuple[Counter[str], list[tuple[str, str, str]]]:
    """Calls by hr's remote id, and the open dead letters (subject, stage, reason)."""
    with store.engine.connect() as conn:
        ids = Counter(
            row.remote_id for row in conn.execute(sa.select(t.identities.c.remote_id)).all()
        )
        letters = [
            (row.subject, row.stage, row.reason)
            for row in conn.execute(
                sa.select(t.dead_letters.c.subject, t.dead_letters.c.stage, t.dead_letters.c.reason)
            ).all()
        ]
    return ids, letters


def _check_every_record_once(store: Store) -> None:
    ids, letters = _stored(store)
    # One call per good record, each once; one dead letter per bad record, each once, with
    # the reason: the mapping's refusal or the plugin's bug. N records, N outcomes.
    assert len(ids) == GOOD and set(ids.values()) == {1}
    subjects = Counter(subject for subject, _, _ in letters)
    assert len(subjects) == len(MALFORMED) + len(BOOM) and set(subjects.values()) == {1}
    assert set(ids).isdisjoint(subjects)
    assert len(ids) + len(subjects) == COUNT
    reasons = sorted(reason for _, _, reason in letters)
    assert sum("title" in r for r in reasons) == len(MALFORMED), reasons
    assert sum("boom on" in r and "plugin" in r for r in reasons) == len(BOOM), reasons
    assert {stage for _, stage, _ in letters} == {"map"}


def _one_cycle_read_in_the_child(store_url: str, folder: Path, scenario: str) -> dict[str, Any]:
    """The scenario's one cycle: every record read, each good one stored, each bad one a dead
    letter, read in a child process (not in the harness)."""
    (cycle,) = _run(store_url, folder, scenario)
    assert cycle["error"] is None
    assert cycle["read"] == COUNT
    assert cycle["stored"] == GOOD
    assert cycle["dead_letters"] == len(MALFORMED) + len(BOOM)
    (pid,) = _pids(folder)
    assert pid != cycle["pid"]
    return cycle


def test_every_record_read_in_the_child_has_one_outcome(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    _one_cycle_read_in_the_child(store_url, tmp_path, "read")
    _check_every_record_once(store)
    with store.begin(readonly=True) as tx:
        assert tx.get_cursor("hr-tool") == str(COUNT)


def test_a_child_killed_mid_page_fails_the_cycle_and_the_next_loses_and_duplicates_nothing(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    killed, again = _run(store_url, tmp_path, "kill")
    # A clear error, not a hang: which read, which process, how it ended.
    assert "child process" in killed["error"]
    assert "killed by signal 9 (SIGKILL)" in killed["error"]
    # The two pages sent before the kill were stored (the third was cut off mid-page).
    assert killed["read"] == 2 * PAGE
    assert again["error"] is None
    assert again["read"] == COUNT - 2 * PAGE  # read again from the cursor after page 2
    _check_every_record_once(store)
    assert len(_pids(tmp_path)) == 2


def _gone(pid: int, within: float) -> bool:
    """Whether ``pid`` ended (or is a zombie waiting for init) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def _child_pid(folder: Path, process: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 60
    while not (folder / "child-pid").exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the child never reached its record"
        time.sleep(0.05)
    time.sleep(0.1)  # the pid written whole
    return int((folder / "child-pid").read_text())


def test_the_child_dies_with_its_parent(store: Store, store_url: str, tmp_path: Path) -> None:
    process = _start(store_url, tmp_path, "hang")
    child = _child_pid(tmp_path, process)
    process.kill()  # SIGKILL: no clean-up of any kind in the parent
    process.communicate(timeout=30)
    try:
        assert _gone(child, within=10), f"child {child} outlived its parent"
    finally:
        if not _gone(child, within=0.1):
            os.kill(child, signal.SIGKILL)  # not left behind by a failing run


def test_a_stop_kills_the_child_and_ends_the_cycle(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    process = _start(store_url, tmp_path, "hang")
    child = _child_pid(tmp_path, process)
    process.send_signal(signal.SIGTERM)  # the harness's stop, as sync --once's signal relay
    out, err = process.communicate(timeout=30)  # not the child's hour-long wait
    assert process.returncode == 0, err[-3000:]
    (cycle,) = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert cycle["error"] is None  # a stop, not a failure
    # The pages before the record it hung on, or fewer: a stop ends the read after the record
    # being stored when it came; the cursor never passes what was stored.
    assert 0 < cycle["read"] <= 2 * PAGE
    with store.begin(readonly=True) as tx:
        assert int(tx.get_cursor("hr-tool") or 0) <= cycle["read"]
    assert _gone(child, within=5)


def test_a_process_with_a_thread_of_its_own_reads_in_process(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    (cycle,) = _run(store_url, tmp_path, "threads")
    assert cycle["error"] is None and cycle["read"] == COUNT
    # In the harness itself: no fork beside a thread that may hold a lock.
    assert _pids(tmp_path) == [cycle["pid"]]
    _check_every_record_once(store)


def test_a_thread_not_marked_fork_safe_refuses_the_fork() -> None:
    """Judged by the test's own thread's name: pytest's worker (and the suite's libraries) may
    run threads of their own, Python's or not, and the reason names every one."""
    release = threading.Event()
    beside = threading.Thread(target=release.wait, name="beside-the-cycle")
    beside.start()
    try:
        refused = fork_refused_by_threads()
        assert refused is not None and "beside-the-cycle" in refused
        mark_fork_safe(beside)
        refused = fork_refused_by_threads()
        assert refused is None or "beside-the-cycle" not in refused
    finally:
        release.set()
        beside.join()


def test_a_mark_ends_with_its_thread_and_passes_to_no_later_one() -> None:
    """A thread's ident is reused by a thread started after it ends (glibc reuses the stack):
    the mark is the thread's, not the ident's (the suite once met a new thread taken for a
    marked one). Every later thread is refused; in a process with no other thread starting
    (the usual case), one of them reuses the marked thread's ident."""
    marked = threading.Thread(target=lambda: None, name="marked-and-gone")
    marked.start()
    mark_fork_safe(marked)
    marked.join()
    for attempt in range(20):
        release = threading.Event()
        later = threading.Thread(target=release.wait, name=f"started-later-{attempt}")
        later.start()
        try:
            refused = fork_refused_by_threads()
            assert refused is not None and f"started-later-{attempt}" in refused
        finally:
            release.set()
            later.join()
        if later.ident == marked.ident:
            break


def test_what_cannot_cross_the_pipe_is_named_with_its_type() -> None:
    class Local(Exception):  # a local class cannot be pickled
        pass

    portable = child_read._portable(Local("the tool said no"))
    assert isinstance(portable, child_read.ChildReadError)
    assert str(portable) == "Local: the tool said no"
    remote = child_read._portable(RetriableRemoteError("too many requests", status=429))
    assert isinstance(remote, RetriableRemoteError)
    assert "HTTP 429" in str(remote)
    pickle.dumps(portable)


def test_a_connector_not_subclassing_connector_reads_in_process(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    """A wrapper that delegates to a connector declaring ``reads_in_child`` by ``__getattr__``
    (a third-party plugin, ``tests/daemon``'s ``HeldConnector``) has declared nothing itself:
    its read stays in the cycle's process, and every record has its outcome."""
    (cycle,) = _run(store_url, tmp_path, "wrapped")
    assert cycle["error"] is None
    assert cycle["read"] == COUNT
    assert cycle["stored"] == GOOD
    assert _pids(tmp_path) == [cycle["pid"]]
    _check_every_record_once(store)


def test_whether_a_connector_declares_reads_in_child_is_read_from_its_class() -> None:
    class Plain:  # no Connector base, no reads_in_child
        kind = "plain"

    class Declares:
        reads_in_child = True

    class Delegating:
        def __getattr__(self, name: str) -> Any:
            return getattr(Declares(), name)

    assert not child_read.declares_reads_in_child(Plain())
    assert child_read.declares_reads_in_child(Declares())
    assert not child_read.declares_reads_in_child(Delegating())
    refused = child_read.fork_refused(Plain())  # type: ignore[arg-type]
    assert refused == "the plain connector does not declare reads_in_child"
    refused = child_read.fork_refused(Delegating())  # type: ignore[arg-type]
    assert refused == "the Delegating connector does not declare reads_in_child"


def _downloads(folder: Path) -> list[tuple[int, str]]:
    path = folder / "downloads"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(int(pid), file_id) for pid, file_id in (line.split() for line in lines)]


def _check_every_file_once(store: Store, folder: Path, harness: int) -> None:
    """Every file of every stored record downloaded once, by the cycle's process (the child
    only reads and maps), kept once by its content, and on its call with its SHA-256."""
    held: dict[str, list[str]] = json.loads((folder / "files.json").read_text())
    ids, letters = _stored(store)
    refused = {subject for subject, _, _ in letters}
    wanted = {fid for fid, (record, _) in held.items() if record in ids}
    assert wanted and all(record in ids or record in refused for record, _ in held.values())
    downloads = _downloads(folder)
    assert {pid for pid, _ in downloads} == {harness}
    assert sorted(fid for _, fid in downloads) == sorted(wanted)  # each once, none of the refused
    kept = {path.name for path in (folder / "spool" / "by-sha256").iterdir()}
    assert kept == {held[fid][1] for fid in wanted}
    by_record: dict[str, set[str]] = {}
    for fid in wanted:
        record, digest = held[fid]
        by_record.setdefault(record, set()).add(digest)
    with store.begin(readonly=True) as tx:
        for record in ids:
            stored = tx.find_call("hr-tool", record)
            assert stored is not None
            digests = [a.sha256 for a in stored.call.attachments]
            assert len(digests) == len(set(digests))  # the same bytes twice: one attachment
            assert set(digests) == by_record.get(record, set()), record


def test_files_of_records_read_in_the_child_are_taken_in_once_by_the_cycle(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    cycle = _one_cycle_read_in_the_child(store_url, tmp_path, "files")
    _check_every_record_once(store)
    _check_every_file_once(store, tmp_path, cycle["pid"])


def test_a_child_killed_mid_read_of_records_with_files_loses_and_repeats_no_file(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    killed, again = _run(store_url, tmp_path, "files-kill")
    assert "killed by signal 9 (SIGKILL)" in killed["error"]
    assert killed["read"] == 2 * PAGE
    assert again["error"] is None
    assert again["read"] == COUNT - 2 * PAGE
    assert len(_pids(tmp_path)) == 2
    _check_every_record_once(store)
    _check_every_file_once(store, tmp_path, killed["pid"])
