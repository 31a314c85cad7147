"""Content in chunks: hashed and counted on the way, cut at the cap after at most one chunk too
many, spooled to a private file that is gone on every path out (and swept after a kill)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from usm_bridge.attachments import (
    SNIFF_BYTES,
    AttachmentTooLarge,
    copy_stream,
    spool,
    sweep_stale_spools,
)
from usm_bridge.attachments.streams import SPOOL_FILE_MODE, scratch_folder, spool_prefix


class Source:
    """Chunks of a known content, counting how many were taken and whether it was closed."""

    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.taken = 0
        self.closed = False
        self.fail_after = fail_after

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self.chunks:
                if self.fail_after is not None and self.taken == self.fail_after:
                    raise ConnectionResetError("the tool hung up")
                self.taken += 1
                yield chunk
        finally:
            self.closed = True


def test_copy_hashes_counts_and_keeps_the_head_in_order() -> None:
    chunks = [os.urandom(700_000) for _ in range(3)]
    sink: list[bytes] = []
    tally = copy_stream(chunks, sink.append, cap=10**7)
    whole = b"".join(chunks)
    assert b"".join(sink) == whole
    assert tally.size == len(whole) == 2_100_000
    assert tally.sha256 == hashlib.sha256(whole).hexdigest()
    assert tally.head == whole[:SNIFF_BYTES]


def test_the_cap_reads_at_most_one_chunk_past_it_and_closes_the_source() -> None:
    source = Source([b"x" * 4] * 1000)
    sink: list[bytes] = []
    with pytest.raises(AttachmentTooLarge) as caught:
        copy_stream(source, sink.append, cap=10)
    assert source.taken == 3  # 4 + 4 fit, the third chunk takes it to 12
    assert caught.value.cap == 10 and caught.value.read == 12
    assert b"".join(sink) == b"x" * 8  # the chunk past the cap is never written
    assert source.closed


def test_content_exactly_at_the_cap_passes() -> None:
    assert copy_stream([b"ab", b"cd"], lambda _: None, cap=4).size == 4


def test_a_spool_file_is_private_gives_the_content_back_and_is_gone_after_its_block(
    tmp_path: Path,
) -> None:
    chunks = [os.urandom(100_000) for _ in range(5)]
    with spool(iter(chunks), directory=tmp_path / "spool", cap=10**6) as spooled:
        assert spooled.path.parent == tmp_path / "spool"
        assert spooled.path.stat().st_mode & 0o777 == SPOOL_FILE_MODE
        assert (tmp_path / "spool").stat().st_mode & 0o777 == 0o700
        assert b"".join(spooled.chunks()) == b"".join(chunks)
        assert b"".join(spooled.chunks(7)) == b"".join(chunks)  # again, in other chunks
        assert spooled.sha256 == hashlib.sha256(b"".join(chunks)).hexdigest()
        assert spooled.size == 500_000
    assert list((tmp_path / "spool").iterdir()) == []


def test_a_spool_past_its_cap_leaves_nothing(tmp_path: Path) -> None:
    source = Source([b"y" * 1000] * 50)
    with pytest.raises(AttachmentTooLarge):
        spool(source, directory=tmp_path, cap=2500)
    assert source.taken == 3 and source.closed
    assert list(tmp_path.iterdir()) == []


def test_a_failing_source_leaves_nothing(tmp_path: Path) -> None:
    source = Source([b"z" * 1000] * 5, fail_after=2)
    with pytest.raises(ConnectionResetError):
        spool(source, directory=tmp_path, cap=10**6)
    assert source.closed
    assert list(tmp_path.iterdir()) == []


def test_an_error_inside_the_block_still_deletes(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), spool([b"a"], directory=tmp_path, cap=10) as spooled:
        assert spooled.path.exists()
        raise RuntimeError("the upload failed")
    assert list(tmp_path.iterdir()) == []


def test_a_killed_process_leaves_a_spool_file_that_the_startup_sweep_removes(
    tmp_path: Path,
) -> None:
    # A real process spools from a source that never ends and is killed with SIGKILL midway:
    # no finally runs, the partial file stays, and the sweep finds its process gone.
    script = textwrap.dedent(
        f"""
        import itertools, sys
        from pathlib import Path
        from usm_bridge.attachments import spool
        def source():
            for n in itertools.count():
                if n == 3:
                    print("spooling", flush=True)
                yield b"q" * 65536
        spool(source(), directory=Path({str(tmp_path)!r}), cap=10**12)
        """
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == b"spooling\n"
            # A live writer's file is never swept.
            assert sweep_stale_spools(tmp_path, at_startup=True) == []
            left = list(tmp_path.iterdir())
            assert len(left) == 1 and left[0].name.startswith(spool_prefix(child.pid))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    other = tmp_path / "notes.txt"  # anything else in the folder is left alone
    other.write_text("not a spool file")
    assert sweep_stale_spools(tmp_path) == left
    assert list(tmp_path.iterdir()) == [other]


def test_the_startup_sweep_removes_files_of_its_own_id_and_skips_a_missing_folder(
    tmp_path: Path,
) -> None:
    own = tmp_path / f"{spool_prefix()}abc123.part"
    own.write_bytes(b"left by an earlier process with this id")
    # Another host's file, of a process id not running here: not this host's to judge.
    elsewhere = tmp_path / f"usm-spool-other.host-{2**22 + 5}-abc123.part"
    elsewhere.write_bytes(b"a container sharing the folder")
    assert sweep_stale_spools(tmp_path, at_startup=False) == []
    assert sweep_stale_spools(tmp_path, at_startup=True) == [own]
    assert list(tmp_path.iterdir()) == [elsewhere]
    assert sweep_stale_spools(tmp_path / "missing") == []


def test_a_sweep_while_running_spares_its_own_files(tmp_path: Path) -> None:
    with spool([b"a"], directory=tmp_path, cap=10) as spooled:
        assert sweep_stale_spools(tmp_path, at_startup=False) == []
        assert spooled.path.exists()


def test_a_failing_sink_stops_the_stream_and_closes_the_source() -> None:
    source = Source([b"a" * 10] * 5)

    def sink(chunk: bytes) -> None:
        if source.taken == 2:
            raise BrokenPipeError("the target hung up")

    with pytest.raises(BrokenPipeError):
        copy_stream(source, sink, cap=10**6)
    assert source.taken == 2 and source.closed


def test_a_killed_process_s_scratch_folder_is_swept_and_a_live_one_is_not(tmp_path: Path) -> None:
    # A process that dies inside scratch_folder() (a mail with its files half made) leaves
    # the folder; the sweep of its directory removes it whole, and never follows a link.
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from usm_bridge.attachments.streams import scratch_folder
        with scratch_folder(Path({str(tmp_path)!r})) as folder:
            (folder / "mail.eml").write_bytes(b"Subject: a form" + b"x" * 100000)
            print("writing", flush=True)
            input()
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == b"writing\n"
            assert sweep_stale_spools(tmp_path, at_startup=True) == []
            [left] = list(tmp_path.iterdir())
            assert left.is_dir() and left.name.startswith(spool_prefix(child.pid))
            assert left.name.endswith(".dir") and (left / "mail.eml").is_file()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "precious").write_text("not the sweep's")
    link = tmp_path / f"usm-spool-{left.name.split('-')[2]}-{2**22 + 7}-lnk.dir"
    link.symlink_to(kept, target_is_directory=True)
    assert sweep_stale_spools(tmp_path) == [left]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["kept", link.name])
    assert (kept / "precious").read_text() == "not the sweep's"


def test_a_scratch_folder_is_private_and_gone_after_its_block(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), scratch_folder(tmp_path) as folder:
        assert folder.parent == tmp_path and folder.stat().st_mode & 0o777 == 0o700
        (folder / "mail.eml").write_bytes(b"x")
        raise RuntimeError("the relay refused")
    assert list(tmp_path.iterdir()) == []
