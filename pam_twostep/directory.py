"""The directory: the only module that imports ldap3.

It speaks in the core's terms (``RawEntry`` in, ``Modify`` out) and translates every
ldap3 outcome into ours: a lost compare-and-swap is ``Conflict``, a user's wrong
password is ``False``, and *everything else* that goes wrong (unreachable, slow,
refused, schema missing) is ``DirectoryUnavailable``, a temporary failure. ldap3 runs
with exceptions on, so no failure can hide in a result code.

Connections bound as the service identity are pooled (one thread uses one connection
at a time). Password checks bind as the user on connections kept for that alone, so a
user's identity never leaks into a service connection. Every operation has a timeout.

One provider at a time. With several URIs (replicated providers), every connection of a
``Directory`` goes to the same server: the first in configured order that answers. It
moves to a later one only when its server fails, and back to an earlier one no sooner
than ``ldap.failback_after`` seconds later, once replication has caught up. So the read
and the compare-and-swap that consume a code go to one server, and every twostepd that
lists the providers in the same order consumes codes on the same one (docs/security.md).
"""

from __future__ import annotations

import logging
import math
import re
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from ldap3 import (
    BASE,
    DEREF_NEVER,
    MODIFY_ADD,
    MODIFY_DELETE,
    MODIFY_REPLACE,
    NONE,
    SUBTREE,
    Connection,
    Server,
    Tls,
)
from ldap3.core import exceptions as ldap_errors
from ldap3.operation.search import search_operation
from ldap3.protocol.rfc4511 import ProtocolOp
from ldap3.strategy.base import BaseStrategy
from ldap3.utils.asn1 import encode as ber_encode
from ldap3.utils.conv import escape_filter_chars

from .config import LdapConfig, UsersConfig
from .core.account import RawEntry
from .core.changes import Change, Modify, Op
from .core.errors import Conflict, DirectoryIncomplete, DirectoryUnavailable

__all__ = ["Directory", "escape_filter"]

log = logging.getLogger(__name__)

_OPS = {Op.ADD: MODIFY_ADD, Op.DELETE: MODIFY_DELETE, Op.REPLACE: MODIFY_REPLACE}
# A modify that deletes a value someone else already deleted, or adds a single value that
# someone else already added, lost a race: these are the compare-and-swap failures.
_CONFLICTS = (
    ldap_errors.LDAPNoSuchAttributeResult,
    ldap_errors.LDAPAttributeOrValueExistsResult,
    ldap_errors.LDAPConstraintViolationResult,
    ldap_errors.LDAPEntryAlreadyExistsResult,
)


def _start_tls(conn: Connection) -> None:
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


class _VerifyingTls(Tls):  # type: ignore[misc]
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


# What makes a server unusable for now (try the next), as opposed to an answer.
_UNREACHABLE = (
    ldap_errors.LDAPCommunicationError,
    ldap_errors.LDAPStartTLSError,
    ldap_errors.LDAPBusyResult,
    ldap_errors.LDAPUnavailableResult,
    ldap_errors.LDAPUnwillingToPerformResult,
    OSError,
)
_MAX_ENTRY_VALUES = 4000
_MAX_PASSWORD = 1024
_MAX_CACHED_REQUESTS = 20_000
_PAGE = 500
_T = TypeVar("_T")
_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")
"""An attribute's short name (RFC 4512 keystring), as a caller may name one to match on:
no options, no OID, nothing a filter could be built from."""


def escape_filter(value: str) -> str:
    """RFC 4515 escaping of a value placed inside a search filter."""
    return str(escape_filter_chars(value))


def _class_filter(object_class: str) -> str:
    return f"(objectClass={escape_filter(object_class)})"


