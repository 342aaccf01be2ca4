"""The providers and the connections to them: one provider per daemon, pooled.

Every connection goes to the provider the daemon uses: the first in configured order that
answers, one choice for all the daemon's serving processes (``_choice``). Service
connections move it to a later one only when it fails, and back to an earlier one no
sooner than ``ldap.failback_after`` seconds later *and* once that one has caught up
(``_csn``); user binds never move it.

With ``ldap.single_use: strict`` (the default) writes have a provider of their own: the
first URI. Whatever the reads do, every single-use write (a compare-and-swap carrying a
decision: a code, a backup code, a pending secret) goes to that one server, so its
compare-and-swap decides single use for every host that lists the same first URI;
while it is unreachable those fail (a temporary failure). Other writes (failure counts,
usage, management) go there too while it answers, else to the provider in use. With
``available``, writes go where reads go, and fail over with them. Private to the
directory package.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ldap3 import NONE, Connection, Server
from ldap3.core import exceptions as ldap_errors

from ..config import LdapConfig
from ..core.errors import DirectoryUnavailable
from ._answers import BROKEN, UNREACHABLE, quietly_close, require_success
from ._choice import Holder, ProviderChoice, started
from ._csn import caught_up, context_csns, suffix_of
from ._tls import VerifyingTls, start_tls

__all__ = ["DEFAULT_LDAPI_SOCKET", "ProviderChoice", "Providers", "ldapi_socket"]

log = logging.getLogger("pam_twostep.directory")


DEFAULT_LDAPI_SOCKET = "/run/slapd/ldapi"
"""Where Debian's slapd listens for ldapi:/// (libldap's default socket, as ldapsearch
-H ldapi:/// reaches it)."""

_RECHECK = 1.0
"""Seconds before probing again a provider that answered but had not caught up."""

_SERIALS = itertools.count(1)
"""Tells the ``Providers`` of one process apart in the shared record's holders."""


