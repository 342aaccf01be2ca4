"""TLS to the directory: verified always, the name checked by the standard library.

Private to the directory package (ldap3 is imported nowhere else).
"""

from __future__ import annotations

import ssl
from typing import Any

from ldap3 import Connection, Tls
from ldap3.core import exceptions as ldap_errors

__all__ = ["VerifyingTls", "start_tls"]


def start_tls(conn: Connection) -> None:
    """StartTLS, or LDAPStartTLSError: a server (or someone on the path) answering the
    request with any result code raises that code's own ldap3 class, which could read as
    an answer ("invalid credentials") instead of an unusable server; never go on without
    a verified TLS socket."""
    try:
        started = conn.start_tls(read_server_info=False)
    except (ldap_errors.LDAPStartTLSError, ldap_errors.LDAPCommunicationError):
        raise  # already an unusable server, with its reason (e.g. a certificate's)
    except ldap_errors.LDAPException as exc:
        raise ldap_errors.LDAPStartTLSError(f"StartTLS refused: {type(exc).__name__}") from None
    if started is not True or not isinstance(conn.socket, ssl.SSLSocket):
        raise ldap_errors.LDAPStartTLSError("StartTLS did not start")


class VerifyingTls(Tls):  # type: ignore[misc]
    """ldap3's Tls with the server's name or address checked by the standard library.

    Python 3.12 dropped ``ssl.match_hostname``; ldap3 2.9 then falls back to its own copy,
    which ignores IP-address subjectAltNames, so ``ldaps://<address>`` failed on Debian 13.
    Here the handshake itself checks the certificate against the host (``check_hostname``
    with ``server_hostname``), the same code on Python 3.11 and 3.13, and ldap3's own check
    never runs.
    """

    def __init__(self, ca_file: str | None) -> None:
        super().__init__(
            validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file, version=ssl.PROTOCOL_TLS_CLIENT
        )

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_certs_file)
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        wrapped = context.wrap_socket(
            connection.socket,
            server_hostname=connection.server.host,
            do_handshake_on_connect=False,
        )
        wrapped.do_handshake()  # always now: the name is checked before any byte is sent
        connection.socket = wrapped
