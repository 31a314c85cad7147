"""Celery's log lines in the bridge's format.

Left to itself, a Celery worker adds handlers of its own beside the bridge's: one on the
process pool's logger (billiard's ``multiprocessing``, which does not propagate) and one on
``celery.task``. Their plain lines ("[2026-12-07 20:40:01,512: ERROR/MainProcess] Process
'ForkPoolWorker-1' pid:4121 exited with 'signal 15 (SIGTERM)'") then land among the JSON
lines of ``log_format = "json"``, and a log shipper reading one JSON object per line breaks
on them. Answering Celery's ``setup_logging`` signal tells it that logging is configured:
it adds no handler, and those two loggers are pointed at the root's (the bridge's) handler.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["log_celery_through_the_bridge"]

#: Loggers Celery or billiard give handlers of their own (and ``propagate = False``).
_OWN_HANDLERS = ("multiprocessing", "celery.task", "celery.redirected")


def log_celery_through_the_bridge(app: Celery) -> None:
    """From now on in this process (and the pool processes it forks), Celery configures no
    logging of its own; the loggers it would have given their own handlers write through the
    root logger's. Standard output and error are still sent to the log, as Celery does."""
    from celery.signals import setup_logging
    from celery.utils.log import get_multiprocessing_logger

    def _configured_by_the_bridge(loglevel: int | str | None = None, **_: Any) -> None:
        # billiard makes its logger on first use and sets ``propagate = 0`` then: made now,
        # so that what is set below stays.
        get_multiprocessing_logger()
        for name in _OWN_HANDLERS:
            logger = logging.getLogger(name)
            logger.handlers = []
            logger.propagate = True
        # Celery would set the root's level; the bridge leaves other libraries' alone and sets
        # Celery's (a task received, succeeded), and the pool's to errors as Celery does.
        logging.getLogger("celery").setLevel(loglevel or logging.INFO)
        logging.getLogger("multiprocessing").setLevel(logging.ERROR)
        # What Celery does when it sets logging up itself: a connector's stray print() becomes
        # a log line (and so JSON too) instead of bare text on the worker's output.
        if app.conf.worker_redirect_stdouts:
            app.log.redirect_stdouts(app.conf.worker_redirect_stdouts_level)

    # One receiver per process, for the app of the worker started last (dispatch_uid).
    setup_logging.disconnect(dispatch_uid=__name__)
    setup_logging.connect(_configured_by_the_bridge, weak=False, dispatch_uid=__name__)
