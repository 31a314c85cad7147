"""A change of a call's attachments alone is a change of the call: stored as a new version and
audited (so routes pass it on), while a call without any is stored as before."""

from __future__ import annotations

from usm_bridge.model import Attachment, AttachmentSource, Comment
from usm_bridge.store import Store

FORM = Attachment(
    name="signed-form.pdf", media_type="application/pdf", size=1234, sha256="ab" * 32,
    source=AttachmentSource(instance="hr-jira", remote_id="10001"), origin="hr-jira",
)  # fmt: skip


def test_adding_then_refusing_an_attachment_are_two_new_versions(store: Store, make_call) -> None:
    call = make_call(remote_id="HR-1")
    with_form = call.model_copy(update={"attachments": [FORM]})
    refused = call.model_copy(update={"attachments": [FORM.model_copy(update={"refused": "no"})]})
    with store.begin() as tx:
        tx.upsert_call(call)
        added = tx.upsert_call(with_form)
        again = tx.upsert_call(with_form)
        marked = tx.upsert_call(refused)
    assert added.changed and added.new_version == 2
    assert not again.changed
    assert marked.changed and marked.new_version == 3
    with store.begin() as tx:
        stored = tx.get_call(call.id)
        [event, _] = tx.list_audit(call_id=call.id, kind="call_updated")
    assert stored is not None and stored.call.attachments == refused.attachments
    assert event.before == {"attachments": None}
    assert event.after == {"attachments": [FORM.model_dump(mode="json")]}


def test_an_attachment_on_a_comment_is_stored_and_read_back(store: Store, make_call) -> None:
    comment = Comment(
        id="c1", body="form attached", created=make_call().created, attachments=[FORM]
    )
    call = make_call(comments=[comment])
    with store.begin() as tx:
        tx.upsert_call(call)
    with store.begin() as tx:
        stored = tx.get_call(call.id)
    assert stored is not None and stored.call.comments[0].attachments == [FORM]
