"""How a read's files meet the stored call's (:func:`usm_bridge.sync.attachment_intake.
carry_attachments`, :func:`~usm_bridge.sync.attachment_intake.new_files`): pure functions, no
tool."""

from __future__ import annotations

from datetime import UTC, datetime

from usm_bridge.model import Attachment, AttachmentSource, Call
from usm_bridge.sync.attachment_intake import carry_attachments, new_files

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
SHA = "a" * 64


def _file(instance: str, remote_id: str, *, name: str = "form.pdf", sha: str = SHA,
          refused: str | None = None) -> Attachment:  # fmt: skip
    return Attachment(
        name=name, media_type="application/pdf", size=10, sha256=None if refused else sha,
        source=AttachmentSource(instance=instance, remote_id=remote_id), origin="fac-jira",
        refused=refused,
    )  # fmt: skip


def _call(*files: Attachment) -> Call:
    return Call(unit="it", title="t", created=T0, updated=T0, attachments=list(files))


def test_the_bridges_copy_read_back_moves_the_file_to_it_and_is_not_new() -> None:
    held = _call(_file("fac-jira", "1"))  # put on the call by the router, not written yet
    read = _call(_file("it-jira", "77"))  # the copy written before a crash, read back
    carried = carry_attachments(read, held)
    [one] = carried.attachments
    assert one.source == AttachmentSource(instance="it-jira", remote_id="77")
    assert new_files(carried, held, "it-jira") == []


def test_a_file_a_person_adds_is_new_and_held_files_are_kept() -> None:
    held = _call(_file("it-jira", "5", name="old.txt", sha="b" * 64))
    read = _call(_file("it-jira", "6"))
    carried = carry_attachments(read, held)
    assert [a.name for a in carried.attachments] == ["old.txt", "form.pdf"]
    assert [a.name for a in new_files(carried, held, "it-jira")] == ["form.pdf"]


def test_a_refused_file_is_new_once() -> None:
    refused = _file("it-jira", "9", name="x.exe", refused="x.exe: refused")
    first = carry_attachments(_call(refused), _call())
    assert [a.name for a in new_files(first, _call(), "it-jira")] == ["x.exe"]
    again = carry_attachments(_call(), first)  # read again: not downloaded, so not in the read
    assert again.attachments == first.attachments
    assert new_files(again, first, "it-jira") == []


def _refused(instance: str, remote_id: str, *, sha: str | None = SHA) -> Attachment:
    """``form.pdf`` refused under an earlier policy (read whole: ``sha`` known)."""
    return Attachment(
        name="form.pdf", media_type="application/pdf", size=10, sha256=sha, refused="no PDFs",
        refused_under="policy:old", source=AttachmentSource(instance=instance, remote_id=remote_id),
        origin=instance,
    )  # fmt: skip


def test_a_refused_file_accepted_when_read_again_replaces_it_and_is_new() -> None:
    """Issue #20: read again under a policy that changed, the file accepted now takes the
    refused one's place (not beside it) and is new (routed), once."""
    for sha in (SHA, None):  # refused after a download, or by its stated size
        held = _call(_refused("fac-jira", "9", sha=sha))
        carried = carry_attachments(_call(_file("fac-jira", "9")), held)
        [one] = carried.attachments
        assert one.refused is None and one.source == AttachmentSource(
            instance="fac-jira", remote_id="9"
        )
        assert new_files(carried, held, "fac-jira") == [one]
        assert new_files(carry_attachments(_call(), carried), carried, "fac-jira") == []


def test_a_refused_file_refused_again_replaces_it_and_is_not_new() -> None:
    held = _call(_refused("fac-jira", "9"))
    again = _refused("fac-jira", "9").model_copy(update={"refused_under": "policy:new"})
    carried = carry_attachments(_call(again), held)
    assert carried.attachments == [again]
    assert new_files(carried, held, "fac-jira") == []  # no second note, no second letter


def test_the_same_bytes_added_again_are_kept_refused_or_accepted() -> None:
    held = _call(_refused("fac-jira", "9"))
    # Under the same policy, refused too: listed (so not read again), not dropped.
    refused = _refused("fac-jira", "10").model_copy(update={"refused_under": "policy:new"})
    carried = carry_attachments(_call(refused), held)
    assert [a.source.remote_id for a in carried.attachments if a.source] == ["9", "10"]
    # Accepted now (the policy changed): it replaces the refused copy, which it knows.
    carried = carry_attachments(_call(_file("fac-jira", "10")), held)
    [one] = carried.attachments
    assert one.refused is None and one.same_in_source == ["9"]
    assert new_files(carried, held, "fac-jira") == [one]
