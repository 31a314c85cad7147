"""Tool events (webhooks) as hints that wake an instance's cycle early (issue #19).

An event is a hint, never data: an accepted delivery only brings the instance's next cycle
forward (debounced: :meth:`usm_bridge.sync.daemon.Schedule.hint`), and what is stored is read
back through the tool's API by that cycle as always. A forged event can at most cause a read;
polling stays the safety net at the instance's interval.

Modules:

* :mod:`.signature`  HMAC-SHA256 of the raw body, Atlassian's ``X-Hub-Signature: sha256=<hex>``
* :mod:`.seen`       the delivery ids already accepted (a bounded, TTL'd set): replays
* :mod:`.counts`     ``usm_bridge_events_total{instance,outcome}`` in the daemon's registry
* :mod:`.jira`       one delivery to ``POST /events/jira/{instance}``: checks, in order, and outcome
* :mod:`.app`        the Starlette app: the receivers beside ``/healthz`` and ``/metrics``
* :mod:`.server`     that app under uvicorn, in a thread (the daemon's ``--listen`` port)
"""
