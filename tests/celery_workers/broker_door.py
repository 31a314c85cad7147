"""A broker that goes away and comes back, for a broker no test can cheaply stop: a TCP relay on
loopback in front of the shared RabbitMQ (or Redis), whose :meth:`BrokerDoor.shut` refuses new
connections and resets the ones relayed, and whose :meth:`BrokerDoor.open` listens again on the
same port.

To the bridge that is the broker gone (connections refused, the open ones reset) without
stopping the broker other tests share; unlike a real restart, what the broker holds (the
queues, the messages waiting in them) outlives the outage.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from urllib.parse import urlsplit, urlunsplit

__all__ = ["BrokerDoor"]


class BrokerDoor:
    """Relays ``127.0.0.1:<port>`` to the broker of ``url``; :attr:`url` is the broker's URL
    through the door. Starts open."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname and parts.port, url
        self._target = (parts.hostname, parts.port)
        self._parts = parts
        self._lock = threading.Lock()
        self._pipes: list[socket.socket] = []
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.open()

    @property
    def url(self) -> str:
        netloc = self._parts.netloc.rsplit("@", 1)
        where = f"127.0.0.1:{self.port}"
        netloc[-1] = where
        return urlunsplit(self._parts._replace(netloc="@".join(netloc)))

    @property
    def is_open(self) -> bool:
        return self._server is not None

    def open(self) -> None:
        """Listen (again) on :attr:`port` and relay every connection to the broker."""
        assert self._server is None, "the door is open already"
        server = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: same port
        self._server = server
        self._thread = threading.Thread(
            target=self._accept, args=(server,), name="broker-door", daemon=True
        )
        self._thread.start()

    def shut(self) -> None:
        """Stop listening (new connections are refused) and reset every relayed one."""
        server, self._server = self._server, None
        assert server is not None, "the door is shut already"
        # shutdown() wakes the thread blocked in accept(); close() alone would not.
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)
        server.close()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            pipes, self._pipes = self._pipes, []
        for pipe in pipes:
            with contextlib.suppress(OSError):
                # RST rather than FIN: the broker is gone, not saying goodbye.
                pipe.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                pipe.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # shut
            try:
                upstream = socket.create_connection(self._target, timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pipes += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until either end closes; then close both."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.close()
