"""An upload whose OAuth access token the instance refuses (401: it expired on the instance's
clock before the connector's margin said so, or it was revoked).

The connector asks a new token and sends the file again only when its chunks read anew
(:class:`~usm_bridge.connector.RereadableChunks`, what the bridge's pushes give): the file
lands once. Chunks that read once went with the refused request: they are not sent again (an
empty body under the whole's ``Content-Length`` would leave the instance waiting for the rest
until a timeout); the 401 goes to the caller as retriable, and its next try, with the new
token, lands the file once. The harness's read timeout is 5 s: a request left waiting fails
these tests rather than pass them slowly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from usm_bridge.connector import RereadableChunks
from usm_bridge.errors import RetriableRemoteError

from usm_bridge_servicenow.connector import ServiceNowConnector
from usm_bridge_servicenow.testing import IncidentHarness, IncidentOAuthHarness

FORM = b"%PDF-1.4 signed handover form\n" + bytes(range(256)) * 300  # two 64 KiB chunks


@pytest.fixture
def harness_class() -> type[IncidentHarness]:
    return IncidentOAuthHarness


def _pieces() -> Iterator[bytes]:
    for start in range(0, len(FORM), 40_000):
        yield FORM[start : start + 40_000]


@pytest.fixture
def uploads(harness: IncidentHarness, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The status of each upload the instance answered (a body cut short is never answered)."""
    seen: list[int] = []
    answer = harness.sim.answer

    def counted(method: str, path: str, headers: dict[str, str], body: object) -> object:
        reply = answer(method, path, headers, body)  # type: ignore[arg-type]
        if method == "POST" and path.startswith("/api/now/attachment/file"):
            seen.append(reply.status)
        return reply

    monkeypatch.setattr(harness.sim, "answer", counted)
    return seen


def _token_expired(harness: IncidentHarness, connector: ServiceNowConnector) -> str:
    """A record, and the connector's token expired on the instance (not on its own clock)."""
    (record,) = harness.seed(1)
    assert connector.list_attachments(record) == []  # a token granted, and used
    harness.sim_clock.advance(harness.sim.token_lifetime + 1)
    return record


def test_an_upload_refused_401_is_sent_again_with_a_new_token_when_its_chunks_read_anew(
    harness: IncidentHarness, connector: ServiceNowConnector, uploads: list[int]
) -> None:
    record = _token_expired(harness, connector)
    assert connector._oauth is not None
    granted = connector._oauth.token_requests

    file_id = connector.put_attachment(
        record, "form.pdf", "application/pdf", len(FORM), RereadableChunks(_pieces)
    )

    assert uploads == [401, 201]
    assert connector._oauth.token_requests == granted + 1
    assert [a.remote_id for a in connector.list_attachments(record)] == [file_id]
    with connector.open_attachment(file_id) as chunks:
        assert b"".join(chunks) == FORM


def test_an_upload_refused_401_from_chunks_read_once_is_retriable_and_lands_once_next_time(
    harness: IncidentHarness, connector: ServiceNowConnector, uploads: list[int]
) -> None:
    record = _token_expired(harness, connector)

    with pytest.raises(RetriableRemoteError, match="could be read only once") as caught:
        connector.put_attachment(record, "form.pdf", "application/pdf", len(FORM), _pieces())
    assert caught.value.status == 401
    assert uploads == [401] and connector.list_attachments(record) == []

    file_id = connector.put_attachment(
        record, "form.pdf", "application/pdf", len(FORM), _pieces()
    )  # the caller's next try: a new token, the file read anew
    assert uploads == [401, 201]
    assert [a.remote_id for a in connector.list_attachments(record)] == [file_id]
    with connector.open_attachment(file_id) as chunks:
        assert b"".join(chunks) == FORM
