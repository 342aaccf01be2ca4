"""The protocol between twostepd and its thin clients: one JSON object per line.

This module is what the checkpassword program and the PAM module import, so it uses
only C-level standard modules (``_json``, ``_socket``): importing ``json`` or ``socket``
would pull in ``re``, ``enum`` and more, and every login pays for each import. The
daemon decodes requests with the same ``decode`` the clients use, so both sides agree
by construction; the Lua passdb is the one other implementation, held to the same
contract by tests.

Framing: a message is UTF-8 JSON, one object, on one line ending in ``\\n``. A request
is at most ``MAX_MESSAGE`` bytes including the newline (what the daemon holds for a
stranger); a reply at most ``MAX_REPLY`` (an account's status lists every passcode and
device, and clients trust the daemon). Requests carry ``op`` and the fields of
that operation; every reply carries ``result``. See README.md, "The twostepd protocol".
"""

import _json
import _socket
import time

__all__ = [
    "DEFAULT_SOCKET",
    "MAX_MESSAGE",
    "MAX_REPLY",
    "ProtocolError",
    "ask",
    "decode",
    "encode",
]

DEFAULT_SOCKET = "/run/twostep/twostepd.sock"
MAX_MESSAGE = 8192
"""Bytes per request, newline included: room for any request, and a bound on memory."""
MAX_REPLY = 4 << 20
"""Bytes per reply: the largest entry the directory layer reads fits many times over."""

_encode_string = _json.encode_basestring_ascii


class ProtocolError(Exception):
    """A message that is not one well-formed JSON object, or a reply that never came."""


def _refuse_constant(name: str) -> object:
    raise ProtocolError(f"{name} is not allowed")


class _Context:
    """What ``_json.make_scanner`` reads to configure itself (as json.JSONDecoder would)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_refuse_constant)


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]


def _encode_value(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return str(_encode_string(value))
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(
                f"{_encode_string(str(key))}:{_encode_value(item)}" for key, item in value.items()
            )
            + "}"
        )
    raise ProtocolError(f"cannot encode {type(value).__name__}")


def encode(message: dict[str, object], limit: int = MAX_MESSAGE) -> bytes:
    """One message, newline-terminated; ``ProtocolError`` if it would exceed ``limit``."""
    data = (_encode_value(message) + "\n").encode("ascii")
    if len(data) > limit:
        raise ProtocolError("message too large")
    return data


def decode(line: bytes, limit: int = MAX_MESSAGE) -> dict[str, object]:
    """Parse one message (with or without its newline); anything else is ProtocolError."""
    if len(line) > limit:
        raise ProtocolError("message too large")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("not UTF-8") from None
    if text.endswith("\n"):
        text = text[:-1]
    if "\n" in text or not text.startswith("{"):
        raise ProtocolError("not one JSON object on one line")
    try:
        value, end = _scan(text, 0)
    except Exception as exc:  # noqa: BLE001
        # The C scanner raises StopIteration, ValueError or RecursionError; when
        # json.decoder was never imported (as here) its error path ends in SystemError.
        raise ProtocolError(f"not JSON ({type(exc).__name__})") from None
    if end != len(text.rstrip(" \t\r")):
        raise ProtocolError("trailing data after the JSON object")
    if not isinstance(value, dict):
        raise ProtocolError("not a JSON object")
    return value


def ask(path: str, request: dict[str, object], timeout: float) -> dict[str, object]:
    """Send one request on a fresh connection and return the reply.

    Raises ``OSError`` when the daemon cannot be reached or is too slow, and
    ``ProtocolError`` when it answers with something that is not a reply.
    """
    data = encode(request)
    deadline = time.monotonic() + timeout
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        while True:
            try:
                sock.connect(path)
                break
            except BlockingIOError:  # the daemon's backlog is full for a moment: wait
                if time.monotonic() >= deadline:
                    raise TimeoutError("the daemon is not accepting connections") from None
                time.sleep(0.005)
        try:  # noqa: SIM105 - contextlib would cost an import on every login
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon refused before reading all of it: its answer may be waiting
        received = b""
        while not received.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply in time")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                raise ProtocolError("connection closed before a reply")
            received += chunk
            if len(received) > MAX_REPLY:
                raise ProtocolError("reply too large")
    finally:
        sock.close()
    reply = decode(received, MAX_REPLY)
    if not isinstance(reply.get("result"), str):
        raise ProtocolError("reply without a result")
    return reply
