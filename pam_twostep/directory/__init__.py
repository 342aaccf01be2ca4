"""The directory: the only package that imports ldap3.

It speaks in the core's terms (``RawEntry`` in, ``Modify`` out) and translates every
ldap3 outcome into ours: a lost compare-and-swap is ``Conflict``, a user's wrong
password is ``False``, and *everything else* that goes wrong (unreachable, slow,
refused, schema missing) is ``DirectoryUnavailable``, a temporary failure. ldap3 runs
with exceptions on, so no failure can hide in a result code.

Connections bound as the service identity are pooled (one thread uses one connection
at a time). Password checks bind as the user on connections kept for that alone, so a
user's identity never leaks into a service connection. Every operation has a timeout.

One provider per daemon. With several URIs (replicated providers), the reads of every
serving process go to the same server, chosen for the whole daemon (``ProviderChoice``,
created before the processes fork): the first in configured order that answers. It
moves to a later one only when its server fails, and back to an earlier one after a wait
and once that one has caught up. Under ``ldap.single_use: strict`` (the default)
single-use writes (guarded modifies) go to the first URI only, so every twostepd that
lists the same first URI consumes codes on the same server, whatever its reads do;
under ``available`` writes go where reads go (docs/security.md).

Inside: ``_providers`` (which server, the pooled connections, fail-over and fail-back),
``_choice`` (the daemon's one choice of provider), ``_csn`` (has a provider caught up?),
``_answers`` (result codes and errors in our terms), ``_prepared`` (searches encoded
once), ``_decoding`` (entries decoded only as far as they are read), ``_tls``
(verified TLS); this module, the operations.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import TypeVar

from ldap3 import BASE, MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, SUBTREE, Connection
from ldap3.core import exceptions as ldap_errors
from ldap3.protocol.sasl.sasl import validate_simple_password
from ldap3.utils.conv import escape_filter_chars

from ..config import LdapConfig, UsersConfig
from ..core.account import RawEntry
from ..core.changes import Change, Modify, Op
from ..core.errors import Conflict, DirectoryIncomplete, DirectoryRefused, DirectoryUnavailable
from ._answers import (
    BROKEN,
    CONFLICTS,
    REFUSALS,
    SIZE_LIMIT_EXCEEDED,
    NoSuchObject,
    NotSuccess,
    describe,
    quietly_close,
    raw_entry,
    require_success,
    result_code,
)
from ._csn import context_csns, suffix_of
from ._decoding import install
from ._prepared import SearchRequests, send_prepared
from ._providers import ProviderChoice, Providers

__all__ = ["Directory", "ProviderChoice", "escape_filter"]

install()  # entries decoded only as far as they are read (see _decoding)

_OPS = {Op.ADD: MODIFY_ADD, Op.DELETE: MODIFY_DELETE, Op.REPLACE: MODIFY_REPLACE}
_MAX_PASSWORD = 1024
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


def _sendable(password: str) -> bool:
    """Whether ``password`` can be anyone's: ldap3 prepares a simple bind's password with
    SASLprep (RFC 4013), which refuses control characters, before anything is sent. Such
    a password (sshd sends "\\b\\n\\r\\x7fINCORRECT" for every unknown user) is a wrong
    password, decided here, not a directory outage."""
    if not password or "\0" in password or len(password) > _MAX_PASSWORD:
        return False
    try:
        validate_simple_password(password)
    except ldap_errors.LDAPException:
        return False
    return True


class Directory:
    def __init__(
        self,
        ldap: LdapConfig,
        users: UsersConfig,
        bind_password: str,
        *,
        choice: ProviderChoice | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``choice``: the daemon's record of the provider in use, shared by its serving
        processes; a ``Directory`` of its own otherwise. A shared record keeps the
        ``ldap`` settings it has (``adopt_settings`` replaces them)."""
        self._config = ldap
        self._users = users
        self._counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self._providers = Providers(
            ldap, bind_password, self._count, base=users.base, choice=choice, clock=clock
        )
        self._searches = SearchRequests(ldap.timeout)

    def _count(self, what: str) -> None:
        with self._count_lock:
            self._counts[what] += 1

    def counts(self) -> dict[str, int]:
        """Operations sent to the directory since start: search, modify, bind, connect, ..."""
        with self._count_lock:
            return dict(self._counts)

    @property
    def server_in_use(self) -> str:
        """The URI reads go to now (for ``stats`` and ``twostep check``)."""
        return self._providers.server_in_use

    @property
    def write_server(self) -> str:
        """The URI writes go to now: the first under ``strict``, else ``server_in_use``."""
        return self._providers.write_server

    def adopt_settings(self) -> None:
        """Make this ``Directory``'s ``ldap`` settings the daemon's, for every serving
        process: on a reload, once the whole new configuration has been built."""
        self._providers.adopt()

    def close(self) -> None:
        self._providers.close()

    def _run(
        self,
        what: str,
        operation: Callable[[Connection], _T],
        *,
        write: bool,
        single_use: bool = False,
    ) -> _T:
        """Run ``operation`` on a service connection, translating errors.

        Reads are retried once on a fresh connection, never a pooled one: the pooled
        ones may all have gone stale when the server restarted. Writes are not, because
        a write whose answer was lost may have been applied.
        """
        self._count(what)
        attempts = 1 if write else 2
        for attempt in range(attempts):
            try:
                with self._providers.service(
                    write=write, single_use=single_use, fresh=attempt > 0
                ) as conn:
                    return operation(conn)
            except CONFLICTS as exc:
                if single_use and self.server_in_use != self.write_server:
                    # strict, reads not yet back on the first URI: the swap may have lost
                    # to a value the read provider has not received, not to a replay. No
                    # second accept either way; a temporary failure, not a counted one.
                    raise DirectoryUnavailable(
                        f"{what}: {type(exc).__name__} on the write provider while reads "
                        "come from another"
                    ) from None
                raise Conflict(f"{what}: {type(exc).__name__}") from None
            except REFUSALS as exc:
                raise DirectoryRefused(f"{what}: {describe(exc)}") from None
            except BROKEN as exc:
                if attempt + 1 < attempts:
                    continue
                raise DirectoryUnavailable(f"{what}: {type(exc).__name__}") from None
            except NotSuccess as exc:
                raise DirectoryIncomplete(f"{what}: {exc}") from None
            except ldap_errors.LDAPException as exc:
                raise DirectoryUnavailable(f"{what}: {describe(exc)}") from None
        raise DirectoryUnavailable(what)  # pragma: no cover - the loop always returns or raises

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
        except NoSuchObject:
            return None
        return entries[0] if entries else None

    def search(
        self, base: str, search_filter: str, attributes: Sequence[str], limit: int = 1000
    ) -> list[RawEntry]:
        try:
            return self._search(base, search_filter, attributes, SUBTREE, limit=limit)
        except NoSuchObject:
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
            seen: set[bytes] = set()
            while True:
                conn.search(
                    base,
                    search_filter,
                    SUBTREE,
                    attributes=["1.1"],
                    paged_size=_PAGE,
                    paged_cookie=cookie,
                )
                require_success(conn)
                names += [
                    str(item["dn"])
                    for item in conn.response or ()
                    if item.get("type") == "searchResEntry"
                ]
                controls = (conn.result or {}).get("controls") or {}
                cookie = controls.get(paged, {}).get("value", {}).get("cookie") or None
                if not cookie:
                    return names
                if cookie in seen:  # a server going round in circles: never a listing
                    raise NotSuccess("the server repeated a paging cookie")
                seen.add(cookie)

        return self._run("search", operation, write=False)

    def _search(
        self, base: str, search_filter: str, attributes: Sequence[str], scope: str, limit: int
    ) -> list[RawEntry]:
        prepared = self._searches.get(base, search_filter, attributes, scope, limit)

        def operation(conn: Connection) -> list[RawEntry]:
            try:
                response = conn.post_send_search(send_prepared(conn, prepared))
            except ldap_errors.LDAPNoSuchObjectResult:
                raise NoSuchObject() from None
            entries = [
                raw_entry(item) for item in response or () if item.get("type") == "searchResEntry"
            ]
            # sizeLimitExceeded is complete only when it is our own limit that was reached
            # (find_account asks for 2 to see a second match); a server's lower limit or a
            # time limit leaves the answer partial.
            if not (result_code(conn) == SIZE_LIMIT_EXCEEDED and len(entries) >= limit):
                require_success(conn)
            return entries

        return self._run("search", operation, write=False)

    def context_csns(self) -> list[bytes]:
        """The contextCSN values of the database holding the users (none without
        syncprov, or where the service may not read them): what fail-back compares."""

        def operation(conn: Connection) -> list[bytes]:
            return context_csns(conn, suffix_of(conn, self._users.base))

        return self._run("search", operation, write=False)

    # -- writes -----------------------------------------------------------------------

    def modify(self, dn: str, modify: Modify) -> None:
        """Apply one modify request atomically; ``Conflict`` if a deleted value was gone.

        A guarded modify (a code consumed, by compare-and-swap) is single use: under
        ``strict`` it goes to the first URI or nowhere."""
        if not modify:
            return
        grouped: dict[str, list[tuple[str, list[str]]]] = {}
        for change in modify.changes:
            grouped.setdefault(change.attribute, []).append((_OPS[change.op], list(change.values)))

        def operation(conn: Connection) -> None:
            # ldap3 raises for neither a referral nor compareTrue: a swap answered so was
            # not applied, and taken as done it would accept one code again and again
            require_success(conn, conn.modify(dn, grouped))

        self._run("modify", operation, write=True, single_use=modify.guarded)

    def add_values_if_missing(self, dn: str, attribute: str, value: str) -> None:
        """Add one value, treating 'already there' as success (objectClass on first use)."""
        with suppress(Conflict):
            self.modify(dn, Modify((Change.add(attribute, value),)))

    def add_entry(
        self, dn: str, object_classes: Sequence[str], attributes: dict[str, list[str]]
    ) -> None:
        def operation(conn: Connection) -> None:
            require_success(conn, conn.add(dn, list(object_classes), attributes))

        self._run("add", operation, write=True)

    def delete_entry(self, dn: str) -> None:
        def operation(conn: Connection) -> None:
            require_success(conn, conn.delete(dn))

        self._run("delete", operation, write=True)

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
            _, conn = self._providers.open(bind_dn, password)
        except ldap_errors.LDAPException as exc:
            raise DirectoryUnavailable(f"bind: {describe(exc)}") from None
        try:
            conn.search(dn, "(objectClass=*)", search_scope=BASE, attributes=list(attributes))
            require_success(conn)  # a referral read as "sees nothing" would pass the check
            entries = [
                raw_entry(item)
                for item in conn.response or ()
                if item.get("type") == "searchResEntry"
            ]
        except ldap_errors.LDAPNoSuchObjectResult:
            return None
        except ldap_errors.LDAPException as exc:
            raise DirectoryUnavailable(f"read: {describe(exc)}") from None
        finally:
            quietly_close(conn)
        return entries[0] if entries else None

    # -- user binds -------------------------------------------------------------------

    def check_password(self, dn: str, password: str) -> bool:
        """Whether ``password`` is the account's password, by binding as the user.

        An empty password is refused here: LDAP treats it as an anonymous bind, which
        "succeeds" (RFC 4513 5.1.2).
        """
        if not _sendable(password):
            return False
        self._count("user-bind")
        self._providers.fail_back()
        index, conn = self._providers.take_binder()
        if conn is not None and index == self._providers.current:
            # A connection kept for binding only: rebinding costs half of a new one.
            try:
                require_success(conn, conn.rebind(dn, password))
            except ldap_errors.LDAPInvalidCredentialsResult:
                self._providers.keep_binder(index, conn)
                return False
            except ldap_errors.LDAPException:
                quietly_close(conn)  # stale (server restarted?): retry on a fresh one
            else:
                self._providers.keep_binder(index, conn)
                return True
        elif conn is not None:
            quietly_close(conn)
        try:
            index, conn = self._providers.open(dn, password, fail_over=False)
        except ldap_errors.LDAPInvalidCredentialsResult:
            return False
        except ldap_errors.LDAPException as exc:
            raise DirectoryUnavailable(f"password check: {describe(exc)}") from None
        self._providers.keep_binder(index, conn)
        return True

    def change_password(self, dn: str, old: str, new: str) -> bool:
        """RFC 3062 password modify, bound as the user; False if ``old`` is wrong."""
        if not _sendable(old):
            return False
        if not _sendable(new):
            raise ValueError(
                "a new password has 1 to 1024 characters, no NUL and no control characters"
            )
        try:
            _, conn = self._providers.open(dn, old, fail_over=False, write=True)
        except ldap_errors.LDAPInvalidCredentialsResult:
            return False
        except ldap_errors.LDAPException as exc:
            raise DirectoryUnavailable(f"password change: {describe(exc)}") from None
        try:
            done = conn.extend.standard.modify_password(user=dn, old_password=old, new_password=new)
            require_success(conn, done)  # a referral, say: the password is unchanged
        except ldap_errors.LDAPException as exc:
            raise DirectoryUnavailable(f"password change: {describe(exc)}") from None
        finally:
            quietly_close(conn)
        return True
