"""Ending open mail sessions on every configured Dovecot host, and saying how it went.

The engine decides what to end (``core.revocation.Kick``); this runs it against each
host of ``mail_sessions`` at once, each within its timeout, and records one audit event
(``sessions-end``: ``ok``, or ``error`` naming the hosts that failed). The change that
caused it has happened whatever this reports: a host that cannot be reached is told
to the caller (the CLI, the portal) and to the audit, never dropped.

A change made by someone waits for the answer (it is in the reply, in well under the
timeout); one noticed during a login (a lock-out, a password changed elsewhere) is
ended in the background, so no login waits on a mail server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from .audit import AuditEvent, AuditSink
from .config import Config, Secrets
from .core.revocation import Ended, Kick, RevocationCause
from .doveadm import Doveadm, DoveadmError

__all__ = ["MailSessions", "mail_sessions"]

log = logging.getLogger(__name__)

_MAX_PENDING = 1000
"""Background ends queued at most; beyond, they are dropped and logged (a lock storm)."""


class MailSessions:
    def __init__(
        self, hosts: Sequence[Doveadm], audit: AuditSink, clock: Callable[[], float]
    ) -> None:
        self._hosts = tuple(hosts)
        self._audit = audit
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=max(2, len(self._hosts) * 2))
        self._background = ThreadPoolExecutor(max_workers=1)
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def end(self, kick: Kick, cause: RevocationCause, actor: str | None = None) -> Ended:
        """End the sessions on every host; the report once all answered or timed out."""
        results = list(self._pool.map(lambda host: _guarded(host, kick), self._hosts))
        ended = sum(count for count, _ in results)
        failures = tuple(problem for _, problem in results if problem is not None)
        self._record(kick, cause, actor, failures)
        return Ended(True, ended, failures)

    def end_later(self, kick: Kick, cause: RevocationCause) -> None:
        """``end`` in the background; one pending per user (a repeat adds nothing)."""
        with self._lock:
            if kick.user in self._pending:
                return
            if len(self._pending) >= _MAX_PENDING:
                log.warning("too many session ends pending; %r's dropped", kick.user)
                return
            self._pending.add(kick.user)

        def run() -> None:
            try:
                self.end(kick, cause)
            except Exception:
                log.exception("ending %r's mail sessions failed", kick.user)
            finally:
                with self._lock:
                    self._pending.discard(kick.user)

        self._background.submit(run)

    def close(self) -> None:
        self._background.shutdown(wait=True)
        self._pool.shutdown(wait=True)

    def _record(
        self, kick: Kick, cause: RevocationCause, actor: str | None, failures: tuple[str, ...]
    ) -> None:
        where = "everywhere" if kick.addresses is None else ",".join(kick.addresses)
        event = AuditEvent(
            time=int(self._clock()),
            action="sessions-end",
            user=kick.user,
            outcome="error" if failures else "ok",
            remote=where[:200],
            reason=(f"unreachable: {'; '.join(failures)}"[:300] if failures else cause.value),
            actor=actor,
        )
        try:
            self._audit.emit(event)
        except Exception:
            log.exception("audit event lost")


def mail_sessions(
    config: Config, secrets: Secrets, audit: AuditSink, clock: Callable[[], float] = time.time
) -> MailSessions | None:
    """The configured hosts, or None when ``mail_sessions`` lists none."""
    settings = config.mail_sessions
    if not settings.hosts or secrets.doveadm_key is None:
        return None
    hosts = [
        Doveadm(h.name, h.url, secrets.doveadm_key, settings.timeout, h.auth_master)
        for h in settings.hosts
    ]
    return MailSessions(hosts, audit, clock)


def _guarded(host: Doveadm, kick: Kick) -> tuple[int, str | None]:
    try:
        return _end_on(host, kick)
    except Exception:
        log.exception("ending %r's mail sessions on %s failed", kick.user, host.name)
        return 0, f"{host.name}: internal error"


def _end_on(host: Doveadm, kick: Kick) -> tuple[int, str | None]:
    """Sessions ended on one host, and what failed there if anything. The cache is
    flushed first (a client kicked before would log straight back in with a cached
    passcode); a failed flush still leaves the kick to try."""
    problems: list[str] = []
    ended = 0
    try:
        host.flush_auth_cache(kick.user)
    except DoveadmError as exc:
        problems.append(str(exc))
    for address in (None,) if kick.addresses is None else kick.addresses:
        try:
            ended += host.kick(kick.user, address)
        except DoveadmError as exc:
            problems.append(str(exc))
    if problems:
        log.warning("ending %r's mail sessions: %s", kick.user, "; ".join(problems))
        return ended, "; ".join(problems)
    return ended, None
