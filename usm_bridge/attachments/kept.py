"""Files kept on disk after their intake, by content, for the pushes that send them on.

A file read from one tool is written to every tool its call is linked to. Without a copy at
hand each push would download it from its source again: a file bound for N tools read N+1
times, from a tool that may be slow, rate limited or gone meanwhile. So the intake keeps what
it read, under its SHA-256 (``<spool>/by-sha256/<sha256>``), and a push reads it from there,
checked against its SHA-256 first; a file no longer kept (swept, another host's disk) is read
from its source as before.

What makes it safe to share (the daemon and Celery worker processes on one host use one spool
folder, :class:`~usm_bridge.config.AttachmentsConfig`):

- **crash-safe**: a file gets its hash name only whole: written under a temporary spool name
  (``usm-spool-<host>-<pid>-*.part``, swept at start-up when its process is gone), flushed to
  disk (``fsync``), then renamed, which is atomic; a file under a hash name is never half
  written, and one whose content is not its name (a disk fault, a hand edit) is removed when
  found, never sent;
- **across processes**: two processes keeping the same file rename the same bytes over each
  other; a reader holds an open file, which a sweep removing it meanwhile does not disturb;
- **bounded**: a file not used for ``max_age`` is removed, and past ``max_bytes`` in all the
  least recently used go first (each use renews a file's time); a file larger than
  ``max_bytes`` is not kept at all. :meth:`KeptFiles.sweep` runs at every process's start
  (:mod:`usm_bridge.sync.spool_sweep`) and, after a file is kept, at most once a minute.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from .streams import CHUNK_BYTES, SPOOL_DIR_MODE, SpooledFile

__all__ = ["KEPT_FOLDER", "KeptFiles", "file_chunks"]

log = logging.getLogger(__name__)

#: The spool's subfolder the kept files live in.
KEPT_FOLDER: Final = "by-sha256"
#: How often one process sweeps the kept files while it keeps more (seconds).
SWEEP_EVERY: Final = 60.0
_HASH_NAME: Final = re.compile(r"^[0-9a-f]{64}$")
_swept_lock = threading.Lock()
#: When this process last swept each folder (``time.monotonic``).
_swept_at: dict[Path, float] = {}


def file_chunks(file: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``file``'s content from where it stands, in chunks."""
    while chunk := file.read(chunk_bytes):
        yield chunk


@dataclass(frozen=True)
class KeptFiles:
    """The kept files under one spool folder (see the module docstring)."""

    spool: Path
    max_bytes: int
    max_age: float

    @property
    def folder(self) -> Path:
        return self.spool / KEPT_FOLDER

    def _path(self, sha256: str) -> Path | None:
        return self.folder / sha256 if _HASH_NAME.match(sha256) else None

    def keep(self, spooled: SpooledFile) -> bool:
        """Keep ``spooled`` (a file just taken in, whole and hashed) under its SHA-256: it is
        moved, so the end of its ``with`` block deletes nothing. ``False`` when it is not
        kept (larger than the bound, a disk that refused: logged, the push reads the source)."""
        path = self._path(spooled.sha256)
        if path is None or spooled.size > self.max_bytes:
            return False
        try:
            self.folder.mkdir(mode=SPOOL_DIR_MODE, parents=True, exist_ok=True)
            with spooled.path.open("rb") as file:
                os.fsync(file.fileno())  # whole on disk before it has its hash name
            os.replace(spooled.path, path)
            _sync_folder(self.folder)
        except OSError as exc:
            log.warning("attachment %s not kept in %s: %s", spooled.sha256, self.folder,
                        exc.strerror or exc)  # fmt: skip
            return False
        self._sweep_now_and_then()
        return True

    def open(self, sha256: str, size: int) -> BinaryIO | None:
        """The kept file of ``sha256``, open at its start, its content checked against its
        hash and ``size``; ``None`` when none is kept (or the one kept is not that content:
        it is removed). The caller closes it."""
        path = self._path(sha256)
        if path is None:
            return None
        try:
            file = path.open("rb")
        except OSError:
            return None
        try:
            digest, count = hashlib.sha256(), 0
            for chunk in file_chunks(file):
                digest.update(chunk)
                count += len(chunk)
            if (digest.hexdigest(), count) != (sha256, size):
                log.warning("kept attachment %s is not its content: removed, read from its "
                            "source instead", path)  # fmt: skip
                file.close()
                with suppress(OSError):
                    path.unlink()
                return None
            with suppress(OSError):
                os.utime(path)  # used: the least recently used go first
            file.seek(0)
        except OSError:
            file.close()
            return None
        return file

    def sweep(self, now: float | None = None) -> list[Path]:
        """Remove the kept files not used for ``max_age``, then the least recently used past
        ``max_bytes`` in all; the removed. Other processes may keep, read and sweep meanwhile:
        a file gone already is skipped, one being read stays readable to its reader."""
        removed: list[Path] = []
        if not self.folder.is_dir():
            return removed
        now = time.time() if now is None else now
        kept: list[tuple[float, int, Path]] = []
        for path in self.folder.iterdir():
            if not _HASH_NAME.match(path.name):
                continue
            try:
                stat = path.lstat()
            except FileNotFoundError:
                continue
            kept.append((stat.st_mtime, stat.st_size, path))
        kept.sort()
        total = sum(size for _, size, _ in kept)
        for mtime, size, path in kept:
            if now - mtime <= self.max_age and total <= self.max_bytes:
                break
            with suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
            total -= size
        return removed

    def _sweep_now_and_then(self) -> None:
        with _swept_lock:
            last = _swept_at.get(self.folder)
            if last is not None and time.monotonic() - last < SWEEP_EVERY:
                return
            _swept_at[self.folder] = time.monotonic()
        try:
            self.sweep()
        except OSError as exc:
            log.warning("kept attachments in %s not swept: %s", self.folder, exc)


def _sync_folder(folder: Path) -> None:
    """The rename made durable: the folder's entry flushed (where the system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
