"""An attachment's content on its way from one tool to another: in chunks, counted, hashed, cut
off at its cap, and spooled to disk when the target must wait.

No file is ever held whole in memory: a 100 MB form moves at the memory of one chunk and the
sniffing window (``bench/bench_attachment_stream.py`` measures it). Two ways through:

- :func:`copy_stream`: straight from a source iterator (``response.iter_content(CHUNK_BYTES)``)
  into a sink (a file's ``write``, an upload's), hashing SHA-256 and counting on the way;
- :func:`spool`: into a temporary file under the spool folder, for when the target must wait
  or the bridge must know the file before writing it anywhere: its SHA-256 (the identity a
  target is searched for before an upload, so that a crash between upload and commit never
  leaves a second copy), its size and its sniffed type (the policy's decision comes first).
  The :class:`SpooledFile` then gives its content back in chunks as often as needed, and is
  deleted when its ``with`` block ends.

Both read at most one chunk past the cap: the first chunk that takes the count over it ends the
stream with :class:`~usm_bridge.errors.AttachmentTooLarge`, and the source is closed. Every path
cleans up: an exception or the cap deletes the spool file at once, and a process killed midway
leaves files that :func:`sweep_stale_spools` (run at start-up) removes: a spool file's name
holds the host and the id of the process that writes it, and a file of a process of this host
that is gone is stale.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Self

from ..errors import AttachmentTooLarge
from ..file_modes import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from .sniffing import SNIFF_BYTES

__all__ = [
    "CHUNK_BYTES",
    "SPOOL_DIR_MODE",
    "SPOOL_FILE_MODE",
    "DeletedOnExit",
    "SpooledFile",
    "StreamTally",
    "copy_stream",
    "scratch_folder",
    "spool",
    "spool_prefix",
    "sweep_stale_spools",
]

#: The chunk a spool file is read back in, and what sources are asked for (64 KiB).
CHUNK_BYTES: Final = 64 * 1024
#: Spool files hold ticket content: the owner's alone, like the store (``file_modes``).
SPOOL_FILE_MODE: Final = PRIVATE_FILE_MODE
SPOOL_DIR_MODE: Final = PRIVATE_DIR_MODE
_SUFFIX: Final = ".part"
#: A scratch folder's name ends so (its files are the process's own: a whole mail being made).
_FOLDER_SUFFIX: Final = ".dir"


def _host() -> str:
    # Letters, digits and dots only: the name's dashes then part host, process id and the rest.
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:64] or "host"


def spool_prefix(pid: int | None = None) -> str:
    """How the names of the spool files a process writes begin: ``usm-spool-<host>-<pid>-``.

    The host is in the name because process ids repeat across hosts and containers sharing a
    spool folder: a sweep judges only its own host's files (:func:`sweep_stale_spools`).
    """
    return f"usm-spool-{_host()}-{os.getpid() if pid is None else pid}-"


@dataclass(frozen=True)
class StreamTally:
    """What a stream carried: its size, its SHA-256 (hex) and its first bytes (up to
    :data:`~usm_bridge.attachments.sniffing.SNIFF_BYTES`, for sniffing its type)."""

    size: int
    sha256: str
    head: bytes


def copy_stream(
    source: Iterable[bytes], sink: Callable[[bytes], object], *, cap: int
) -> StreamTally:
    """Move ``source``'s chunks into ``sink`` in order, counted and hashed.

    :param cap: the most bytes taken; the chunk that passes it is not written.
    :raises AttachmentTooLarge: the content passed ``cap`` (``sink`` got what came before).
    """
    digest = hashlib.sha256()
    head = bytearray()
    size = 0
    iterator = iter(source)
    try:
        for chunk in iterator:
            size += len(chunk)
            if size > cap:
                raise AttachmentTooLarge(cap, size)
            if len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
            digest.update(chunk)
            sink(chunk)
    finally:
        # A generator or a response's iterator holds a connection: release it on every path.
        close = getattr(iterator, "close", None)
        if callable(close):
            close()
    return StreamTally(size, digest.hexdigest(), bytes(head))


class DeletedOnExit(ABC):
    """Deleted at the end of its ``with`` block (by its own :meth:`delete`)."""

    @abstractmethod
    def delete(self) -> None:
        """Remove what the object holds on disk; safe to call more than once."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.delete()


@dataclass(frozen=True)
class SpooledFile(StreamTally, DeletedOnExit):
    """A file's content in a private temporary file, with its tally; deleted by
    :meth:`delete` or at the end of its ``with`` block (see :func:`spool`)."""

    path: Path

    def chunks(self, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The content again, in chunks (each call reads the file anew)."""
        with self.path.open("rb") as file:
            while chunk := file.read(chunk_bytes):
                yield chunk

    def delete(self) -> None:
        """Remove the spool file (no error if it is gone already)."""
        with suppress(FileNotFoundError):
            self.path.unlink()


def spool(source: Iterable[bytes], *, directory: Path, cap: int) -> SpooledFile:
    """``source``'s content in a new spool file under ``directory`` (made 0700 if missing).

    :raises AttachmentTooLarge: the content passed ``cap``; nothing is left on disk.
    :raises OSError: the disk refused (full, read-only); nothing is left on disk.
    """
    directory.mkdir(mode=SPOOL_DIR_MODE, parents=True, exist_ok=True)
    # mkstemp makes the file 0600 with O_EXCL: never someone else's file, never readable.
    fd, name = tempfile.mkstemp(prefix=spool_prefix(), suffix=_SUFFIX, dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as file:
            tally = copy_stream(source, file.write, cap=cap)
    except BaseException:
        # The cap, a failing source, a full disk, KeyboardInterrupt: no partial file stays.
        with suppress(FileNotFoundError):
            path.unlink()
        raise
    return SpooledFile(tally.size, tally.sha256, tally.head, path)


@contextmanager
def scratch_folder(directory: Path | None = None) -> Iterator[Path]:
    """A private folder for the files one operation writes (a mail with its files, made on
    disk), removed when the block ends; named like a spool file (``usm-spool-<host>-<pid>-
    ...dir``), so that a process killed inside the block leaves a folder the next sweep of
    ``directory`` removes (:func:`sweep_stale_spools`). ``directory`` defaults to the system's
    temporary folder, which the daemon, ``sync --once`` and the workers sweep at start too."""
    where = directory if directory is not None else Path(tempfile.gettempdir())
    folder = Path(tempfile.mkdtemp(prefix=spool_prefix(), suffix=_FOLDER_SUFFIX, dir=where))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sweep_stale_spools(directory: Path, *, at_startup: bool = True) -> list[Path]:
    """Remove the spool files and scratch folders (:func:`scratch_folder`) in ``directory``
    that no running process is writing: this host's of a process that is gone (killed
    midway), and, ``at_startup``, of this process's own id (a process before it that had the
    same id). Other files, other hosts' spool files among them, are left alone; a link is
    never followed. Returns the removed.
    """
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    ours = re.compile(
        rf"^usm-spool-{re.escape(_host())}-(\d+)-[A-Za-z0-9_]+"
        rf"({re.escape(_SUFFIX)}|{re.escape(_FOLDER_SUFFIX)})$"
    )
    for path in directory.iterdir():
        match = ours.match(path.name)
        if match is None or path.is_symlink():
            continue
        folder = match.group(2) == _FOLDER_SUFFIX
        if not (path.is_dir() if folder else path.is_file()):
            continue
        pid = int(match.group(1))
        if (pid == os.getpid() and at_startup) or not _alive(pid):
            with suppress(FileNotFoundError):
                if folder:
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    except OSError:
        return False
    return True
