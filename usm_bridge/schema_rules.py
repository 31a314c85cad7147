"""The call's cross-field rules as JSON Schema, so the exported schema is as strict as the model.

Pydantic exports each field's own type; the rules :meth:`usm_bridge.model.Call._consistent`
checks between fields are added here as ``if``/``then`` clauses, built from the model's own
constants (never a second copy of them):

- a waiting call says whom it waits on, and only a waiting call does (``waiting_on``);
- only a wait on a secondary process names that process (``waiting_process``);
- no work while unclassified (``in_progress`` and ``waiting`` need a ``call_type``);
- ``process`` is the call type's process (read-only: the bridge writes it, a reader checks it).

What JSON Schema cannot compare (one field's value against another's: ``updated`` not before
``created``) is stated in the schema's ``$comment`` and ``description``, for a reader to check.
"""

from __future__ import annotations

from typing import Any

from .model import UNCLASSIFIED_FORBIDS, CallType, Status, WaitingOn

__all__ = ["UNCHECKED_RULES", "call_rules", "with_call_rules"]

#: The model's rules the schema cannot express: stated, not checked, by a JSON Schema validator.
UNCHECKED_RULES = (
    "updated is not earlier than created (JSON Schema cannot compare two fields' values)",
)

Schema = dict[str, Any]


def _is(field: str, value: str) -> Schema:
    """The document has ``field`` and it is ``value``."""
    return {"properties": {field: {"const": value}}, "required": [field]}


def _null(field: str) -> Schema:
    """``field`` is absent or null (the model's default for each field these rules test)."""
    return {"properties": {field: {"type": "null"}}}


def _type_is(call_type: CallType) -> Schema:
    # An absent call_type is the model's default: unclassified.
    if call_type is CallType.UNCLASSIFIED:
        return {"anyOf": [{"not": {"required": ["call_type"]}}, _is("call_type", call_type)]}
    return _is("call_type", call_type.value)


def call_rules() -> list[Schema]:
    """The ``allOf`` clauses that hold each cross-field rule of a call (module docstring)."""
    waiting = _is("status", Status.WAITING.value)
    rules: list[Schema] = [
        {
            "$comment": "a waiting call says whom it waits on, and only a waiting call does",
            "if": waiting,
            "then": {
                "required": ["waiting_on"],
                "properties": {"waiting_on": {"enum": [w.value for w in WaitingOn]}},
            },
            "else": _null("waiting_on"),
        },
        {
            "$comment": "only a wait on a secondary process names the process waited on",
            "if": {"not": _is("waiting_on", WaitingOn.SECONDARY_PROCESS.value)},
            "then": _null("waiting_process"),
        },
        {
            "$comment": "no work while unclassified: the provider classifies a call first",
            "if": _type_is(CallType.UNCLASSIFIED),
            "then": {
                "properties": {
                    "status": {"not": {"enum": sorted(s.value for s in UNCLASSIFIED_FORBIDS)}}
                }
            },
        },
    ]
    for call_type in CallType:
        process = call_type.process
        rules.append(
            {
                "$comment": f"process is the process of call type {call_type.value}",
                "if": _type_is(call_type),
                "then": {
                    "properties": {
                        "process": {"type": "null"} if process is None else {"const": process.value}
                    }
                },
            }
        )
    return rules


def with_call_rules(schema: Schema) -> Schema:
    """``schema`` (the call's) with the rules of :func:`call_rules` and the unchecked ones."""
    unchecked = "; ".join(UNCHECKED_RULES)
    description = schema.get("description", "")
    return {
        **schema,
        "description": f"{description}\n\nAlso required, not checked by the schema: {unchecked}."
        if description
        else f"Also required, not checked by the schema: {unchecked}.",
        "$comment": f"Rules JSON Schema cannot express: {unchecked}.",
        "allOf": [*schema.get("allOf", []), *call_rules()],
    }
