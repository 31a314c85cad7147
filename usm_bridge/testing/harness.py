"""What a connector author provides so the standard suite can test their connector.

The suite never looks inside a connector: it drives the connector through the contract in
:mod:`usm_bridge.connector` and checks the results against the *backend* (a simulator, an
in-memory fake, a sandbox of the real tool), which the harness lets it reach directly, the way a
person working in the tool would. That is why the harness, not the connector, seeds records,
changes them, reads them back and breaks the backend on purpose.

Each test gets a fresh harness (and so, normally, a fresh backend) and closes it afterwards.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from enum import Enum
from typing import Any, ClassVar

from ..connector import Connector, RemoteDraft

__all__ = ["ConnectorHarness", "Fault"]


class Fault(Enum):
    """A temporary failure the backend can be told to answer with (see ``inject_fault``)."""

    #: 429 with a ``Retry-After`` header (a small number of seconds).
    RATE_LIMITED = "429 with Retry-After"
    #: 429 without ``Retry-After``, as some ServiceNow instances answer: the client backs off.
    RATE_LIMITED_NO_RETRY_AFTER = "429 without Retry-After"
    #: 503 Service Unavailable.
    UNAVAILABLE = "503 Service Unavailable"
    #: 500 Internal Server Error.
    SERVER_ERROR = "500 Internal Server Error"


class ConnectorHarness(ABC):
    """The connector under test plus direct access to its backend.

    Subclass it, implement the abstract methods, and turn the suite on with
    ``TestMyConnector = connector_test_class(MyHarness)``.

    Keep the suite fast: build the connector with a retry policy that does not really wait
    (inject a :class:`usm_bridge.testing.FakeClock`'s ``sleep``, or a tiny backoff and a backend
    answering ``Retry-After: 0``) and that allows at least three attempts, since faults are
    injected twice in a row.
    """

    #: How many records the read tests seed. Configure the connector's page size below this in
    #: ``make_connector`` so that a full read yields several checkpoints and can be interrupted.
    seed_count: ClassVar[int] = 7

    @abstractmethod
    def make_connector(self) -> Connector:
        """A connector pointing at the backend; the suite closes it after the test."""

    @abstractmethod
    def seed(self, count: int) -> list[str]:
        """Create ``count`` records directly in the backend, as people would in the tool.

        :returns: their remote ids, as the connector reports them in ``RawRecord.remote_id``.
        """

    @abstractmethod
    def touch(self, remote_id: str) -> None:
        """Change one record directly in the backend (edit its title, say), as a person would."""

    @abstractmethod
    def inject_fault(self, fault: Fault, times: int = 1) -> None:
        """Answer the next ``times`` requests to the backend with ``fault``, not serving them."""

    @abstractmethod
    def inject_rejection(self, message: str) -> None:
        """Answer the next request with a 4xx (not 429) carrying ``message`` in the tool's shape."""

    @abstractmethod
    def make_draft(self, text: str) -> RemoteDraft:
        """A draft the tool accepts for a new record, with ``text`` in a field that is read back.

        ``text`` is unique per call; the suite recognises the record by finding it.
        """

    def make_update(self, text: str) -> RemoteDraft:
        """A draft that writes ``text`` into an existing record; by default ``make_draft(text)``."""
        return self.make_draft(text)

    @abstractmethod
    def read_back(self, remote_id: str) -> Mapping[str, Any] | None:
        """The record as the backend holds it, comments included, in any JSON-able shape.

        :returns: ``None`` when the backend holds no such record.
        """

    @abstractmethod
    def all_remote_ids(self) -> list[str]:
        """The ids of every record the backend holds now."""

    def let_time_pass(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Move the backend's clock past the connector's read overlap window.

        Called between a read and a change the next incremental read must tell apart from what
        came before. A connector that overlaps its incremental window (Jira's minute-precision
        JQL, say) needs the backend's clock moved on by more than that overlap; a backend with a
        controllable clock advances it here. Nothing to do when the connector does not overlap.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the backend (stop a simulator, close sessions)."""
