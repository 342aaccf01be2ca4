"""A TCP forwarder that can stop forwarding: a path to a server that drops packets.

A refused connection fails at once; a link that drops packets does not fail at all, it
just never answers, and every operation waits out its timeout. ``freeze`` makes this
forwarder do that: it stops accepting (the kernel still completes handshakes into the
backlog, so a client's connect succeeds and its bind hangs) and stops passing bytes on
the connections it has, in both directions. ``thaw`` lets everything through again.
Loopback only.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

from pam_twostep.lab.processes import free_port

__all__ = ["Blackhole"]


class Blackhole:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=128)
        self._listener.settimeout(0.1)
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            if not self._flowing.wait(0.1):
                continue
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                server = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        other = {client: server, server: client}
        try:
            while not self._closed.is_set():
                if not self._flowing.wait(0.1):
                    continue  # frozen: nothing read, nothing passed on
                readable, _, _ = select.select([client, server], [], [], 0.1)
                for sock in readable:
                    if not self._flowing.is_set():
                        break
                    data = sock.recv(65536)
                    if not data:
                        return
                    other[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.close()
