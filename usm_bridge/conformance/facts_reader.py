"""Reading a stored call's facts with the model's own schema, its per-call Python steps left
to pydantic-core's Rust where the rule is the same.

The conformance report reads every stored call's facts (``calls.facts``,
:mod:`usm_bridge.store.call_facts`), and validating them with ``Call.model_validate_json`` was
about a quarter of a report's CPU, a good third of which (measured: 20 against 13 us a call)
is the model's Python validators, called for every call (``_tz_aware`` for each timestamp,
``_name`` for each machine name, ``_derived_process`` and ``_consistent`` once). So
the report validates through a *twin* of the model's validator, built once from the model's
own core schema (never a copy of its fields): the same classes and fields, with

- ``_tz_aware`` replaced by pydantic-core's ``tz_constraint="aware"`` (the same rule: a
  timestamp without an offset is refused);
- ``_name`` replaced by the same pattern, checked by the Rust ``regex`` engine, whose ``$``
  is the end of the text (as the model's ``fullmatch``; never before a final newline);
- ``_derived_process`` left out (it drops a ``process`` member; the twin refuses one, as an
  unknown member, and the model reads that row);
- ``_consistent`` left out and its rules checked once after, by the same function
  (:func:`usm_bridge.model.call_rule_broken`);
- and a row without an ``id`` (the model would make up a fresh one) or holding a member the
  facts leave out (comments, people, whose own defaults are made up too) left to the model.

Every other validator (a person's, the attributes' namespaces) is kept as the model has it. The
twin builds the model's own classes, so a call it accepts is the object the model builds, its
timestamps the same ``TzInfo``. It is only ever trusted to *accept*: where it refuses a row, or
the rules between members are broken, :func:`read_call_facts` answers ``None`` and the caller
validates the row through the model, which refuses it in its own words (the reason the report
lists) or accepts it. ``tests/conformance/test_conformance_facts_reader.py`` checks over
mutated facts that the twin accepts only rows the model accepts, with the same values.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic_core import SchemaValidator, ValidationError

from ..model import Call, call_rule_broken
from ..model import _name as _model_name  # the model's validators, replaced by identity
from ..model import _tz_aware as _model_tz_aware
from ..store.call_facts import LEFT_OUT

__all__ = ["read_call_facts"]

#: The model's name rule as a pattern the Rust engine checks (``$``: the end of the text).
_NAME_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,62}$"
#: The model validators the twin leaves out: one drops a member the twin refuses anyway, the
#: other's rules are checked after (:func:`read_call_facts`).
_LEFT_OUT: Final = frozenset({"Call._consistent", "Call._derived_process"})


def _twin_of(schema: Any) -> Any:
    """``schema`` (a core schema or a part of one) with the model's per-call Python steps
    replaced or left out as the module docstring says; everything else as it is."""
    if isinstance(schema, list):
        return [_twin_of(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("type") in ("function-after", "function-before"):
        function = schema["function"]["function"]
        inner = _twin_of(schema["schema"])
        if getattr(function, "__qualname__", None) in _LEFT_OUT:
            return inner
        if function is _model_tz_aware and inner.get("type") == "datetime":
            return {**inner, "tz_constraint": "aware"}
        if function is _model_name and inner.get("type") == "str":
            return {**inner, "pattern": _NAME_PATTERN, "regex_engine": "rust-regex"}
    return {key: _twin_of(value) for key, value in schema.items()}


_TWIN: Final = SchemaValidator(_twin_of(Call.__pydantic_core_schema__))
#: The members a call's facts hold (:mod:`usm_bridge.store.call_facts`).
_FACT_KEYS: Final = frozenset(Call.model_fields) - frozenset(LEFT_OUT)


def read_call_facts(facts: str | bytes) -> Call | None:
    """The call whose stored facts (JSON text) are ``facts``, the very object
    ``Call.model_validate_json`` builds; ``None`` where the twin refuses it or its members
    break the model's rules between them (then the model decides, and says why)."""
    try:
        call: Call = _TWIN.validate_json(facts)
    except ValidationError:
        return None
    given = call.__pydantic_fields_set__
    if "id" not in given or not given <= _FACT_KEYS:
        # No id: the model makes one up (a fresh one each time, which is no stored call);
        # a member the facts leave out (comments, people): the model's, as the whole call.
        return None
    broken = call_rule_broken(
        call.call_type,
        call.status,
        call.waiting_on,
        call.waiting_process,
        call.created,
        call.updated,
    )
    return None if broken is not None else call
