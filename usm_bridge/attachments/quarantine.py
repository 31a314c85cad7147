"""The quarantine folder: refused files kept for an admin to look at, never opened by the bridge.

Where the config names one (``[attachments] quarantine = "PATH"``), every refused file whose
content was read goes there, beside a sidecar ``.json`` of what is known of it and why it was
refused (:meth:`~usm_bridge.attachments.refusals.Refusal.metadata`); a file cut off at its cap
has no content to keep, and leaves its sidecar alone. The folder and its files are the owner's
alone (0700, 0600: never executable), like the store's file (:mod:`usm_bridge.file_modes`).

A kept file is named ``<sha256>-<safe name>`` (``unread-<digest of where it is>-<safe name>``
for a file never read whole): the same file refused twice is kept once. It is
written under a temporary name first and renamed when complete, so the folder never shows half a
file as if it were whole; a crash midway leaves a ``.part`` that the next keep of the same file
replaces.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import Final

from ..file_modes import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from .names import safe_file_name
from .refusals import Refusal

__all__ = ["QUARANTINE_DIR_MODE", "QUARANTINE_FILE_MODE", "Quarantined", "keep_refused"]

QUARANTINE_DIR_MODE: Final = PRIVATE_DIR_MODE
QUARANTINE_FILE_MODE: Final = PRIVATE_FILE_MODE
_NAME_BYTES: Final = 255 - 64 - 1 - len(".json.part")


class Quarantined:
    """Where a refused file was kept: its content (``None`` when there was none to keep) and its
    sidecar."""

    def __init__(self, content: Path | None, sidecar: Path) -> None:
        self.content = content
        self.sidecar = sidecar


def keep_refused(directory: Path, refusal: Refusal, content: Iterable[bytes] | None) -> Quarantined:
    """Keep ``refusal``'s file (its ``content`` in chunks, e.g. ``SpooledFile.chunks()``; ``None``
    when it was not kept) and its sidecar in ``directory``, made 0700 if missing.

    :raises OSError: the folder cannot be written (the caller still notes and dead-letters the
        refusal: the quarantine is an extra, never the only record).
    """
    directory.mkdir(mode=QUARANTINE_DIR_MODE, parents=True, exist_ok=True)
    # 64 hex digits, a dash, the name, ".json.part": within a file system's 255 bytes.
    # A file never read whole is named by a digest of where it is (its key), not of content.
    known = refusal.sha256 or "unread-" + hashlib.sha256(refusal.key.encode()).hexdigest()[:57]
    stem = f"{known}-{safe_file_name(refusal.name, max_bytes=_NAME_BYTES)}"
    kept: Path | None = None
    if content is not None:
        kept = directory / stem
        if not kept.exists():
            _write_whole(kept, content)
    sidecar = directory / f"{stem}.json"
    text = json.dumps(refusal.metadata(), indent=2, sort_keys=True, ensure_ascii=False)
    _write_whole(sidecar, [text.encode("utf-8") + b"\n"])
    return Quarantined(kept, sidecar)


def _write_whole(path: Path, chunks: Iterable[bytes]) -> None:
    part = path.with_name(path.name + ".part")
    with suppress(FileNotFoundError):
        part.unlink()
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, QUARANTINE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as file:
            for chunk in chunks:
                file.write(chunk)
        os.replace(part, path)
    except BaseException:
        with suppress(FileNotFoundError):
            part.unlink()
        raise
