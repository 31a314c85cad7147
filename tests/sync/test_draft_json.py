"""``draft_json`` writes a plain draft's members as they are, without ``model_dump`` first: the
text (and so the hash a remote state keeps, by which an echo is recognised) must stay the one
the model's dump gives, for any JSON a mapping can put in a draft."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from usm_bridge.connector import RemoteDraft
from usm_bridge.sync.calls import draft_json

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _dumped(draft: RemoteDraft) -> str:
    """The text before the fast path: the model's JSON-mode dump, keys sorted, ASCII."""
    return json.dumps(
        draft.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(st.text(), _JSON, max_size=5),
    status=st.none() | st.text(),
    status_fields=st.dictionaries(st.text(), _JSON, max_size=3),
)
def test_a_drafts_json_is_the_models_dump(
    fields: dict[str, Any], status: str | None, status_fields: dict[str, Any]
) -> None:
    draft = RemoteDraft(fields=fields, status=status, status_fields=status_fields)
    assert draft_json(draft) == _dumped(draft)


def test_nan_and_infinity_take_the_models_dump() -> None:
    # The fast path's encoder refuses them; the text is then the dump's, as it always was.
    draft = RemoteDraft(fields={"ratio": float("nan"), "cap": [float("inf"), 1.5]})
    assert draft_json(draft) == _dumped(draft)
