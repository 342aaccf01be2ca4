"""Telling an owner that one of their mail programs still uses an old credential.

Off unless ``stale_clients.notify.command`` is set. One message per new stale client
(``core.staleclients`` marks the record ``told`` when it is made, within the per-user
daily allowance, so a retrying client is never told twice), sent in the background by
one worker: a login never waits on the MTA. At most ``_MAX_PENDING`` wait; beyond that
a message is dropped and the drop audited. Each attempt is a ``stale-client-notice``
audit event, ``ok`` or ``error`` with why (exit status, timeout, cannot run); the
program's output is not logged (it might echo the message).

The program gets the message on stdin and the facts in its environment
(``TWOSTEP_USER``, ``TWOSTEP_ADDRESS``, ``TWOSTEP_SERVICE``, ``TWOSTEP_CREDENTIAL``,
``TWOSTEP_LABEL``), with a minimal ``PATH``; no shell is involved.
"""

from __future__ import annotations

import logging
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.policy import default as _default_policy
from email.utils import formatdate

from .audit import AuditEvent, AuditSink
from .config import Config, StaleNoticeConfig
from .core.stale_records import StaleClient
from .staletext import describe, fields_of

__all__ = ["StaleNotices", "notice_message", "stale_notices"]

log = logging.getLogger(__name__)

_MAX_PENDING = 100
_POLICY = _default_policy.clone(linesep="\n")
_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_NOT_IN_ADDRESS = frozenset('<>,;:"()[]\\ \t')
_MAX_USERS = 10_000
_PER_USER = 3
"""Messages of one user that may wait at once: one user's stale clients cannot take the
queue from everyone else's."""


def notice_message(
    config: StaleNoticeConfig, username: str, client: StaleClient, now: int
) -> bytes:
    """The RFC 5322 message; ``ValueError`` if an address will not make a header."""
    to = config.to.replace("{user}", username)
    if not to.isprintable() or any(c in to for c in _NOT_IN_ADDRESS) or len(to) > 254:
        raise ValueError("not one address")  # a user name can hold what a template may not
    message = EmailMessage(policy=_POLICY)
    message["From"] = config.sender
    message["To"] = to
    message["Subject"] = "A mail program still uses an old password or passcode"
    message["Date"] = formatdate(now)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        f"Hello {username},\n\n"
        f"{textwrap.fill(describe(fields_of(client)), 72)}\n\n"
        "Its attempts are refused. Update the password or passcode stored in that\n"
        "program, or remove the account from it. You can dismiss this notice under\n"
        "Account Security.\n",
        cte="8bit",  # readable as it is, by a hook too
    )
    return message.as_bytes()


class StaleNotices:
    def __init__(
        self,
        config: StaleNoticeConfig,
        audit: AuditSink,
        clock: Callable[[], float],
        *,
        run: Callable[..., subprocess.CompletedProcess[bytes]] = subprocess.run,
    ) -> None:
        self._config = config
        self._audit = audit
        self._clock = clock
        self._run = run
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stale-notice")
        self._pending = 0
        self._waiting: dict[str, int] = {}
        self._sent: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    @property
    def per_day(self) -> int:
        """New stale clients a user may be told of a day (0: telling is off)."""
        return self._config.per_day if self._config.command else 0

    def tell(self, username: str, client: StaleClient) -> None:
        if not self._config.command or not client.told:
            return
        now = self._clock()
        with self._lock:
            sent = [t for t in self._sent.get(username, ()) if t > now - 86400]
            over = len(sent) >= self._config.per_day
            mine = self._waiting.get(username, 0)
            full = self._pending >= _MAX_PENDING or mine >= _PER_USER
            if not over and not full:
                if len(self._sent) >= _MAX_USERS:
                    self._sent.clear()
                self._sent[username] = [*sent, now]
                self._pending += 1
                self._waiting[username] = mine + 1
        if over:  # the entry's count is the rule; this process's holds against races
            self._record(username, client, "error", "per-day")
            return
        if full:
            self._record(username, client, "error", "queue-full")
            return
        self._pool.submit(self._send, username, client)

    def _send(self, username: str, client: StaleClient) -> None:
        try:
            outcome, reason = self._deliver(username, client)
        except Exception:  # never lost silently, never a traceback on a login
            log.exception("stale-client notice for %r failed", username)
            outcome, reason = "error", "internal"
        finally:
            with self._lock:
                self._pending -= 1
                left = self._waiting.pop(username, 1) - 1
                if left:
                    self._waiting[username] = left
        self._record(username, client, outcome, reason)

    def _deliver(self, username: str, client: StaleClient) -> tuple[str, str | None]:
        now = int(self._clock())
        try:
            message = notice_message(self._config, username, client, now)
        except ValueError:
            return "error", "bad-address"
        env = {
            "PATH": _PATH,
            "LANG": "C.UTF-8",
            "TWOSTEP_USER": username,
            "TWOSTEP_ADDRESS": client.address,
            "TWOSTEP_SERVICE": client.service,
            "TWOSTEP_CREDENTIAL": client.kind,
            "TWOSTEP_LABEL": client.label,
        }
        try:
            done = self._run(
                list(self._config.command),
                input=message,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=self._config.timeout,
                close_fds=True,
                start_new_session=True,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return "error", "timeout"
        except OSError as exc:
            return "error", f"cannot-run-{exc.errno}"
        if done.returncode != 0:
            return "error", f"exit-{done.returncode}"
        return "ok", None

    def _record(self, username: str, client: StaleClient, outcome: str, reason: str | None) -> None:
        try:
            self._audit.emit(
                AuditEvent(
                    time=int(self._clock()),
                    action="stale-client-notice",
                    user=username,
                    outcome=outcome,
                    service=client.service,
                    remote=client.address,
                    reason=reason,
                    label=client.label or None,
                )
            )
        except Exception:
            log.exception("audit event lost")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def stale_notices(config: Config, audit: AuditSink) -> StaleNotices | None:
    """The configured notifier, or None when ``stale_clients.notify`` has no command."""
    if not config.stale_notice.command:
        return None
    return StaleNotices(config.stale_notice, audit, time.time)