def _fingerprint(ldap: LdapConfig) -> int:
    """What the shared index means: the URIs it counts in, and where writes go."""
    text = "\n".join((ldap.single_use, *ldap.uris)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") or 1


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
        base: str,
        choice: ProviderChoice | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = ldap
        self._password = bind_password
        self._counted = counted
        self._base = base
        self._servers = [self._server(uri) for uri in ldap.uris]
        self._choice = choice if choice is not None else ProviderChoice()
        self._owns_choice = choice is None
        self._strict = ldap.single_use == "strict" and len(ldap.uris) > 1
        self._clock = clock
        self._settings = _fingerprint(ldap)
        pid = os.getpid()
        try:
            since = started(pid)
        except OSError as exc:
            since, why = None, str(exc)
        else:
            why = "it is gone"
        if since is None and not self._owns_choice:
            # uncounted, it could be taken over from while it serves
            log.error("ldap: cannot read this process's start time: %s", why)
            raise DirectoryUnavailable("cannot tell this process apart in the shared record")
        since = since or 0  # a record of its own: nobody else to tell it from
        self._holder = Holder(pid, next(_SERIALS), since, self._settings)
        self._closed = False
        joined = self._choice.join(self._holder)
        if joined is None:
            log.error("ldap: no room in the shared provider record: this process serves nothing")
        self._generation = joined
        self._take_over()
        self._disowned = False
        self._seen = self.current
        """The provider this process's pool was kept for; the record may have moved since."""
        self._probes: list[threading.Thread] = []
        self._idle: list[tuple[int, Connection]] = []
        self._binders: list[tuple[int, Connection]] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(ldap.pool_size)

    def adopt(self) -> None:
        """Make this process's ``ldap`` settings the daemon's (a reload that succeeded)."""
        if self._generation is not None:
            self._generation = self._choice.adopt(self._settings, self._clock())

    @property
    def current(self) -> int:
        """The provider every process of the daemon reads from now."""
        index = self._choice.index()
        return index if index < len(self._servers) else 0

    def _write_index(self, current: int) -> int:
        return 0 if self._strict else current

    def _kept(self, index: int) -> bool:
        current = self.current
        return index in (current, self._write_index(current))

    def _follow(self) -> int:
        """Follow the record before an operation: connections kept for a provider no
        longer in use are dropped. Returns the provider in use.

        A process whose ``ldap`` settings are not the daemon's (another process reloaded
        newer ones) serves nothing: its index would name another server."""
        if self._generation is None:
            raise DirectoryUnavailable("this process is not counted in the shared record")
        if (
            self._choice.settings() != self._settings
            and self._choice.read().settings != self._settings  # not a torn read
            and not self._take_over()
        ):
            if not self._disowned:
                self._disowned = True
                log.error(
                    "ldap.uris or ldap.single_use differ between twostepd's serving "
                    "processes: this one refuses to serve until it is reloaded (SIGHUP)"
                )
            raise DirectoryUnavailable("the serving processes disagree on ldap settings")
        current = self.current
        if current == self._seen:
            return current
        keep = (current, self._write_index(current))
        with self._lock:
            self._seen = current
            stale = [c for i, c in self._idle + self._binders if i not in keep]
            self._idle = [(i, c) for i, c in self._idle if i in keep]
            self._binders = [(i, c) for i, c in self._binders if i in keep]
        log.info("ldap: following the daemon to %s", self._config.uris[current])
        for conn in stale:
            quietly_close(conn)
        return current

    def _take_over(self) -> bool:
        """Whether this process's settings are the daemon's: they were, the record had
        none, or no process on the record's is left (all were replaced since the file
        was edited without a reload)."""
        before = self._choice.settings()
        if (
            self._closed
            or self._generation is None
            or not self._choice.take_over(self._holder, self._generation, self._clock())
        ):
            return False
        if before not in (0, self._settings):
            log.warning(
                "ldap: no serving process on the running ldap settings is left: this "
                "one's are the daemon's now (the configuration file changed without a "
                "reload)"
            )
        self._disowned = False
        return True

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
        """The URI reads go to now (for ``stats`` and ``twostep check``)."""
        return self._config.uris[self.current]

    @property
    def write_server(self) -> str:
        """The URI writes go to now."""
        return self._config.uris[self._write_index(self.current)]

    def _try(
        self, index: int, user: str | None, password: str | None, *, probe: bool = False
    ) -> Connection | None:
        try:
            return self._connect(index, user, password)
        except UNREACHABLE as exc:
            # The message says why (a certificate that does not verify, a refused
            # connection); ldap3 puts no credentials in these. A fail-back probe's
            # failure is news only at info: under strict one runs every second.
            log.log(
                logging.INFO if probe else logging.WARNING,
                "ldap server %s unusable: %s: %s",
                self._servers[index],
                type(exc).__name__,
                str(exc)[:1000],
            )
            return None

    def open(
        self,
        user: str | None,
        password: str | None,
        *,
        fail_over: bool = True,
        write: bool = False,
        single_use: bool = False,
    ) -> tuple[int, Connection]:
        """A bound connection to the provider in use, or else (``fail_over``) the first
        that answers; with ``write``, to the write provider. Under ``strict`` a
        ``single_use`` write (a code consumed: the outcome of a compare-and-swap) never
        fails over; any other write goes to the provider in use while the write provider
        is unreachable, so failures are still counted and accounts still lock.

        Only the service identity's connections fail over: a user's bind that is slow or
        refused says nothing about the server, and moving the daemon for it would break
        the one-provider-at-a-time rule that single use relies on. A process that finds
        the daemon moved by another while it was looking goes where the other went.

        Returns it with the index of its server; raises ldap3 errors (unreachable ones
        as ``DirectoryUnavailable``).
        """
        self._follow()
        skip: set[int] = set()  # tried and failed in this call: not again at once
        if write and self._strict:
            conn, attempted = self._open_write(user, password)
            if conn is not None:
                return 0, conn
            if single_use:
                raise DirectoryUnavailable("the write provider did not answer")
            if attempted:
                skip.add(0)
        current = self.current
        for _ in range(2 * len(self._servers)):
            conn = self._try(current, user, password) if current not in skip else None
            if conn is not None:
                return current, conn
            skip.add(current)
            if not fail_over:
                break
            for index in (i for i in range(len(self._servers)) if i not in skip):
                conn = self._try(index, user, password)
                if conn is not None:
                    break
                skip.add(index)
            else:
                break
            agreed = self._choice.move(current, index, self._clock(), self._settings)
            if agreed == index:
                self._moved(current, index)
                return index, conn
            quietly_close(conn)  # another process moved the daemon first: follow it
            if agreed >= len(self._servers):
                break
            current = agreed
        raise DirectoryUnavailable("no LDAP server answered")

    def _open_write(self, user: str | None, password: str | None) -> tuple[Connection | None, bool]:
        """A connection to the write provider, or None; and whether it was tried.

        After the service identity failed to connect, writes fail at once for a while
        rather than each waiting out the timeout (a provider that drops packets would
        otherwise hold every pooled slot); then one writer of the daemon tries again
        while the others go on failing at once. A user's bind (a password change) neither
        claims that retry nor marks the provider down: it says nothing of the server."""
        if user != self._config.bind_dn:
            if self._clock() < self._choice.read().writes_down_until:
                return None, False
            return self._try(0, user, password), True
        # one attempt: connect, StartTLS and bind, each within the timeout
        hold = 3 * self._config.timeout + 1
        state, token = self._choice.claim_write_retry(self._clock(), hold)
        if state == "down":
            return None, False
        try:
            conn = self._try(0, user, password)
        except BaseException:
            if state == "retry":
                self._choice.writes_up(token)  # it answered, or we cannot tell: not down
            raise
        if conn is None:
            self._choice.writes_down(self._clock() + self._config.timeout)
        elif state == "retry":
            self._choice.writes_up(token)
        return conn, True

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

    def _moved(self, old: int, new: int) -> None:
        log.warning(
            "ldap: the daemon now uses %s instead of %s",
            self._config.uris[new],
            self._config.uris[old],
        )
        self._counted("failover")
        self._follow()

    def fail_back(self) -> None:
        """Past the wait on a later provider, probe the earlier ones, and move the daemon
        to the first that answers *and* has caught up.

        The wait: ``failback_after`` (``available``), or a second (``strict``: the first
        URI holds every single-use write anyway, and reads should see them soon). One
        process probes at a time (a lease in the shared record), in a thread of its own,
        so no login waits for a probe of a server that drops packets. A provider that
        does not answer waits another period; one that answers but lags is looked at
        again in a second.
        """
        if self._choice.index() == 0:
            return  # on the first provider, as nearly always: no lock taken
        if self._closed or self._choice.settings() != self._settings:
            return  # a process on other settings must not move the daemon
        wait = _RECHECK if self._strict else self._config.failback_after
        wait = min(wait, self._config.failback_after)
        # a probe: per earlier URI two connections (connect, StartTLS, bind) and three
        # searches, each within the timeout
        lease = 9 * self._config.timeout * (len(self._servers) - 1) + 1
        now = self._clock()
        current = self._choice.lease_probe(now, wait, lease, self._settings, len(self._servers))
        if current is None:
            return
        probe = threading.Thread(
            target=self._probe,
            args=(current, wait, now + lease),
            name="failback-probe",
            daemon=True,
        )
        with self._lock:
            self._probes = [p for p in self._probes if p.is_alive()]
            self._probes.append(probe)
        probe.start()

    def wait_for_probes(self, timeout: float | None = None) -> None:
        """Until the fail-back probes started so far have ended (for tests and close)."""
        with self._lock:
            probes = list(self._probes)
        for probe in probes:
            probe.join(timeout)

    def _probe(self, current: int, wait: float, token: float) -> None:
        wait_from = self._clock()
        try:
            for index in range(current):
                if self._closed:
                    return  # reloaded meanwhile: the new Directory decides
                self._counted("failback-probe")
                conn = self._try(index, self._config.bind_dn, self._password, probe=True)
                if conn is None:
                    continue
                try:
                    ready = self._ready(index, conn, current)
                    moved = (
                        ready
                        and not self._closed
                        and self._choice.move(current, index, self._clock(), self._settings)
                        == index
                    )
                    if moved:
                        self._moved(current, index)
                        self.pool(index, conn)
                        return
                except BaseException:
                    quietly_close(conn)
                    raise
                quietly_close(conn)
                if ready:
                    return  # another process moved the daemon meanwhile
                wait_from = min(wait_from, self._clock() - wait + _RECHECK)
        except Exception:  # a probe that fails waits a period, no more
            log.exception("fail-back probe failed")
        finally:
            if not self._closed or not self._owns_choice:
                self._choice.probed(wait_from, token)

    def _ready(self, index: int, conn: Connection, current: int) -> bool:
        """Whether provider ``index`` (``conn``) holds every change that ``current`` does."""
        ours = self._try(current, self._config.bind_dn, self._password)
        if ours is None:
            return False  # the one in use is failing: fail-over, not fail-back, decides
        try:
            suffix = suffix_of(ours, self._base)
            in_use = context_csns(ours, suffix)
            returning = context_csns(conn, suffix)
        except (ldap_errors.LDAPException, OSError) as exc:
            log.info("fail-back: cannot compare %s: %s", self._servers[index], exc)
            return False
        finally:
            quietly_close(ours)
        ready = caught_up(returning, in_use)
        if ready is None:
            log.warning(
                "fail-back: no contextCSN readable on %s at %s; the timer alone decides "
                "(twostep check reports it)",
                suffix,
                self._config.uris[current],
            )
            return True
        if not ready:
            log.info("fail-back: %s has not caught up yet", self._config.uris[index])
        return ready

    def pool(self, index: int, conn: Connection) -> None:
        with self._lock:
            if self._kept(index) and not self._closed:
                self._idle.append((index, conn))
                return
        quietly_close(conn)

    def _drop_idle(self, index: int) -> None:
        with self._lock:
            stale = [c for i, c in self._idle if i == index]
            self._idle = [(i, c) for i, c in self._idle if i != index]
        for conn in stale:
            quietly_close(conn)

    @contextmanager
    def service(
        self, *, write: bool = False, single_use: bool = False, fresh: bool = False
    ) -> Iterator[Connection]:
        """A pooled connection bound as the service, to the read provider or (``write``)
        the write provider (see ``open`` for ``single_use``); ``fresh`` skips the pool
        (a retry after a broken one)."""
        self.fail_back()
        current = self._follow()
        writer = self._write_index(current)
        target = writer if write else current
        if (
            write
            and not single_use
            and target != current
            and self._clock() < self._choice.read().writes_down_until
        ):
            target = current  # the write provider is down: this write may go elsewhere
        if not self._slots.acquire(timeout=self._config.timeout):
            raise DirectoryUnavailable("all LDAP connections are busy")
        index, conn = -1, None
        try:
            stale = []
            with self._lock:
                for position in range(len(self._idle) - 1, -1, -1):
                    if fresh:
                        break
                    if self._idle[position][0] != target:
                        continue
                    index, conn = self._idle.pop(position)
                    if not conn.closed:
                        break
                    stale.append(conn)
                    conn = None
            for old in stale:
                quietly_close(old)
            if conn is None:
                index, conn = self._open_service(write and target == writer, single_use)
            yield conn
        except BaseException as exc:
            # Whatever went wrong, this connection's state is unknown: do not pool it.
            # If the link broke, the idle ones to that server most likely broke with it.
            if conn is not None:
                quietly_close(conn)
                if isinstance(exc, BROKEN):
                    self._drop_idle(index)
            conn = None
            raise
        finally:
            if conn is not None:
                self.pool(index, conn)
            self._slots.release()

    def _open_service(self, write: bool, single_use: bool) -> tuple[int, Connection]:
        try:
            return self.open(
                self._config.bind_dn, self._password, write=write, single_use=single_use
            )
        except ldap_errors.LDAPInvalidCredentialsResult:
            raise DirectoryUnavailable("the service identity's password was refused") from None
        except ldap_errors.LDAPException as exc:
            raise DirectoryUnavailable(
                f"cannot bind as the service ({type(exc).__name__})"
            ) from None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            binders, self._binders = self._binders, []
        for _, conn in idle + binders:
            quietly_close(conn)
        if not self._owns_choice:
            self._choice.leave(self._holder)
        if self._owns_choice:
            self.wait_for_probes()
            self._choice.close()

    def keep_binder(self, index: int, conn: Connection) -> None:
        with self._lock:
            if index == self.current and len(self._binders) < self._config.pool_size:
                self._binders.append((index, conn))
                return
        quietly_close(conn)
