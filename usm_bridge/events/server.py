"""An ASGI app under uvicorn in a background thread, on a socket bound before it starts.

Binding first (port 0: a free one) lets the caller know the address at once and report a
port in use as an error of its own, before any thread runs. uvicorn's own signal handlers are
left out: the daemon's main thread owns SIGTERM and SIGINT
(:func:`~usm_bridge.sync.daemon.stop_on_signals`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any

import uvicorn

from ..sync.metrics import http_url, is_loopback

__all__ = ["AppServer"]

log = logging.getLogger(__name__)

#: Longest wait for uvicorn to start serving, or to finish its connections on close (seconds).
_START_TIMEOUT = 10.0


class AppServer:
    """Serve ``app`` on ``host:port`` in a thread; a context manager, or :meth:`start` and
    :meth:`close`. ``OSError`` from the constructor when the address cannot be bound."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((host, port))
            self._socket.listen(128)
        except OSError:
            self._socket.close()
            raise
        config = uvicorn.Config(
            app,
            log_config=None,  # the bridge's logging, not uvicorn's
            access_log=False,
            server_header=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        if not is_loopback(host):
            log.warning("serving HTTP on %s, which is not a loopback address", host)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        return http_url(*self.address)

    def start(self) -> AppServer:
        self._thread = threading.Thread(target=self._run, name="usm-bridge-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.01)
        return self

    def _run(self) -> None:
        # Its own event loop in this thread; capture_signals is a no-op off the main thread.
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def close(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(_START_TIMEOUT)
            self._thread = None
        self._socket.close()

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
