"""The providers and the connections to them: one provider at a time, pooled.

Every connection goes to the provider in use: the first in configured order that
answers. Service connections move to a later one only when it fails, and back to an
earlier one no sooner than ``ldap.failback_after`` seconds later; user binds never move
it. Private to the directory package.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ldap3 import NONE, Connection, Server
from ldap3.core import exceptions as ldap_errors

from ..config import LdapConfig
from ..core.errors import DirectoryUnavailable
from ._answers import UNREACHABLE, quietly_close, require_success
from ._tls import VerifyingTls, start_tls

__all__ = ["DEFAULT_LDAPI_SOCKET", "Providers", "ldapi_socket"]

log = logging.getLogger("pam_twostep.directory")


DEFAULT_LDAPI_SOCKET = "/run/slapd/ldapi"
"""Where Debian's slapd listens for ldapi:/// (libldap's default socket, as ldapsearch
-H ldapi:/// reaches it)."""


def ldapi_socket(uri: str) -> str:
    """The socket an ldapi:// URI names: its %-escaped host, else its path; ``ldapi:///``
    (no socket named) is the system's slapd, as for libldap, not the folder "/"."""
    parsed = urllib.parse.urlsplit(uri)
    path = urllib.parse.unquote(parsed.netloc or parsed.path)
    return path if path not in ("", "/") else DEFAULT_LDAPI_SOCKET


