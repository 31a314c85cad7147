"""The content digest: the same content gives the same digest, any change another one."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest

from usm_bridge.content_digest import DIGEST_LENGTH, content_digest

ISSUE = {
    "id": "10042",
    "fields": {"summary": "Drucker — 打印机", "lastViewed": "2026-01-05T09:30:00.000+0000"},
    "expand": "renderedFields",
}


def test_key_order_does_not_matter_and_the_digest_is_short_hex() -> None:
    reordered = {"expand": ISSUE["expand"], "fields": dict(ISSUE["fields"]), "id": "10042"}
    digest = content_digest(ISSUE)
    assert content_digest(reordered) == digest
    assert len(digest) == DIGEST_LENGTH and int(digest, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r["fields"].update(summary="Drucker"),
        lambda r: r["fields"].update(labels=[]),
        lambda r: r.update(id="10043"),
        lambda r: r["fields"].update(summary="Drucker — 打印机 "),
    ],
    ids=["text", "new-field", "id", "trailing-space"],
)
def test_any_change_of_content_changes_the_digest(change) -> None:
    changed = copy.deepcopy(ISSUE)
    change(changed)
    assert content_digest(changed) != content_digest(ISSUE)


def test_ignored_paths_leave_the_digest_alone_and_the_record_untouched() -> None:
    viewed = copy.deepcopy(ISSUE)
    viewed["fields"]["lastViewed"] = "2026-01-06T10:00:00.000+0000"
    ignore = ["fields.lastViewed", "expand", "fields.absent", "nowhere.at.all"]
    assert content_digest(viewed, ignore=ignore) == content_digest(ISSUE, ignore=ignore)
    assert content_digest(viewed) != content_digest(ISSUE)  # not ignored: a difference
    assert viewed["fields"]["lastViewed"] == "2026-01-06T10:00:00.000+0000"  # not mutated
    assert "expand" in viewed


@pytest.mark.parametrize("value", [float("nan"), object(), {1, 2}])
def test_a_record_that_is_not_plain_json_is_a_clear_error(value: object) -> None:
    with pytest.raises(ValueError, match="cannot digest a record that is not plain JSON"):
        content_digest({"fields": {"odd": value}})


#: Every kind of JSON value, as a tool may send it: floats (exponents, negative zero), big ints,
#: non-ASCII and escapes, nesting; the digest of it is fixed (cursors stored keep it).
EVERY_KIND = {
    "id": "10042",
    "fields": {
        "summary": 'Drucker — 打印机 "quoted"\n\ttab \\ slash \u2028 \U0001f5a8',
        "ratio": 0.1,
        "huge": 1e16,
        "tiny": -2.5e-300,
        "zero": -0.0,
        "count": 2**70,
        "negative": -(2**63),
        "flags": [True, False, None],
        "nested": {"b": [{"z": 1, "a": []}, {}], "a": {"": "empty key"}},
    },
}


def test_the_digest_is_sha256_of_the_canonical_json_and_never_changes() -> None:
    """The definition (sorted keys, no spaces, non-ASCII kept, json.dumps' own numbers), and
    the very digest: a change of encoding would make every cursor's digest differ."""
    text = json.dumps(EVERY_KIND, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_LENGTH]
    assert content_digest(EVERY_KIND) == expected == "46eaa6d73233de1ef108c2d16d57d417"


def test_a_record_with_a_cycle_is_the_same_clear_error() -> None:
    looped: dict[str, object] = {"id": "1", "fields": {}}
    looped["fields"] = {"parent": looped}
    with pytest.raises(ValueError, match="cannot digest a record that is not plain JSON"):
        content_digest(looped)
