"""A tool that hangs: a TCP server on loopback that accepts every connection and never answers.

What issue #18 met in the field (a ServiceNow behind a proxy that took connections and said
nothing): the connect succeeds at once, so only the client's read timeout ends each request.
The connections are held open (a closed one would fail fast, which is another fault) until
:meth:`FaultyDoor.close`.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

__all__ = ["FaultyDoor"]


class FaultyDoor:
    """Listens on ``127.0.0.1``; :attr:`url` for a connector's base URL."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)  # so that close() ends the accepting thread soon
        self.port = int(self._server.getsockname()[1])
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="faulty-door", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def accepted(self) -> int:
        """Connections accepted so far (each one a request that never got an answer)."""
        with self._lock:
            return len(self._held)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            with self._lock:
                self._held.append(conn)  # read nothing, answer nothing, keep it open

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._server.close()
        with self._lock:
            for conn in self._held:
                conn.close()

    def __enter__(self) -> FaultyDoor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