class Providers:
    def __init__(
        self,
        ldap: LdapConfig,
        bind_password: str,
        counted: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = ldap
        self._password = bind_password
        self._counted = counted
        self._servers = [self._server(uri) for uri in ldap.uris]
        self._current = 0
        """The provider in use; connections to any other are dropped, not used."""
        self._moved_at = 0.0
        self._probing = False
        self._clock = clock
        self._idle: list[tuple[int, Connection]] = []
        self._binders: list[tuple[int, Connection]] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(ldap.pool_size)

    @property
    def current(self) -> int:
        return self._current

    def take_binder(self) -> tuple[int, Connection | None]:
        """A connection kept for user binds, with its provider's index, if there is one."""
        with self._lock:
            return self._binders.pop() if self._binders else (-1, None)

    def _server(self, uri: str) -> Server:
        parsed = urllib.parse.urlsplit(uri)
        tls = None
        if parsed.scheme == "ldaps" or self._config.start_tls:
            tls = VerifyingTls(str(self._config.ca_file) if self._config.ca_file else None)
        timeout = self._config.timeout
        if parsed.scheme == "ldapi":
            return Server(
                "ldapi://" + urllib.parse.quote(ldapi_socket(uri), safe=""),
                get_info=NONE,
                connect_timeout=timeout,
            )
        return Server(
            parsed.hostname or "",
            port=parsed.port,
            use_ssl=parsed.scheme == "ldaps",
            tls=tls,
            get_info=NONE,
            connect_timeout=timeout,
        )

    @property
    def server_in_use(self) -> str:
        """The URI every connection goes to now (for ``stats`` and ``twostep check``)."""
        return self._config.uris[self._current]

    def open(
        self, user: str | None, password: str | None, *, fail_over: bool = True
    ) -> tuple[int, Connection]:
        """A bound connection to the provider in use, or else (``fail_over``) the first
        that answers.

        Only the service identity's connections fail over: a user's bind that is slow or
        refused says nothing about the server, and moving the daemon for it would break
        the one-provider-at-a-time rule that single use relies on.

        Returns it with the index of its server; raises ldap3 errors.
        """
        current = self._current
        others = [i for i in range(len(self._servers)) if i != current] if fail_over else []
        order = [current, *others]
        last: Exception | None = None
        for index in order:
            try:
                conn = self._connect(index, user, password)
            except UNREACHABLE as exc:
                last = exc
                # The message says why (a certificate that does not verify, a refused
                # connection); ldap3 puts no credentials in these.
                log.warning(
                    "ldap server %s unusable: %s: %s",
                    self._servers[index],
                    type(exc).__name__,
                    str(exc)[:1000],
                )
                continue
            if index != current:
                self.move_to(index)
            return index, conn
        raise DirectoryUnavailable(f"no LDAP server answered ({type(last).__name__})")

    def _connect(self, index: int, user: str | None, password: str | None) -> Connection:
        # ldap3 remembers a failed address for 5 s; we keep our own order instead, so a
        # server that comes back is used again at once.
        self._servers[index].reset_availability()
        self._counted("connect")
        conn = Connection(
            self._servers[index],
            user=user,
            password=password,
            raise_exceptions=True,
            receive_timeout=math.ceil(self._config.timeout),
            auto_referrals=False,
            read_only=False,
            # no empty lists added for attributes an answer lacks: RawEntry.get gives ()
            # for them, and under another spelling they would hide the real values
            return_empty_attributes=False,
        )
        try:
            conn.open()
            server = self._servers[index]
            # ldapi:// is a local socket: StartTLS there would go unverified (ldap3 makes
            # its own unverifying Tls for it) and adds nothing the socket's rights lack.
            if self._config.start_tls and not server.ssl and not getattr(server, "ipc", False):
                start_tls(conn)
            require_success(conn, conn.bind())
        except (ldap_errors.LDAPException, OSError):
            quietly_close(conn)
            raise
        except Exception as exc:  # noqa: BLE001 - see below
            # An answer ldap3 cannot decode (malformed BER, an unknown result code) raises
            # IndexError, KeyError and the like: an unusable server, so the next is tried.
            quietly_close(conn)
            raise ldap_errors.LDAPCommunicationError(
                f"undecodable answer: {type(exc).__name__}"
            ) from None
        except BaseException:
            quietly_close(conn)
            raise
        return conn

    def move_to(self, index: int) -> None:
        """Use provider ``index`` from now on; connections to the others are dropped."""
        with self._lock:
            if self._current == index:
                return
            log.warning(
                "ldap: now using %s instead of %s",
                self._config.uris[index],
                self._config.uris[self._current],
            )
            self._current = index
            self._moved_at = self._clock()
            stale = [c for i, c in self._idle + self._binders if i != index]
            self._idle = [(i, c) for i, c in self._idle if i == index]
            self._binders = [(i, c) for i, c in self._binders if i == index]
        self._counted("failover")
        for conn in stale:
            quietly_close(conn)

    def fail_back(self) -> None:
        """Past ``failback_after`` on a later provider, try the earlier ones again.

        One thread probes at a time, and a failed probe waits another period, so a
        provider that stays down costs one connection attempt per period.
        """
        with self._lock:
            if (
                self._current == 0
                or self._probing
                or self._clock() - self._moved_at < self._config.failback_after
            ):
                return
            self._probing = True
            current = self._current
        try:
            for index in range(current):
                self._counted("failback-probe")
                try:
                    conn = self._connect(index, self._config.bind_dn, self._password)
                except Exception as exc:  # noqa: BLE001 - any failed probe waits a period
                    log.info("fail-back probe of %s failed: %s", self._servers[index], exc)
                    continue
                self.move_to(index)
                self.pool(index, conn)
                return
            with self._lock:
                self._moved_at = self._clock()
        finally:
            with self._lock:
                self._probing = False

    def pool(self, index: int, conn: Connection) -> None:
        with self._lock:
            if index == self._current:
                self._idle.append((index, conn))
                return
        quietly_close(conn)

    @contextmanager
    def service(self) -> Iterator[Connection]:
        """A pooled connection bound as the service; broken ones are dropped."""
        self.fail_back()
        if not self._slots.acquire(timeout=self._config.timeout):
            raise DirectoryUnavailable("all LDAP connections are busy")
        index, conn = -1, None
        try:
            stale = []
            with self._lock:
                while self._idle and conn is None:
                    index, conn = self._idle.pop()
                    if index != self._current or conn.closed:
                        stale.append(conn)
                        conn = None
            for old in stale:
                quietly_close(old)
            if conn is None:
                index, conn = self._open_service()
            yield conn
        except BaseException:
            # Whatever went wrong, this connection's state is unknown: do not pool it.
            if conn is not None:
                quietly_close(conn)
            conn = None
            raise
        finally:
            if conn is not None:
                self.pool(index, conn)
            self._slots.release()

    def _open_service(self) -> tuple[int, Connection]:
        try:
            return self.open(self._config.bind_dn, self._password)
        except ldap_errors.LDAPInvalidCredentialsResult:
            raise DirectoryUnavailable("the service identity's password was refused") from None
        except ldap_errors.LDAPException as exc:
            raise DirectoryUnavailable(
                f"cannot bind as the service ({type(exc).__name__})"
            ) from None

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            binders, self._binders = self._binders, []
        for _, conn in idle + binders:
            quietly_close(conn)

    def keep_binder(self, index: int, conn: Connection) -> None:
        with self._lock:
            if index == self._current and len(self._binders) < self._config.pool_size:
                self._binders.append((index, conn))
                return
        quietly_close(conn)
