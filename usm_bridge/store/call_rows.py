"""A call's row and audit rows, built from one encoding of the call.

Storing a call needs its JSON three ways: the row's document (``calls.canonical``), the content
hash (the content without bookkeeping, keys sorted, ASCII), and the content once more as the
``after`` of its ``call_created`` event. :func:`encode_call` dumps the call once and encodes
its content once: the hash is taken over that text, the event keeps it, and the row's document
is it with the bookkeeping members (``id``, ``updated``) added, so the whole document is walked
by the encoder once, not three times. The hash is byte for byte :func:`fingerprint_hash` of the
content (stores written before keep their hashes).

Both :class:`~usm_bridge.store.Transaction` (a call alone) and the page's unit of work
(:mod:`.page_transaction`) build their rows here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from usm_bridge.errors import StoreError
from usm_bridge.model import Call
from usm_bridge.store.audit_log import audit_row
from usm_bridge.store.call_facts import fact_columns, facts_of
from usm_bridge.store.encoded_json import NO_CYCLE_CHECK, JsonText, encode_json

__all__ = [
    "BOOKKEEPING_KEYS",
    "EncodedCall",
    "call_created",
    "call_updated",
    "changed_call_row",
    "content_of",
    "encode_call",
    "fingerprint_hash",
    "identity_linked",
    "new_call_row",
]

#: The keys of a call's document that are not content (left out of its hash and audit diffs).
BOOKKEEPING_KEYS = frozenset({"id", "updated"})


def _canonical_text(value: Any) -> str:
    """The hash's encoding: keys sorted, no spaces, non-ASCII escaped."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


#: The hash's encoding, built once (``json.dumps`` builds an encoder per call); NaN and
#: Infinity are refused, as the store's serializer refuses them (not JSON: PostgreSQL would
#: refuse them and SQLite would keep them). No check for cycles: it encodes a model's dump, a
#: fresh tree, and gives the same text without it (:data:`.encoded_json.NO_CYCLE_CHECK`).
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False,
    check_circular=NO_CYCLE_CHECK,
)  # fmt: skip


def fingerprint_hash(fingerprint: Mapping[str, Any]) -> str:
    """The sha256 (hex) of a content fingerprint as canonical JSON (the content hash)."""
    return hashlib.sha256(_canonical_text(fingerprint).encode("ascii")).hexdigest()


def content_of(canonical: Mapping[str, Any]) -> dict[str, Any]:
    """A call's document without its bookkeeping keys."""
    # A copy less its two keys: a C loop, where a comprehension tests each of some thirty.
    content = dict(canonical)
    for key in BOOKKEEPING_KEYS:
        content.pop(key, None)
    return content


@dataclass(frozen=True)
class EncodedCall:
    """One call, encoded once (see the module docstring)."""

    #: ``call.model_dump(mode="json")``: what audit diffs compare, what a page keeps of the row.
    canonical: dict[str, Any]
    #: ``canonical`` as the JSON the row stores.
    document: JsonText
    #: The content fingerprint as the JSON the hash is taken over (and ``call_created`` keeps).
    content: JsonText
    content_hash: str
    #: The call's facts (:mod:`.call_facts`): what a conformance report reads of the row.
    facts: JsonText
    #: The fingerprint as a dict, for a subclass of Call that fingerprints differently.
    fingerprint: dict[str, Any] | None = None

    def content_dict(self) -> dict[str, Any]:
        """The content fingerprint as a dict (for diffs: only a change of content needs it)."""
        return self.fingerprint if self.fingerprint is not None else content_of(self.canonical)


