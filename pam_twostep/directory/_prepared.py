"""Search requests encoded once and sent as bytes.

Building and BER-encoding a search (parsing the filter, pyasn1) was a third of
twostepd's CPU per login; the same user's searches are identical, so each distinct one
is encoded once and kept (bounded), then written to the socket as ldap3 would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ldap3 import DEREF_NEVER, Connection
from ldap3.core import exceptions as ldap_errors
from ldap3.operation.search import search_operation
from ldap3.protocol.rfc4511 import ProtocolOp
from ldap3.strategy.base import BaseStrategy
from ldap3.utils.asn1 import encode as ber_encode

from ..core.errors import DirectoryUnavailable
from ._answers import describe

__all__ = ["Prepared", "SearchRequests", "message", "prepare", "search_request", "send_prepared"]

_MAX_CACHED_REQUESTS = 2048
"""Prepared searches kept (one per user who logged in lately, about 1 KiB each); cleared
when full. At 20,000 this held 20 MiB per serving process once 100,000 distinct users
had logged in (issue 15), for hits only on users back within the same few thousand."""


@dataclass(frozen=True)
class Prepared:
    """A request encoded once: its protocolOp in BER, and what ldap3 keeps about it."""

    operation: bytes
    request: Mapping[str, object]


def search_request(
    base: str,
    search_filter: str,
    attributes: Sequence[str],
    scope: str,
    limit: int,
    timeout: float,
) -> object:
    """ldap3's search request object (filter parsed), as ``Connection.search`` builds it."""
    return search_operation(
        base,
        search_filter,
        scope,
        DEREF_NEVER,
        list(attributes),
        limit,
        max(1, int(timeout)),
        False,
        True,
        True,
        None,
        validator=None,
        check_names=True,
    )


def prepare(kind: str, request: object) -> Prepared:
    return Prepared(
        operation=ber_encode(ProtocolOp().setComponentByName(kind, request)),
        request=BaseStrategy.decode_request(kind, request, None),
    )


def _ber_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def message(message_id: int, prepared: Prepared) -> bytes:
    """RFC 4511 LDAPMessage: SEQUENCE { messageID INTEGER, protocolOp } (no controls)."""
    number = message_id.to_bytes(message_id.bit_length() // 8 + 1, "big", signed=True)
    body = b"\x02" + _ber_length(len(number)) + number + prepared.operation
    return b"\x30" + _ber_length(len(body)) + body


def send_prepared(conn: Connection, prepared: Prepared) -> int:
    """What ldap3's ``BaseStrategy.send`` does for a request without controls, minus the
    encoding. Relies on ldap3 internals (``strategy._outstanding``) kept as of 2.9; any
    change there breaks every search in the tests, not silently. Connections here bind
    simply (no SASL signing), the one case where ``send`` alters the bytes."""
    if not conn.listening:
        raise ldap_errors.LDAPSocketOpenError("unable to send message, socket is not open")
    message_id: int = conn.server.next_message_id()
    request = dict(prepared.request)
    conn.request = request
    conn.strategy._outstanding[message_id] = request
    try:
        conn.socket.sendall(message(message_id, prepared))
    except OSError as exc:
        raise ldap_errors.LDAPSocketSendError(f"socket sending error: {exc}") from None
    return message_id


class SearchRequests:
    """The prepared searches of one ``Directory``, by what they ask."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._requests: dict[tuple[object, ...], Prepared] = {}

    def get(
        self, base: str, search_filter: str, attributes: Sequence[str], scope: str, limit: int
    ) -> Prepared:
        key = (base, search_filter, tuple(attributes), scope, limit)
        prepared = self._requests.get(key)
        if prepared is None:
            try:
                request = search_request(
                    base, search_filter, attributes, scope, limit, self._timeout
                )
            except ldap_errors.LDAPException as exc:
                raise DirectoryUnavailable(f"search: {describe(exc)}") from None
            prepared = prepare("searchRequest", request)
            if len(self._requests) >= _MAX_CACHED_REQUESTS:
                self._requests.clear()
            self._requests[key] = prepared
        return prepared
