"""A TCP relay between the test's processes and one real server, that can go silent:
after :meth:`TcpRelay.freeze` it keeps every connection open and reads what the
clients send, but passes nothing on either way, as a server that stopped answering
(a frozen VM, a half-open TCP connection) looks to its clients.

    with TcpRelay(("127.0.0.1", 5672)) as relay:
        ... BROKER_URL=amqp://guest:guest@127.0.0.1:{relay.port}// ...
        relay.freeze()
"""

from __future__ import annotations

import socket
import threading

from tests.support.servers import free_port

__all__ = ["TcpRelay"]


class TcpRelay:
    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.port = free_port()
        self.frozen = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._sockets: list[socket.socket] = [self._listener]
        self.connections = 0

    def __enter__(self) -> TcpRelay:
        threading.Thread(target=self._accept, daemon=True, name="tcp-relay").start()
        return self

    def __exit__(self, *exc) -> None:
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass

    def freeze(self) -> None:
        """From now on nothing passes, in either direction; connections stay open."""
        self.frozen.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream, timeout=5)
            server.settimeout(None)
            self._sockets += [client, server]
            self.connections += 1
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if not self.frozen.is_set():
                try:
                    target.sendall(data)
                except OSError:
                    return