class Directory:
    def __init__(
        self,
        ldap: LdapConfig,
        users: UsersConfig,
        bind_password: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = ldap
        self._users = users
        self._password = bind_password
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
        self._counts: Counter[str] = Counter()
        self._requests: dict[tuple[object, ...], _Prepared] = {}
        self._count_lock = threading.Lock()

    def _count(self, what: str) -> None:
        with self._count_lock:
            self._counts[what] += 1

    def counts(self) -> dict[str, int]:
        """Operations sent to the directory since start: search, modify, bind, connect, ..."""
        with self._count_lock:
            return dict(self._counts)

    def _server(self, uri: str) -> Server:
        parsed = urllib.parse.urlsplit(uri)
        tls = None
        if parsed.scheme == "ldaps" or self._config.start_tls:
            tls = _VerifyingTls(str(self._config.ca_file) if self._config.ca_file else None)
        timeout = self._config.timeout
        if parsed.scheme == "ldapi":
            path = urllib.parse.unquote(parsed.netloc or parsed.path)
            return Server(
                "ldapi://" + urllib.parse.quote(path, safe=""),
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

    # -- connections ------------------------------------------------------------------

    @property
    def server_in_use(self) -> str:
        """The URI every connection goes to now (for ``stats`` and ``twostep check``)."""
        return self._config.uris[self._current]

    def _open(
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
            except _UNREACHABLE as exc:
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
                self._move_to(index)
            return index, conn
        raise DirectoryUnavailable(f"no LDAP server answered ({type(last).__name__})")

    def _connect(self, index: int, user: str | None, password: str | None) -> Connection:
        # ldap3 remembers a failed address for 5 s; we keep our own order instead, so a
        # server that comes back is used again at once.
        self._servers[index].reset_availability()
        self._count("connect")
        conn = Connection(
            self._servers[index],
            user=user,
            password=password,
            raise_exceptions=True,
            receive_timeout=math.ceil(self._config.timeout),
            auto_referrals=False,
            read_only=False,
        )
        try:
            conn.open()
            server = self._servers[index]
            # ldapi:// is a local socket: StartTLS there would go unverified (ldap3 makes
            # its own unverifying Tls for it) and adds nothing the socket's rights lack.
            if self._config.start_tls and not server.ssl and not getattr(server, "ipc", False):
                _start_tls(conn)
            _require_success(conn, conn.bind())
        except (ldap_errors.LDAPException, OSError):
            _quietly_close(conn)
            raise
        except Exception as exc:  # noqa: BLE001 - see below
            # An answer ldap3 cannot decode (malformed BER, an unknown result code) raises
            # IndexError, KeyError and the like: an unusable server, so the next is tried.
            _quietly_close(conn)
            raise ldap_errors.LDAPCommunicationError(
                f"undecodable answer: {type(exc).__name__}"
            ) from None
        except BaseException:
            _quietly_close(conn)
            raise
        return conn

    def _move_to(self, index: int) -> None:
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
        self._count("failover")
        for conn in stale:
            _quietly_close(conn)

    def _fail_back(self) -> None:
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
                self._count("failback-probe")
                try:
                    conn = self._connect(index, self._config.bind_dn, self._password)
                except Exception as exc:  # noqa: BLE001 - any failed probe waits a period
                    log.info("fail-back probe of %s failed: %s", self._servers[index], exc)
                    continue
                self._move_to(index)
                self._pool(index, conn)
                return
            with self._lock:
                self._moved_at = self._clock()
        finally:
            with self._lock:
                self._probing = False

    def _pool(self, index: int, conn: Connection) -> None:
        with self._lock:
            if index == self._current:
                self._idle.append((index, conn))
                return
        _quietly_close(conn)

    @contextmanager
    def _service(self) -> Iterator[Connection]:
        """A pooled connection bound as the service; broken ones are dropped."""
        self._fail_back()
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
                _quietly_close(old)
            if conn is None:
                index, conn = self._open_service()
            yield conn
        except BaseException:
            # Whatever went wrong, this connection's state is unknown: do not pool it.
            if conn is not None:
                _quietly_close(conn)
            conn = None
            raise
        finally:
            if conn is not None:
                self._pool(index, conn)
            self._slots.release()

    def _open_service(self) -> tuple[int, Connection]:
        try:
            return self._open(self._config.bind_dn, self._password)
        except ldap_errors.LDAPInvalidCredentialsResult:
            raise DirectoryUnavailable("the service identity's password was refused") from None
        except ldap_errors.LDAPException as exc:
            raise DirectoryUnavailable(
                f"cannot bind as the service ({type(exc).__name__})"
            ) from None

    def _run(self, what: str, operation: Callable[[Connection], _T], *, retry: bool) -> _T:
        """Run ``operation`` on a service connection, translating errors.

        Reads are retried once on a fresh connection: a pooled connection may have gone
        stale when the server restarted. Writes are not, because a write whose answer was
        lost may have been applied.
        """
        self._count(what)
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            try:
                with self._service() as conn:
                    return operation(conn)
            except _CONFLICTS as exc:
                raise Conflict(f"{what}: {type(exc).__name__}") from None
            except (
                ldap_errors.LDAPCommunicationError,
                ldap_errors.LDAPSessionTerminatedByServerError,
                ldap_errors.LDAPResponseTimeoutError,
                ldap_errors.LDAPSocketReceiveError,
                ldap_errors.LDAPSocketSendError,
                OSError,
            ) as exc:
                if attempt + 1 < attempts:
                    continue
                raise DirectoryUnavailable(f"{what}: {type(exc).__name__}") from None
            except _NotSuccess as exc:
                raise DirectoryIncomplete(f"{what}: {exc}") from None
            except ldap_errors.LDAPException as exc:
                raise DirectoryUnavailable(f"{what}: {_describe(exc)}") from None
        raise DirectoryUnavailable(what)  # pragma: no cover - the loop always returns or raises

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            binders, self._binders = self._binders, []
        for _, conn in idle + binders:
            _quietly_close(conn)

    # -- reads ------------------------------------------------------------------------

    def find_account(self, username: str, attributes: Sequence[str]) -> RawEntry | None:
        """The one entry the user filter finds for ``username``, or None.

        More than one match is a configuration problem, reported as a temporary failure
        rather than guessing which entry was meant.
        """
        search_filter = self._users.filter.replace("{username}", escape_filter(username))
        entries = self._search(self._users.base, search_filter, attributes, SUBTREE, limit=2)
        if len(entries) > 1:
            raise DirectoryUnavailable("the user filter matches more than one entry")
        return entries[0] if entries else None

    def read(self, dn: str, attributes: Sequence[str]) -> RawEntry | None:
        try:
            entries = self._search(dn, "(objectClass=*)", attributes, BASE, limit=1)
        except _NoSuchObjectError:
            return None
        return entries[0] if entries else None

    def search(
        self, base: str, search_filter: str, attributes: Sequence[str], limit: int = 1000
    ) -> list[RawEntry]:
        try:
            return self._search(base, search_filter, attributes, SUBTREE, limit=limit)
        except _NoSuchObjectError:
            return []

    def find_by(
        self, attribute: str, value: str, attributes: Sequence[str], *, limit: int = 2
    ) -> list[RawEntry]:
        """Entries under the users' base whose ``attribute`` equals ``value``, at most
        ``limit`` (ask for 2 to tell one match from several).

        For imports, which match accounts on what the old system knew them by (a mail
        address, an employee number) rather than the user filter. ``value`` is escaped;
        an ``attribute`` that is not an attribute name is a ``ValueError`` before anything
        is sent, since it would otherwise be spliced into the filter.
        """
        if not isinstance(attribute, str) or not _ATTRIBUTE.fullmatch(attribute):
            raise ValueError("not an attribute name")
        search_filter = f"({attribute}={escape_filter(value)})"
        return self.search(self._users.base, search_filter, attributes, limit)

    def entries_of_class(
        self, base: str, object_class: str, attributes: Sequence[str], *, limit: int = 1000
    ) -> list[RawEntry]:
        """The entries under ``base`` of ``object_class`` (none when ``base`` is missing)."""
        return self.search(base, _class_filter(object_class), attributes, limit)

    def names_of_class(self, base: str, object_class: str) -> list[str]:
        """The DN of every entry under ``base`` of ``object_class``, however many (paged)."""
        return self.names_under(base, _class_filter(object_class))

    def names_under(self, base: str, search_filter: str) -> list[str]:
        """The DN of every entry under ``base`` that ``search_filter`` matches, however many:
        paged (RFC 2696), all pages on one connection as the server requires."""
        paged = "1.2.840.113556.1.4.319"

        def operation(conn: Connection) -> list[str]:
            names: list[str] = []
            cookie: bytes | None = None
            while True:
                conn.search(
                    base,
                    search_filter,
                    SUBTREE,
                    attributes=["1.1"],
                    paged_size=_PAGE,
                    paged_cookie=cookie,
                )
                _require_success(conn)
                names += [
                    str(item["dn"])
                    for item in conn.response or ()
                    if item.get("type") == "searchResEntry"
                ]
                controls = (conn.result or {}).get("controls") or {}
                cookie = controls.get(paged, {}).get("value", {}).get("cookie") or None
                if not cookie:
                    return names

        return self._run("search", operation, retry=True)

    def _search(
        self, base: str, search_filter: str, attributes: Sequence[str], scope: str, limit: int
    ) -> list[RawEntry]:
        prepared = self._prepared_search(base, search_filter, attributes, scope, limit)

        def operation(conn: Connection) -> list[RawEntry]:
            try:
                response = conn.post_send_search(_send_prepared(conn, prepared))
            except ldap_errors.LDAPNoSuchObjectResult:
                raise _NoSuchObjectError() from None
            entries = [
                _raw_entry(item) for item in response or () if item.get("type") == "searchResEntry"
            ]
            # sizeLimitExceeded is complete only when it is our own limit that was reached
            # (find_account asks for 2 to see a second match); a server's lower limit or a
            # time limit leaves the answer partial.
            if not (_code(conn) == _SIZE_LIMIT_EXCEEDED and len(entries) >= limit):
                _require_success(conn)
            return entries

        return self._run("search", operation, retry=True)

    def _prepared_search(
        self, base: str, search_filter: str, attributes: Sequence[str], scope: str, limit: int
    ) -> _Prepared:
        """The search request, encoded once per distinct search.

        Building and BER-encoding it (parsing the filter, pyasn1) was a third of twostepd's
        CPU per login; the same user's searches are identical, so they are kept (bounded).
        """
        key = (base, search_filter, tuple(attributes), scope, limit)
        prepared = self._requests.get(key)
        if prepared is None:
            try:
                request = _search_request(
                    base, search_filter, attributes, scope, limit, self._config.timeout
                )
            except ldap_errors.LDAPException as exc:
                raise DirectoryUnavailable(f"search: {_describe(exc)}") from None
            prepared = _prepare("searchRequest", request)
            if len(self._requests) >= _MAX_CACHED_REQUESTS:
                self._requests.clear()
            self._requests[key] = prepared
        return prepared

    # -- writes -----------------------------------------------------------------------

    def modify(self, dn: str, modify: Modify) -> None:
        """Apply one modify request atomically; ``Conflict`` if a deleted value was gone."""
        if not modify:
            return
        grouped: dict[str, list[tuple[str, list[str]]]] = {}
        for change in modify.changes:
            grouped.setdefault(change.attribute, []).append((_OPS[change.op], list(change.values)))

        def operation(conn: Connection) -> None:
            conn.modify(dn, grouped)

        self._run("modify", operation, retry=False)

    def add_values_if_missing(self, dn: str, attribute: str, value: str) -> None:
        """Add one value, treating 'already there' as success (objectClass on first use)."""
        with suppress(Conflict):
            self.modify(dn, Modify((Change.add(attribute, value),)))

    def add_entry(
        self, dn: str, object_classes: Sequence[str], attributes: dict[str, list[str]]
    ) -> None:
        def operation(conn: Connection) -> None:
            conn.add(dn, list(object_classes), attributes)

        self._run("add", operation, retry=False)

    def delete_entry(self, dn: str) -> None:
        def operation(conn: Connection) -> None:
            conn.delete(dn)

        self._run("delete", operation, retry=False)

    def read_as(
        self,
        dn: str,
        attributes: Sequence[str],
        bind_dn: str | None = None,
        password: str | None = None,
    ) -> RawEntry | None:
        """Read an entry as someone else (anonymous when ``bind_dn`` is None): what does
        that identity see? For ``twostep check``'s access-control findings."""
        try:
            _, conn = self._open(bind_dn, password)
        except ldap_errors.LDAPException as exc:
            raise DirectoryUnavailable(f"bind: {_describe(exc)}") from None
        try:
            conn.search(dn, "(objectClass=*)", search_scope=BASE, attributes=list(attributes))
            entries = [
                _raw_entry(item)
                for item in conn.response or ()
                if item.get("type") == "searchResEntry"
            ]
        except ldap_errors.LDAPNoSuchObjectResult:
            return None
        except ldap_errors.LDAPException as exc:
            raise DirectoryUnavailable(f"read: {_describe(exc)}") from None
        finally:
            _quietly_close(conn)
        return entries[0] if entries else None

    # -- user binds -------------------------------------------------------------------

    def check_password(self, dn: str, password: str) -> bool:
        """Whether ``password`` is the account's password, by binding as the user.

        An empty password is refused here: LDAP treats it as an anonymous bind, which
        "succeeds" (RFC 4513 5.1.2).
        """
        if not password or "\0" in password or len(password) > _MAX_PASSWORD:
            return False
        self._count("user-bind")
        self._fail_back()
        with self._lock:
            index, conn = self._binders.pop() if self._binders else (-1, None)
        if conn is not None and index == self._current:
            # A connection kept for binding only: rebinding costs half of a new one.
            try:
                _require_success(conn, conn.rebind(dn, password))
            except ldap_errors.LDAPInvalidCredentialsResult:
                self._keep_binder(index, conn)
                return False
            except ldap_errors.LDAPException:
                _quietly_close(conn)  # stale (server restarted?): retry on a fresh one
            else:
                self._keep_binder(index, conn)
                return True
        elif conn is not None:
            _quietly_close(conn)
        try:
            index, conn = self._open(dn, password, fail_over=False)
        except ldap_errors.LDAPInvalidCredentialsResult:
            return False
        except ldap_errors.LDAPException as exc:
            raise DirectoryUnavailable(f"password check: {_describe(exc)}") from None
        self._keep_binder(index, conn)
        return True

    def _keep_binder(self, index: int, conn: Connection) -> None:
        with self._lock:
            if index == self._current and len(self._binders) < self._config.pool_size:
                self._binders.append((index, conn))
                return
        _quietly_close(conn)

    def change_password(self, dn: str, old: str, new: str) -> bool:
        """RFC 3062 password modify, bound as the user; False if ``old`` is wrong."""
        if not old or "\0" in old or len(old) > _MAX_PASSWORD:
            return False
        if not new or "\0" in new or len(new) > _MAX_PASSWORD:
            raise ValueError("a new password has 1 to 1024 characters and no NUL")
        try:
            _, conn = self._open(dn, old, fail_over=False)
        except ldap_errors.LDAPInvalidCredentialsResult:
            return False
        except ldap_errors.LDAPException as exc:
            raise DirectoryUnavailable(f"password change: {_describe(exc)}") from None
        try:
            conn.extend.standard.modify_password(user=dn, old_password=old, new_password=new)
        except ldap_errors.LDAPException as exc:
            raise DirectoryUnavailable(f"password change: {_describe(exc)}") from None
        finally:
            _quietly_close(conn)
        return True


class _NoSuchObjectError(Exception):
    pass


class _NotSuccess(ldap_errors.LDAPException):  # type: ignore[misc]
    """An operation whose final result code is not success (0).

    ldap3 raises for most codes, but not for sizeLimitExceeded, timeLimitExceeded,
    referral, compareFalse/True or saslBindInProgress: a search so answered would be taken
    as complete (a truncated listing, a user "not found"), and a bind so answered as
    accepted. Whatever the code, the caller sees a temporary failure.
    """


_SIZE_LIMIT_EXCEEDED = 4


def _code(conn: Connection) -> object:
    result = conn.result if isinstance(conn.result, Mapping) else {}
    return result.get("result")


def _require_success(conn: Connection, done: object = True) -> None:
    result = conn.result if isinstance(conn.result, Mapping) else {}
    code = result.get("result")
    if done is not True or code != 0:
        name = result.get("description") or "nothing"
        raise _NotSuccess(
            f"the directory answered {name} (code {code}) instead of success: "
            "an incomplete answer is never used"
        )


@dataclass(frozen=True)
class _Prepared:
    """A request encoded once: its protocolOp in BER, and what ldap3 keeps about it."""

    operation: bytes
    request: Mapping[str, object]


def _search_request(
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


def _prepare(kind: str, request: object) -> _Prepared:
    return _Prepared(
        operation=ber_encode(ProtocolOp().setComponentByName(kind, request)),
        request=BaseStrategy.decode_request(kind, request, None),
    )


def _ber_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def _message(message_id: int, prepared: _Prepared) -> bytes:
    """RFC 4511 LDAPMessage: SEQUENCE { messageID INTEGER, protocolOp } (no controls)."""
    number = message_id.to_bytes(message_id.bit_length() // 8 + 1, "big", signed=True)
    body = b"\x02" + _ber_length(len(number)) + number + prepared.operation
    return b"\x30" + _ber_length(len(body)) + body


def _send_prepared(conn: Connection, prepared: _Prepared) -> int:
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
        conn.socket.sendall(_message(message_id, prepared))
    except OSError as exc:
        raise ldap_errors.LDAPSocketSendError(f"socket sending error: {exc}") from None
    return message_id


def _raw_entry(item: dict[str, object]) -> RawEntry:
    raw = item.get("raw_attributes")
    if not isinstance(raw, Mapping):
        raise DirectoryUnavailable("a search result without attributes")
    attributes: dict[str, tuple[bytes, ...]] = {}
    total = 0
    for name, listed in raw.items():
        values = tuple(v for v in listed if isinstance(v, bytes))
        total += len(values)
        attributes[str(name).lower()] = values
    if total > _MAX_ENTRY_VALUES:
        raise DirectoryUnavailable("an entry with implausibly many values")
    return RawEntry(dn=str(item.get("dn", "")), attributes=attributes)


def _describe(exc: Exception) -> str:
    if isinstance(exc, _NotSuccess):
        return str(exc)
    description = getattr(exc, "description", None)
    return f"{type(exc).__name__}" + (f" ({description})" if description else "")


def _quietly_close(conn: Connection) -> None:
    # Closing a broken connection may fail in any way; there is nothing left to do about it.
    with suppress(Exception):
        conn.unbind()
