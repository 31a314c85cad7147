"""The scale-out on Celery (issue #18): cycles and pushes as tasks, run by ``usm-bridge worker``
processes and enqueued by ``usm-bridge scheduler`` (docs/workers.md).

- :mod:`.app`: the Celery app, from ``[workers]``.
- :mod:`.tasks`: the two tasks (an instance's cycle, a target's push batch), their queues.
- :mod:`.engine_calls`: the only module that calls the sync engine.
- :mod:`.scheduler`: what is due when, and the store lock that keeps one scheduler running.
- :mod:`.commands`: ``usm-bridge worker`` and ``usm-bridge scheduler``.

Nothing here imports Celery at package import: the other commands do not pay for it.
"""
