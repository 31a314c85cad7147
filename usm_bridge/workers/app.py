"""The Celery app of a bridge, from its ``[workers]`` config.

Settings chosen for a unit of work that may be cut off at any point and run again (a cycle or
a push batch: all its state is in the store, and both are idempotent):

- ``task_acks_late`` and ``task_reject_on_worker_lost``: a task is acknowledged only once it
  ran; one whose worker died (SIGKILL, the hard time limit, the OOM killer) goes back to its
  queue for another worker instead of being lost.
- ``worker_prefetch_multiplier = 1``: a worker holds no task it is not running, so a busy or
  hung worker keeps nothing the others could run.
- ``worker_cancel_long_running_tasks_on_connection_loss`` off (Celery's default, said aloud:
  Celery warns that it may change): a task running when the broker connection drops finishes
  its work, which is safe to run again; it cannot be acknowledged on the lost connection, so
  the broker hands it out again (or lost it, if it restarted empty, and the scheduler sends the
  next one on the instance's interval), and its second run finds nothing left to do.
- No result backend: nothing reads a task's return value; what a cycle did is in the store
  (``usm-bridge status``) and the worker's log.
- Redis's ``visibility_timeout`` (how long an unacknowledged task stays invisible before Redis
  hands it out again) is longer than the hard time limit, so a task is only handed out twice
  when its worker is gone; the locks make the second run skip in any case.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import BridgeConfig

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["APP_NAME", "make_app", "safe_broker_url"]

APP_NAME = "usm_bridge"
#: Added to the hard time limit for Redis's visibility timeout.
_VISIBILITY_MARGIN = 60.0


def make_app(config: BridgeConfig) -> Celery:
    """A Celery app on ``config``'s broker, without tasks (:func:`.tasks.bind_tasks` adds them)."""
    from celery import Celery

    workers = config.workers
    app = Celery(APP_NAME, set_as_current=False)
    app.conf.update(
        broker_url=workers.broker_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": workers.time_limit + _VISIBILITY_MARGIN},
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_soft_time_limit=workers.soft_time_limit,
        task_time_limit=workers.time_limit,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # The tasks go to the per-tool queues they are sent to; nothing uses the default one.
        task_default_queue=f"{workers.queue_prefix}default",
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
    )
    return app


def safe_broker_url(config: BridgeConfig) -> str:
    """The broker URL with its password masked, for logs and messages."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(config.workers.broker_url))