def encode_call(call: Call) -> EncodedCall:
    """``call`` encoded once for its row, its hash and its audit events.

    :raises StoreError: the call holds a value that is not JSON (a float NaN or infinity in
        its attributes), naming the call.
    """
    canonical = call.model_dump(mode="json")
    try:
        if type(call).content_fingerprint is not Call.content_fingerprint:
            # A subclass that fingerprints differently is asked, and encoded apart.
            fingerprint = call.content_fingerprint()
            content = JsonText(_ENCODER.encode(fingerprint))
            document = encode_json(canonical)
            return EncodedCall(
                canonical,
                document,
                content,
                _hash(content),
                facts_of(canonical),
                fingerprint=fingerprint,
            )
        # The content once, in the hash's encoding; the document is the same text with the
        # bookkeeping members added (its keys in another order than the model's, which JSON
        # does not keep anyway).
        content = JsonText(_ENCODER.encode(content_of(canonical)))
        bookkeeping = [
            f'"{key}":{_ENCODER.encode(canonical[key])}'
            for key in sorted(BOOKKEEPING_KEYS)
            if key in canonical
        ]
        inner = content[1:-1]
        document = JsonText("{" + ",".join([*bookkeeping, inner] if inner else bookkeeping) + "}")
    except ValueError as exc:
        raise StoreError(f"call {call.id!r} cannot be stored: {exc}") from None
    return EncodedCall(canonical, document, content, _hash(content), facts_of(canonical))


def _hash(content: str) -> str:
    return hashlib.sha256(content.encode("ascii")).hexdigest()


def changed_call_row(
    call: Call, encoded: EncodedCall, version: int, now: datetime
) -> dict[str, Any]:
    """The columns of a call row that a change of its content sets (its fact columns too:
    every path that writes a call builds its row here, so they never differ from the
    document)."""
    return {
        "unit": call.unit,
        "call_type": call.call_type.value,
        "status": call.status.value,
        "canonical": encoded.document,
        "facts": encoded.facts,
        "version": version,
        "content_hash": encoded.content_hash,
        "updated_at": now,
        "open_forks": any(fork.call is None for fork in call.chain.forks),
        **fact_columns(encoded.canonical),
    }


def new_call_row(call: Call, encoded: EncodedCall, now: datetime) -> dict[str, Any]:
    """Every column of a new call's row."""
    row = changed_call_row(call, encoded, 1, now)
    return {"id": call.id, **row, "created_at": now, "vanished_at": None}


def call_created(
    call: Call, encoded: EncodedCall, *, instance: str | None, actor: str, now: datetime
) -> dict[str, Any]:
    """The audit row of a new call: its content as it was hashed."""
    return audit_row(
        "call_created",
        call_id=call.id,
        instance=instance,
        actor=actor,
        after=encoded.content,
        detail={"version": 1, "content_hash": encoded.content_hash, "process": _process(call)},
        now=now,
    )


def call_updated(
    call: Call, row: Mapping[Any, Any], encoded: EncodedCall, *, instance: str | None,
    actor: str, now: datetime,
) -> dict[str, Any]:  # fmt: skip
    """The audit row of a change of content: the fields that changed since ``row`` (the call's
    row as it was, its document a dict), as they were and as they are."""
    before, after = _diff(content_of(row["canonical"]), encoded.content_dict())
    old_version = int(row["version"])
    return audit_row(
        "call_updated",
        call_id=call.id,
        instance=instance,
        actor=actor,
        before=before,
        after=after,
        detail={
            "version": old_version + 1,
            "old_version": old_version,
            "content_hash": encoded.content_hash,
            "old_hash": row["content_hash"],
            "process": _process(call),
        },
        now=now,
    )


def identity_linked(values: Mapping[str, Any], *, actor: str, now: datetime) -> dict[str, Any]:
    """The audit row of a record linked to a call (``values``: the identity's columns)."""
    return audit_row(
        "identity_linked",
        call_id=values["call_id"],
        instance=values["instance"],
        actor=actor,
        detail={
            "remote_id": values["remote_id"],
            "remote_key": values["remote_key"],
            "url": values["url"],
        },
        now=now,
    )


def _process(call: Call) -> str | None:
    """The call's process for its audit events: a report by process reads it from the event,
    whatever the call's type became later."""
    return call.process.value if call.process is not None else None


def _diff(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The top-level fields that changed, as they were and as they are."""
    keys = [
        key for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)
    ]
    return (
        {key: before.get(key) for key in keys},
        {key: after.get(key) for key in keys},
    )
