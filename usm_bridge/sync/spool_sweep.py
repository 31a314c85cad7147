"""The attachment spool swept at the start of every process that syncs.

A process killed while a file waited in the spool (mid-download, mid-upload: see
:mod:`usm_bridge.attachments.streams`) leaves that file behind, ticket content on disk. Every
entry point that runs cycles or pushes sweeps before its first one: the daemon, ``sync --once``
(cron kills and restarts it more than anything) and each Celery worker process as it opens its
runtime (a worker killed by the hard time limit is replaced by a new process). The files kept
for pushes (:mod:`usm_bridge.attachments.kept`) past their age or their bound go then too.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from ..attachments.kept import KeptFiles
from ..attachments.streams import sweep_stale_spools

__all__ = ["sweep_spool"]

log = logging.getLogger(__name__)


def sweep_spool(spool: Path, kept: KeptFiles | None = None) -> int:
    """Remove the spool files in ``spool`` that processes gone left, and the ``kept`` files
    past their age or their folder's bound (:mod:`usm_bridge.attachments.kept`); how many. A
    folder that cannot be read is logged, not raised: syncing goes on, and says so."""
    removed: list[Path] = []
    # The system's temporary folder too: connectors make their scratch folders there (a mail
    # with its files, written whole before it is sent; :func:`~usm_bridge.attachments.streams.
    # scratch_folder`), which a kill mid-send leaves behind.
    scratch = Path(tempfile.gettempdir())
    for folder in dict.fromkeys([spool, scratch]):
        try:
            removed += sweep_stale_spools(folder)
        except OSError as exc:
            log.warning("attachment spool %s not swept: %s", folder, exc)
    if removed:
        log.info(
            "removed %d attachment spool files left by stopped processes", len(removed),
            extra={"event": "spool_swept", "removed": len(removed)},
        )  # fmt: skip
    expired: list[Path] = []
    if kept is not None:
        try:
            expired = kept.sweep()
        except OSError as exc:
            log.warning("kept attachments in %s not swept: %s", kept.folder, exc)
        if expired:
            log.info(
                "removed %d kept attachments past their age or the folder's bound", len(expired),
                extra={"event": "kept_files_swept", "removed": len(expired)},
            )  # fmt: skip
    return len(removed) + len(expired)
