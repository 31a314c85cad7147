"""Files the bridge creates on disk get restrictive permissions whatever the process umask.

The store holds ticket text and people's names, so its file is the owner's alone (0600); SQLite
gives the ``-wal`` and ``-shm`` files it makes beside a database the database file's own
permissions, so creating that file first is enough for all three. Attachments' files (spooled
on their way, refused and quarantined) are the owner's alone too, in folders only the owner can
enter. Log files are 0640: the owner
writes, an operators' group may read. A stricter umask still narrows these modes further; a
file that already exists keeps the mode an administrator gave it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

__all__ = [
    "LOG_MODE",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "STORE_MODE",
    "create_file",
    "open_log",
]

#: Files holding ticket content (attachments spooled or quarantined): the owner's alone, and
#: never executable.
PRIVATE_FILE_MODE = 0o600
#: Folders of such files (the attachment spool, the quarantine).
PRIVATE_DIR_MODE = 0o700
#: The SQLite store and its WAL files: read and written by the owner only.
STORE_MODE = PRIVATE_FILE_MODE
#: Log files the bridge writes: the owner writes, the group reads.
LOG_MODE = 0o640


def create_file(path: Path, mode: int) -> None:
    """Create ``path`` empty with ``mode`` if it does not exist; leave an existing file alone.

    ``O_CREAT`` without ``O_EXCL``: two processes starting together on a fresh store both
    succeed, and the first one's mode holds.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, mode)
    os.close(fd)


def open_log(path: Path) -> TextIO:
    """Open the log file ``path`` for appending (UTF-8), creating it with :data:`LOG_MODE`."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_MODE)
    return os.fdopen(fd, "a", encoding="utf-8")
