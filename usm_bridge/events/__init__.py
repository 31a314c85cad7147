"""Tool events (webhooks) as hints that wake an instance's cycle early (issue #19).

An event is a hint, never data: an accepted delivery only brings the instance's next cycle
forward (debounced: :meth:`usm_bridge.sync.daemon.Schedule.hint`), and what is stored is read
back through the tool's API by that cycle as always. A forged event can at most cause a read;
polling stays the safety net at the instance's interval.

Modules:

* :mod:`.signature`  HMAC-SHA256 of the raw body: Atlassian's ``sha256=<hex>``, ServiceNow's
                     ``sha256=<base64>``
* :mod:`.kinds`      the kinds that take events, each with its signature scheme and id header
* :mod:`.receiver`   one delivery to ``POST /events/{kind}/{instance}``: checks, in order, and
                     outcome, for every kind
* :mod:`.jira`, :mod:`.servicenow`  what each tool sends (headers, the rule's body fields)
* :mod:`.seen`       the delivery ids already accepted (a bounded, TTL'd set): replays
* :mod:`.counts`     ``usm_bridge_events_total{instance,outcome}`` in the daemon's registry
* :mod:`.app`        the Starlette app: the receivers beside ``/healthz`` and ``/metrics``
* :mod:`.server`     that app under uvicorn, in a thread (the daemon's ``--listen`` port)
* :mod:`.serve_app`, :mod:`.broker_wake`  ``usm-bridge serve``: the same receivers beside
                     Celery workers, an accepted event enqueuing the instance's cycle
* :mod:`.registration`  ``usm-bridge webhooks register``: Jira's admin webhooks over REST
* :mod:`.commands`   the ``serve`` and ``webhooks register`` commands
"""
