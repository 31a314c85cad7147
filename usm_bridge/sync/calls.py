"""Small helpers on canonical calls the engine, the router and the outbox share.

``draft_hash`` is the hash echo recognition and no-op suppression compare: the hash of what the
bridge would write into a tool (a :class:`~usm_bridge.connector.RemoteDraft`), not of the whole
call, because a tool holds only what its mapping can write. Reading back the bridge's own write
gives the same draft, so the same hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..call_copies import consistent_copy
from ..connector import RemoteDraft
from ..mapping import Mapping
from ..mapping.types import ROLES, SCALARS
from ..model import Call, Status
from ..store.encoded_json import NO_CYCLE_CHECK, JsonText

__all__ = [
    "DONE",
    "correlation_for",
    "draft_hash",
    "draft_json",
    "hash_of_draft",
    "keep_unmapped",
    "readable_fields",
    "with_changes",
    "with_values_of",
    "writable_fields",
]

#: Statuses after which a supplier no longer holds up its upstream call.
DONE = frozenset({Status.FULFILLED, Status.CONFIRMED, Status.CLOSED, Status.CANCELLED})
_BOOKKEEPING = frozenset({"created", "updated"})
#: Fields the bridge decides and no mapping reads: a read-back keeps the stored value (the
#: router names a supplier call's customer unit when it opens it; its tool has no such field).
_DECIDED_BY_THE_BRIDGE = ("customer_unit",)


def draft_hash(draft: RemoteDraft) -> str:
    """sha256 (hex) of the draft as canonical JSON."""
    return hash_of_draft(draft_json(draft))


#: :func:`draft_json`'s encoding, built once (``json.dumps`` builds one per call). NaN and
#: infinity are refused here, and the draft then takes the model's dump, which keeps them (as
#: ``json.dumps`` writes them) exactly as before this shortcut.
_DRAFT_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False,
    check_circular=NO_CYCLE_CHECK,
)  # fmt: skip


def draft_json(draft: RemoteDraft) -> JsonText:
    """The draft as canonical JSON (keys sorted, no spaces, ASCII): what :func:`draft_hash`
    hashes, and JSON the store can keep as it is (a remote state)."""
    if type(draft) is RemoteDraft:
        # Its members are JSON values already (validated as such): what model_dump(mode="json")
        # gives, without walking them into a copy first.
        members = {"fields": draft.fields, "status": draft.status,
                   "status_fields": draft.status_fields}  # fmt: skip
        try:
            return JsonText(_DRAFT_ENCODER.encode(members))
        except (TypeError, ValueError, RecursionError):
            pass  # NaN, infinity, a value set since (even a cycle): the dump's text
    text = json.dumps(
        draft.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return JsonText(text)


def hash_of_draft(text: JsonText) -> str:
    """:func:`draft_hash` of the draft whose :func:`draft_json` is ``text``."""
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def correlation_for(call_id: str) -> str:
    """The marker a create stores on the remote record, derived from the canonical call id."""
    return f"usm-bridge:{call_id}"


def with_changes(call: Call, **changes: Any) -> Call:
    """A validated copy (``model_copy(update=...)`` would skip the model's own checks)."""
    return Call.model_validate({**call.model_dump(), **changes})


def with_values_of(call: Call, values: dict[str, Any]) -> Call:
    """``call`` with ``values``, each a value another validated call holds in the same field
    (what the merges of a read take from the stored call, and the other way round).

    Such values passed their fields' validators already, so only the model's check across
    fields is run (:func:`usm_bridge.call_copies.consistent_copy`): a record read is validated
    once, when it is mapped. When the check fails, :func:`with_changes` raises the validation
    error it always raised.
    """
    return consistent_copy(call, values) or with_changes(call, **values)


def readable_fields(mapping: Mapping) -> frozenset[str]:
    """The canonical fields (scalars and people) a mapping reads from the tool."""
    spec = mapping.spec
    found = {name for name in SCALARS if getattr(spec.fields, name) is not None}
    found |= {role for role in ROLES if getattr(spec.people, role) is not None}
    if "status" in found:
        found.add("waiting_on")
    return frozenset(found)


def writable_fields(mapping: Mapping) -> frozenset[str]:
    """The canonical fields (scalars and people) a mapping writes into the tool."""
    spec = mapping.spec
    found = set()
    for name in SCALARS:
        item = getattr(spec.fields, name)
        if item is not None and not item.read_only:
            found.add(name)
    if "status" in found:
        found.add("waiting_on")
    for role in ROLES:
        person = getattr(spec.people, role)
        if person is None:
            continue
        parts = (person.name, person.email, person.ref)
        if any(part is not None and not part.read_only for part in parts):
            found.add(role)
    return frozenset(found)


def keep_unmapped(read: Call, stored: Call, mapping: Mapping) -> Call:
    """The call as read, with the stored values of fields the tool does not hold.

    A supplier call the bridge opened carries the requester, service, agreement ... of its
    upstream; a tool whose mapping has no place for them would otherwise wipe them on the
    first read-back (and the ownership rules would then see a conflict on every read).
    """
    readable = readable_fields(mapping)
    kept: dict[str, Any] = {}
    for name in (*SCALARS, *ROLES, *_DECIDED_BY_THE_BRIDGE):
        if name in readable or name in _BOOKKEEPING:
            continue
        if getattr(read, name) != getattr(stored, name):
            kept[name] = getattr(stored, name)
    if "status" in kept or "waiting_on" in kept:
        kept["status"] = stored.status
        kept["waiting_on"] = stored.waiting_on
        kept["waiting_process"] = stored.waiting_process
    if read.customer_unit is None and stored.customer_unit is not None:
        # No tool holds it: the bridge knows the party to the agreement (the customer unit of
        # a supplier call it opened), and its agreement is looked up by it.
        kept["customer_unit"] = stored.customer_unit
    return with_values_of(read, kept) if kept else read
