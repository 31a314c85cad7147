"""No work while unclassified: what inbound mapping does with a record the tool works on but
neither the file's rules nor a classifier gave a type.

USM classifies a call before anyone works on it (the type decides the process), so the model
refuses ``in_progress`` and ``waiting`` on an ``unclassified`` call
(:data:`~usm_bridge.model.UNCLASSIFIED_FORBIDS`). A tool knows no such rule: a Jira issue of
a custom work type can be In Progress. Inbound mapping therefore

1. asks the unit's classifier plugins *before* the call is validated (they used to see a valid
   call only, so an unclassified record in progress never reached them), showing them the call
   as registered (its status left out), and
2. when nobody classified it, refuses the record with a :class:`~usm_bridge.errors.MappingError`
   that names the record, its status and the two ways out (a classify rule in the mapping
   file, or classifying it in the tool). The sync engine keeps it as a ``map`` dead letter:
   accounted for, never stored as an invalid call nor dropped; ``dead-letters retry`` maps it
   again once the file or the record is fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from ..call_copies import consistent_copy
from ..connector import RawRecord
from ..errors import MappingError
from ..model import UNCLASSIFIED_FORBIDS, Call, CallType, ChainLinks, Status, UsmProcess, WaitingOn
from .types import Classifier

__all__ = ["classify_and_validate", "classify_before_validation", "refuse_unclassified_work"]

#: Keys of a call's values that belong to its status: the provisional call the classifier sees
#: is the record as registered, which every type may be.
_STATUS_KEYS = ("status", "waiting_on", "waiting_process")
#: The values a call's status is made of, as the model's fields take them.
_STATUS_TYPES: dict[str, Callable[[Any], Any]] = {
    "status": Status,
    "waiting_on": WaitingOn,
    "waiting_process": UsmProcess,
}
#: What the call shown to a classifier holds of these: nothing (they are read after the type).
_READ_AFTER_THE_TYPE: dict[str, Any] = {
    "comments": [],
    "confirmation": None,
    "chain": ChainLinks(),
    "attributes": {},
}


def classify_and_validate(
    values: dict[str, Any],
    record: RawRecord,
    classifier: Classifier,
    read_rest: Callable[[dict[str, Any]], None],
    validate: Callable[[dict[str, Any]], Call],
) -> Call:
    """The call of a record the file's rules left unclassified, ``classifier`` asked, validated
    once: what :func:`classify_before_validation`, :func:`refuse_unclassified_work`, reading
    the rest and validating give, in that order, without validating twice.

    :param values: the call's values up to its type (what a classifier is shown).
    :param read_rest: reads the call's other values (comments ...) into the dict it is given.
    :param validate: the validation of a mapped call's values (its errors are the record's).
    :raises MappingError: as that order raises.
    """
    everything = dict(values)
    try:
        read_rest(everything)
        registered = Call.model_validate(
            {k: v for k, v in everything.items() if k not in _STATUS_KEYS and v is not None}
        )
    except Exception:
        # A record that cannot be mapped or validated: the steps in their order, so that it
        # fails as it always did (and the classifier is asked only if that order asks it).
        classify_before_validation(values, record, classifier)
        refuse_unclassified_work(values, record)
        read_rest(values)
        return validate(values)
    # Valid with everything read, so valid with only what was read before the type: the
    # classifier is shown that call (the parts read after the type set to their defaults,
    # valid values no model check relates to another field), as before.
    shown = {k: v for k, v in _READ_AFTER_THE_TYPE.items() if k in everything}
    verdict = classifier(registered.model_copy(update=shown) if shown else registered, record)
    if verdict is not None and verdict is not CallType.UNCLASSIFIED:
        everything["call_type"] = CallType(verdict)
    refuse_unclassified_work(everything, record)
    return _with_status(registered, everything) or validate(everything)


def _with_status(registered: Call, values: dict[str, Any]) -> Call | None:
    """The registered call with its type and status from ``values``, if that is a valid call
    (``None``: validating ``values`` says why not).

    Safe without validating again (:mod:`usm_bridge.call_copies`): every other field was
    validated in ``registered``, the type is a :class:`CallType`, and each status value is
    made the member of the field's enum that the model's validation would make of it.
    """
    update: dict[str, Any] = {"call_type": values["call_type"]}
    try:
        for key, kind in _STATUS_TYPES.items():
            if values.get(key) is not None:
                update[key] = kind(values[key])
    except ValueError:
        return None
    return consistent_copy(registered, update)


def classify_before_validation(
    values: dict[str, Any], record: RawRecord, classifier: Classifier | None
) -> None:
    """Let ``classifier`` type the call ``values`` describe when the rules left it unclassified.

    The classifier is shown the call as registered (its status left out), so that a record in
    progress can be classified at all; the type it gives goes into ``values``. A call whose
    other values are invalid is left alone here: validating ``values`` names the problem.
    """
    if classifier is None or values.get("call_type") is not CallType.UNCLASSIFIED:
        return
    registered = {k: v for k, v in values.items() if k not in _STATUS_KEYS and v is not None}
    try:
        provisional = Call.model_validate(registered)
    except ValidationError:
        return
    verdict = classifier(provisional, record)
    if verdict is not None and verdict is not CallType.UNCLASSIFIED:
        values["call_type"] = CallType(verdict)


def refuse_unclassified_work(values: dict[str, Any], record: RawRecord) -> None:
    """Refuse a record mapped as unclassified but in a status of work, naming it.

    :raises MappingError: the record's reason to be a dead letter.
    """
    if values.get("call_type") is not CallType.UNCLASSIFIED:
        return
    try:
        status = Status(values.get("status") or Status.REGISTERED)
    except ValueError:
        return  # not a status at all: the call's own validation names the bad value
    if status not in UNCLASSIFIED_FORBIDS:
        return
    name = record.remote_key or record.remote_id
    raise MappingError(
        f"record {name!r} is {status.value} but unclassified: USM does no work on a call "
        "before it is classified; add a classify rule to the mapping file that gives it a "
        "type, or classify it in the tool, then retry the dead letter"
    )
