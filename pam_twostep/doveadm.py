"""Dovecot's administration interfaces, as far as twostep needs them: end a user's
sessions, and drop a user from the auth cache.

Sessions end through doveadm's HTTP API (``kick``), the one interface Dovecot 2.3 and
2.4 both offer to another host. The auth cache is flushed through the HTTP API on 2.3;
2.4.1's HTTP ``authCacheFlush`` kills the doveadm process that runs it (an assertion),
so a host may name its ``auth-master`` socket instead, which both versions answer
(``CACHE-FLUSH``; local hosts only).

Errors::

    DoveadmError        the server could not be reached, refused, or answered nonsense
                        (the text names the host and never holds the API key)

A Dovecot user mask is a pattern (``*`` and ``?``): a name holding either is refused
here rather than sent, so no kick reaches another user.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Doveadm", "DoveadmError"]

_NO_SUCH_USER = 68
"""doveadm's exit code (EX_NOUSER) for a kick that matched no session: not a failure."""
_MAX_REPLY = 1 << 20


class DoveadmError(Exception):
    """One host's interface failed; the message is safe to show and to log."""


@dataclass(frozen=True)
class Doveadm:
    name: str
    url: str
    """``http://host:port/doveadm/v1`` (loopback) or ``https://...``."""
    api_key: str = field(repr=False)
    timeout: float = 2.0
    auth_master: Path | None = None

    def kick(self, user: str, address: str | None = None) -> int:
        """End ``user``'s sessions (from ``address`` only, if given); how many ended.

        2.3 answers with the users kicked, 2.4 with a count: either is read as one."""
        _check_user(user)
        mask = [user] if address is None else [user, address]
        body = self._call("kick", {"mask": mask})
        if body is None:
            return 0
        if len(body) == 1 and isinstance(body[0], dict) and "count" in body[0]:
            try:
                count = int(body[0]["count"])
            except (TypeError, ValueError, OverflowError):
                raise DoveadmError(f"{self.name}: kick: unreadable count") from None
            if not 0 <= count < 1 << 31:
                raise DoveadmError(f"{self.name}: kick: unreadable count")
            return count
        return len(body)

    def flush_auth_cache(self, user: str) -> None:
        """Forget the user's cached logins, so a revoked passcode is asked about again."""
        _check_user(user)
        if self.auth_master is not None:
            self._flush_by_socket(self.auth_master, user)
        else:
            self._call("authCacheFlush", {"user": [user]})

    # -- the HTTP API -----------------------------------------------------------------

    def _call(self, command: str, parameters: dict[str, object]) -> list[object] | None:
        """The command's answer (a list), or None when it matched no user."""
        parts = urllib.parse.urlsplit(self.url)
        connection: http.client.HTTPConnection
        try:
            host, port = parts.hostname or "", parts.port
        except ValueError:
            raise DoveadmError(f"{self.name}: not a URL") from None
        if parts.scheme == "https":
            context = ssl.create_default_context()
            connection = http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=context
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
        key = base64.b64encode(self.api_key.encode()).decode()
        payload = json.dumps([[command, parameters, "t"]]).encode()
        try:
            connection.request(
                "POST",
                parts.path or "/doveadm/v1",
                body=payload,
                headers={
                    "Authorization": f"X-Dovecot-API {key}",
                    "Content-Type": "application/json",
                },
            )
            response = connection.getresponse()
            text = response.read(_MAX_REPLY + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise DoveadmError(f"{self.name}: {command}: {_why(exc)}") from None
        finally:
            connection.close()
        if response.status != 200:
            raise DoveadmError(f"{self.name}: {command}: HTTP {response.status}")
        return _answer(self.name, command, text)

    # -- the auth-master socket -------------------------------------------------------

    def _flush_by_socket(self, path: Path, user: str) -> None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(self.timeout)
                conn.connect(str(path))
                conn.sendall(f"VERSION\t1\t0\nCACHE-FLUSH\t1\t{user}\n".encode())
                received = b""
                while len(received) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    received += chunk
                    for line in received.split(b"\n")[:-1]:
                        if line.startswith(b"OK\t1\t"):
                            return
                        if line.startswith(b"FAIL\t1"):
                            raise DoveadmError(f"{self.name}: auth cache flush refused")
        except OSError as exc:
            raise DoveadmError(f"{self.name}: auth cache flush: {_why(exc)}") from None
        raise DoveadmError(f"{self.name}: auth cache flush: no answer")


def _check_user(user: str) -> None:
    if not user or any(c in user for c in "*?\t\r\n\0"):
        raise DoveadmError("a user name holding * or ? would be a pattern: not sent")


def _printable(value: object) -> str:
    """A server's word, safe for a terminal and a log: letters, digits, - and _ only."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "?" for c in str(value))[
        :40
    ]


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, FileNotFoundError):
        return "no such socket"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, ssl.SSLError):
        return "TLS failed"
    if isinstance(exc, http.client.HTTPException):
        return "not an HTTP answer"
    return type(exc).__name__


def _answer(name: str, command: str, text: bytes) -> list[object] | None:
    if len(text) > _MAX_REPLY:
        raise DoveadmError(f"{name}: {command}: answer too large")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise DoveadmError(f"{name}: {command}: not JSON") from None
    if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], list):
        raise DoveadmError(f"{name}: {command}: unexpected answer")
    entry = data[0]
    if len(entry) == 3 and entry[0] == "doveadmResponse" and isinstance(entry[1], list):
        return entry[1]
    if len(entry) == 3 and entry[0] == "error" and isinstance(entry[1], dict):
        if entry[1].get("exitCode") == _NO_SUCH_USER:
            return None
        kind = _printable(entry[1].get("type", "error"))
        code = _printable(entry[1].get("exitCode"))
        raise DoveadmError(f"{name}: {command}: {kind} (exit {code})")
    raise DoveadmError(f"{name}: {command}: unexpected answer")
