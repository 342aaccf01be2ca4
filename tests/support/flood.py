"""Connections to twostepd from another uid, for the daemon's flood tests.

Run as a script by /usr/bin/python3 under the uid being tested (``as_user`` below starts
it with ``subprocess``'s user/group/extra_groups), so the daemon sees a real process of
that uid; nothing here imports the project.

    flood.py flood SOCKET HOLD SECONDS
        keeps up to HOLD idle connections open for SECONDS, opening a new one for each
        that the daemon closes, and prints what happened as JSON
    flood.py hold SOCKET COUNT
        opens COUNT connections, pings on each, prints as JSON how many the daemon kept
        (and what the others were told), and keeps those idle until its standard input
        closes
    flood.py talk SOCKET
        one connection: sends each line of its standard input as a request and prints
        the reply line, or "closed" once the daemon has closed the connection
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

__all__ = ["as_user", "SCRIPT"]

SCRIPT = Path(__file__).resolve()


def as_user(
    uid: int, gid: int, groups: list[int], *args: str, **popen: object
) -> subprocess.Popen[str]:
    """This script as a process of ``uid``/``gid`` with exactly ``groups`` besides."""
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        ["/usr/bin/python3", "-I", "-B", str(SCRIPT), *args],
        user=uid,
        group=gid,
        extra_groups=groups,
        text=True,
        cwd="/",
        **popen,
    )


def _drain(sock: socket.socket) -> tuple[bytes, bool]:
    """What the daemon sent, and whether it has closed the connection."""
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except BlockingIOError:
            return data, False
        except ConnectionResetError:  # closed with our (empty) side unread: the same
            return data, True
        if not chunk:
            return data, True
        data += chunk


def _connect(path: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        sock.connect(path)
    except OSError:  # the listen queue is full (EAGAIN): try again later
        sock.close()
        return None
    return sock


def flood(path: str, hold: int, seconds: float) -> dict[str, object]:
    selector = selectors.DefaultSelector()
    opened_at: dict[socket.socket, float] = {}
    received: dict[socket.socket, bytes] = {}
    lifetimes: list[float] = []
    replies: Counter[str] = Counter()
    opened = queue_full = peak = 0
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        while len(opened_at) < hold:
            sock = _connect(path)
            if sock is None:
                queue_full += 1
                break
            opened += 1
            opened_at[sock] = time.monotonic()
            received[sock] = b""
            selector.register(sock, selectors.EVENT_READ)
        peak = max(peak, len(opened_at))
        for key, _ in selector.select(timeout=0.01):
            ready: socket.socket = key.fileobj  # type: ignore[assignment]
            data, closed = _drain(ready)
            received[ready] += data
            if closed:
                lifetimes.append(time.monotonic() - opened_at.pop(ready))
                reply = received.pop(ready).decode(errors="replace").strip()
                replies[reply or "(nothing)"] += 1
                selector.unregister(ready)
                ready.close()
    still_open = len(opened_at)
    oldest = max((time.monotonic() - t for t in opened_at.values()), default=0.0)
    for sock in opened_at:
        sock.close()
    lifetimes.sort()
    return {
        "uid": os.getuid(),
        "seconds": round(time.monotonic() - start, 2),
        "opened": opened,
        "closed_by_daemon": len(lifetimes),
        "still_open": still_open,
        "oldest_still_open": round(oldest, 3),
        "peak_open": peak,
        "queue_full": queue_full,
        "median_lifetime": round(lifetimes[len(lifetimes) // 2], 4) if lifetimes else None,
        "p99_lifetime": round(lifetimes[int(len(lifetimes) * 0.99)], 4) if lifetimes else None,
        "max_lifetime": round(lifetimes[-1], 4) if lifetimes else None,
        "replies": dict(replies),
    }


def hold(path: str, count: int) -> None:
    held = []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(path)
        held.append(sock)
    # A ping on each tells the kept from the refused however loaded the machine is: the
    # kept answer ok, the refused were answered (busy, forbidden) and closed.
    replies: Counter[str] = Counter()
    still = []
    for sock in held:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b'{"op":"ping"}\n')
        try:
            line = sock.makefile("rb").readline().decode(errors="replace").strip()
        except ConnectionResetError:
            line = ""
        if line == '{"result":"ok"}':
            still.append(sock)
        else:
            replies[line or "(nothing)"] += 1
            sock.close()
    print(json.dumps({"open": len(still), "closed": count - len(still), "replies": replies}))
    sys.stdout.flush()
    sys.stdin.read()  # until the test is done with us
    for sock in still:
        sock.close()


def talk(path: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    reader = sock.makefile("rb")
    for line in sys.stdin:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(line.encode())  # on a closed connection an answer may still wait
        try:
            reply = reader.readline()
        except ConnectionResetError:
            reply = b""
        print(reply.decode().strip() if reply else "closed")
        sys.stdout.flush()


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "flood":
        print(json.dumps(flood(path, int(sys.argv[3]), float(sys.argv[4]))))
    elif mode == "hold":
        hold(path, int(sys.argv[3]))
    elif mode == "talk":
        talk(path)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
