"""Load generators: Dovecot's auth-client socket, IMAP, and twostepd's own socket.

Each closed-loop driver runs ``concurrency`` worker processes (not threads: the client
must not be the bottleneck, and the GIL would make it one), each with its own
connection, sending one request after another for ``duration`` seconds after a common
start. Every latency is kept; the caller computes rates and percentiles.
"""

from __future__ import annotations

import base64
import imaplib
import multiprocessing
import os
import queue as queue_module
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pam_twostep import wire

Request = Callable[[], bool]
"""One login attempt on an open connection; True when it was accepted."""


@dataclass
class Sample:
    latencies: list[float]
    accepted: int
    refused: int
    seconds: float

    @property
    def rate(self) -> float:
        return (self.accepted + self.refused) / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class AuthClient:
    """Dovecot's auth-client protocol (version 1.2), AUTH PLAIN without a login."""

    def __init__(self, path: str, source: str = "127.0.0.2") -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb", buffering=0)
        self.sock.sendall(
            f"VERSION\t1\t2\nCPID\t{multiprocessing.current_process().pid}\n".encode()
        )
        while self._line() != "DONE":
            pass
        self.counter = 0
        self.source = source

    def _line(self) -> str:
        data = b""
        while not data.endswith(b"\n"):
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("auth server closed the connection")
            data += chunk
        return data.decode()[:-1]

    def login(self, user: str, password: str, service: str = "imap") -> bool:
        self.counter += 1
        resp = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.sock.sendall(
            f"AUTH\t{self.counter}\tPLAIN\tservice={service}\tnologin\t"
            f"lip=127.0.0.1\trip={self.source}\tresp={resp}\n".encode()
        )
        while True:
            line = self._line()
            kind, _, rest = line.partition("\t")
            if rest.split("\t", 1)[0] == str(self.counter) and kind in ("OK", "FAIL"):
                return kind == "OK"


def _worker(
    setup: Callable[[], Request], start: float, duration: float, queue: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    attempt = setup()
    latencies: list[float] = []
    accepted = refused = 0
    while time.time() < start:
        time.sleep(0.001)
    end = start + duration
    while True:
        began = time.perf_counter()
        ok = attempt()
        latencies.append(time.perf_counter() - began)
        accepted += ok
        refused += not ok
        if time.time() >= end:
            break
    queue.put((latencies, accepted, refused))


def closed_loop(setup: Callable[[], Request], concurrency: int, duration: float) -> Sample:
    """``concurrency`` processes, each opening its connection with ``setup`` and then
    attempting logins back to back for ``duration`` seconds."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    start = time.time() + 0.5 + 0.05 * concurrency
    workers = [
        context.Process(target=_worker, args=(setup, start, duration, queue))
        for _ in range(concurrency)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=duration + 120) for _ in workers]
    for worker in workers:
        worker.join(30)
    latencies = [x for r in results for x in r[0]]
    return Sample(latencies, sum(r[1] for r in results), sum(r[2] for r in results), duration)


def auth_client(path: str, user: str, password: str, source: str) -> Callable[[], Request]:
    def setup() -> Request:
        client = AuthClient(path, source)
        return lambda: client.login(user, password)

    return setup


def auth_client_rotating(
    path: str, pairs: list[tuple[str, str]], source: str
) -> Callable[[], Request]:
    """Like ``auth_client``, each login another (user, secret) of ``pairs`` in turn,
    every worker starting at its own place."""

    def setup() -> Request:
        client = AuthClient(path, source)
        position = [multiprocessing.current_process().pid or 0]

        def attempt() -> bool:
            position[0] += 1
            user, secret = pairs[position[0] % len(pairs)]
            return client.login(user, secret)

        return attempt

    return setup


def imap_login(port: int, user: str, password: str, source: str) -> Callable[[], Request]:
    def setup() -> Request:
        def attempt() -> bool:
            class Client(imaplib.IMAP4):
                def _create_socket(self, timeout: float | None) -> socket.socket:
                    return socket.create_connection(
                        (self.host, self.port), timeout, source_address=(source, 0)
                    )

            client = Client("127.0.0.1", port, timeout=30)
            try:
                client.login(user, password)
                ok = True
            except imaplib.IMAP4.error:
                ok = False
            client.logout()
            return ok

        return attempt

    return setup


def _mail_auth(user: str, secret: str) -> bytes:
    return wire.encode(
        {
            "op": "auth",
            "flow": "mail",
            "user": user,
            "password": secret,
            "service": "imap",
            "remote": "127.0.0.9",
        }
    )


def daemon_login(path: str, user: str, secret: str) -> Callable[[], Request]:
    """twostepd directly, one persistent connection per worker (as the Lua passdb does)."""

    def setup() -> Request:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        reader = sock.makefile("rb")
        message = _mail_auth(user, secret)

        def attempt() -> bool:
            sock.sendall(message)
            return wire.decode(reader.readline()).get("result") == "accept"

        return attempt

    return setup


def _logins_of(path: str, pairs: list[tuple[str, str]], queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(30)
    sock.connect(path)
    reader = sock.makefile("rb")
    accepted = 0
    for user, secret in pairs:
        sock.sendall(_mail_auth(user, secret))
        accepted += wire.decode(reader.readline()).get("result") == "accept"
    queue.put(accepted)


def each_once(path: str, pairs: list[tuple[str, str]], concurrency: int) -> tuple[int, float]:
    """Every (user, secret) of ``pairs`` logs in once through twostepd, spread over
    ``concurrency`` processes: (accepted, seconds)."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [
        context.Process(target=_logins_of, args=(path, pairs[n::concurrency], queue), daemon=True)
        for n in range(concurrency)
    ]
    started = time.monotonic()
    try:
        for worker in workers:
            worker.start()
        # a worker that failed puts nothing: waiting ends when the rest could have finished
        accepted = sum(queue.get(timeout=60 + len(pairs) / 50) for _ in workers)
    except queue_module.Empty:
        raise TimeoutError("a login worker gave no result") from None
    finally:
        for worker in workers:
            worker.join(5)
            if worker.is_alive():
                worker.terminate()
    return accepted, time.monotonic() - started


def serving_stats(
    ask: Callable[[dict[str, object]], dict[str, object]],
) -> dict[int, dict[str, Any]]:
    """Every serving process's ``stats`` (each request reaches one of them, so ask often)."""
    seen: dict[int, dict[str, Any]] = {}
    for _ in range(40 * max(1, os.cpu_count() or 1)):
        reply = ask({"op": "stats"})
        seen[int(str(reply["pid"]))] = reply
    return seen


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
