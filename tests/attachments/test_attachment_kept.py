"""The files kept for pushes (:mod:`usm_bridge.attachments.kept`): whole or not at all, checked
by hash on use, bounded by age and size, and shared safely by processes."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from usm_bridge.attachments import spool
from usm_bridge.attachments.kept import KeptFiles, file_chunks
from usm_bridge.attachments.streams import spool_prefix
from usm_bridge.sync.spool_sweep import sweep_spool

MiB = 1024 * 1024


def kept_files(tmp_path: Path, *, max_bytes: int = 10 * MiB, max_age: float = 3600) -> KeptFiles:
    return KeptFiles(tmp_path / "spool", max_bytes=max_bytes, max_age=max_age)


def keep(kept: KeptFiles, content: bytes) -> Path:
    spooled = spool([content], directory=kept.spool, cap=100 * MiB)
    with spooled:
        assert kept.keep(spooled)
    return kept.folder / hashlib.sha256(content).hexdigest()


def read(kept: KeptFiles, content: bytes) -> bytes | None:
    file = kept.open(hashlib.sha256(content).hexdigest(), len(content))
    if file is None:
        return None
    with file:
        return b"".join(file_chunks(file))


def test_a_kept_file_is_its_content_under_its_hash_and_nothing_else_is_left(
    tmp_path: Path,
) -> None:
    kept = kept_files(tmp_path)
    path = keep(kept, b"form")
    assert path.read_bytes() == b"form" and path.stat().st_mode & 0o777 == 0o600
    assert kept.folder.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in kept.spool.iterdir()) == ["by-sha256"]  # no temporary file
    assert read(kept, b"form") == b"form"
    assert read(kept, b"other") is None


def test_a_kept_file_that_is_not_its_content_is_removed_never_read(tmp_path: Path) -> None:
    kept = kept_files(tmp_path)
    path = keep(kept, b"form, whole")
    path.write_bytes(b"form, wh")  # cut short (a disk fault): never sent
    assert read(kept, b"form, whole") is None
    assert not path.exists()


def test_a_half_written_spool_file_never_gets_a_hash_name(tmp_path: Path) -> None:
    """A process killed while downloading leaves its temporary spool file only, which the next
    start sweeps; nothing under the kept folder names it."""
    kept = kept_files(tmp_path)
    kept.spool.mkdir(parents=True)
    with pytest.raises(RuntimeError):

        def cut() -> object:
            yield b"half"
            raise RuntimeError("killed")

        spool(cut(), directory=kept.spool, cap=MiB)  # type: ignore[arg-type]
    assert not kept.folder.exists()
    left = kept.spool / f"{spool_prefix(999_999_999)}x.part"  # a process gone left it
    left.write_bytes(b"half")
    assert sweep_spool(kept.spool, kept) == 1 and not left.exists()


def test_a_file_larger_than_the_bound_is_not_kept(tmp_path: Path) -> None:
    kept = kept_files(tmp_path, max_bytes=10)
    spooled = spool([b"x" * 11], directory=kept.spool, cap=MiB)
    with spooled:
        assert not kept.keep(spooled)
    assert not spooled.path.exists()  # deleted at the block's end, as a file not kept is


def test_the_sweep_removes_the_old_then_the_least_recently_used_past_the_bound(
    tmp_path: Path,
) -> None:
    kept = kept_files(tmp_path, max_bytes=25, max_age=3600)
    now = time.time()
    paths = {}
    for n, age in enumerate([7200, 30, 20, 10]):  # the first past its age
        content = bytes([65 + n]) * 10
        paths[n] = keep(kept, content)
        os.utime(paths[n], (now - age, now - age))
    stray = kept.folder / "notes.txt"  # not a kept file: left alone
    stray.write_text("x")
    # Used just now: the file read last is kept longest.
    assert read(kept, bytes([66]) * 10) is not None
    removed = kept.sweep(now=time.time())
    assert sorted(removed) == sorted([paths[0], paths[2]])
    assert sorted(p.name for p in kept.folder.iterdir()) == sorted(
        [paths[1].name, paths[3].name, "notes.txt"]
    )


def _churn(spool_dir: str, rounds: int) -> None:
    kept = KeptFiles(Path(spool_dir), max_bytes=3 * 1000, max_age=3600)
    for n in range(rounds):
        content = bytes([n % 5]) * 1000
        keep(kept, content)
        got = read(kept, content)
        assert got in (None, content)  # swept by the other process meanwhile, or whole
        kept.sweep()


def test_two_processes_keeping_reading_and_sweeping_one_folder_never_see_a_partial_file(
    tmp_path: Path,
) -> None:
    kept = kept_files(tmp_path)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_churn, args=(str(kept.spool), 200)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    for path in kept.folder.iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    assert [p.name for p in kept.spool.iterdir()] == ["by-sha256"]
