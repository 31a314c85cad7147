"""ServiceNow's events to ``POST /events/servicenow/{instance}``: what the business rule of
``docs/servicenow-events-update-set.xml`` sends after a record of a synced table is inserted
or updated (a comment or work note is an update of its record).

The rule posts a small JSON object (:data:`BODY_FIELDS`: which record changed and when, a
hint only, never data) with:

* ``X-USM-Bridge-Signature: sha256=<base64>``: the HMAC-SHA256 of the raw body keyed with
  the shared secret, as ``GlideCertificateEncryption.generateMac(key, "HmacSHA256", body)``
  returns it (Base64), behind the same ``sha256=`` method prefix as Atlassian's;
* ``X-USM-Bridge-Delivery: <sys_id>:<sys_mod_count>``: one id per change of a record, so a
  resend of the same change is a replay.

The checks and outcomes are :class:`~usm_bridge.events.receiver.EventReceiver`'s.
"""

from __future__ import annotations

from .kinds import SERVICENOW_EVENTS

__all__ = ["BODY_FIELDS", "DELIVERY_HEADER", "SIGNATURE_HEADER"]

SIGNATURE_HEADER = SERVICENOW_EVENTS.scheme.header
DELIVERY_HEADER = SERVICENOW_EVENTS.delivery_header
#: The fields of the rule's JSON body, in its order. The receiver does not read them (the
#: cycle reads the record through the Table API); they tell a person reading a capture what
#: changed, and are checked against the shipped update set by the tests.
BODY_FIELDS = ("table", "sys_id", "sys_mod_count", "sys_updated_on")
