"""One way to make a change: run it, and record exactly one audit event for it.

Every change the engine makes (to an account, a policy, a key's seal) goes through
``Auditor.run``, so none can go unrecorded or be recorded twice, and a refusal or a
failure is recorded as faithfully as a success: ``ok``; ``refused`` with the reason;
``error`` for anything else that escaped, which is re-raised unchanged. The actor, who
asked, is on every one. Logins are decisions, not changes: their events are built by
the authenticator and only sent through here.

Recording never changes an outcome: a sink that fails is logged and the result stands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..audit import AuditEvent, AuditSink
from ..core.changes import Modify
from ..core.errors import Conflict, RefusalReason, Refused
from ._inputs import context
from ._store import AccountStore, Loaded

__all__ = ["AccountChange", "Auditor", "Cleanup", "Settle", "Subject"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

Cleanup = Modify | tuple[Modify, ...]
"""Bookkeeping after a change: one modify, or several tried apart (so that one refused
does not take the others with it)."""
AccountChange = Callable[[Loaded, int], tuple[_T, Modify, Cleanup]]
"""What an account change computes from the account and the time: its result, the
modify that is the change, and bookkeeping to try afterwards."""
Settle = Callable[[Loaded, _T], None]
"""After the write: what the change read and returned; raises ``Refused`` to undo."""


@dataclass
class Subject:
    """What the event will name, filled in as the change learns it (an account's own
    name once it is read); ``changed`` False when it turned out there was nothing to do
    (a value already current, a key already imported), which records no event."""

    user: str
    now: int
    changed: bool = True


class Auditor:
    def __init__(self, store: AccountStore, sink: AuditSink, clock: Callable[[], float]) -> None:
        self._store = store
        self._sink = sink
        self._clock = clock

    def emit(self, event: AuditEvent) -> None:
        try:
            self._sink.emit(event)
        except Exception:
            log.exception("audit event lost")

    def run(
        self,
        action: str,
        user: str,
        actor: str | None,
        change: Callable[[Subject], _T],
        *,
        service: str = "twostep",
        remote: str = "",
        label: str | None = None,
        device: str | None = None,
    ) -> _T:
        """``change(subject)``, and its one event. ``service`` and ``remote`` are
        recorded as given: the caller has cleaned them."""
        subject = Subject(user, int(self._clock()))

        def record(outcome: str, reason: str | None = None) -> None:
            self.emit(
                AuditEvent(
                    time=subject.now,
                    action=action,
                    user=subject.user,
                    outcome=outcome,
                    service=service,
                    remote=remote,
                    reason=reason,
                    label=label,
                    device=device,
                    actor=actor,
                )
            )

        try:
            result = change(subject)
        except Refused as exc:
            record("refused", exc.reason.value)
            raise
        except BaseException:
            record("error")
            raise
        if subject.changed:
            record("ok")
        return result

    def change_account(
        self,
        action: str,
        username: str,
        actor: str | None,
        change: AccountChange[_T],
        *,
        service: str = "twostep",
        remote: str = "",
        label: str | None = None,
        device: str | None = None,
        settle: Settle[_T] | None = None,
    ) -> _T:
        """Run one change of one account (read, compute, write) with its event.

        ``settle`` runs after the write, inside the same event: for a change whose
        write cannot carry its own guard (an add where nothing was read to swap), it
        reads again and undoes and refuses what lost a race."""
        cleaned = context(service, remote, 0)
        return self.run(
            action,
            str(username)[:64],
            actor,
            lambda subject: self.apply(subject, username, change, settle),
            service=cleaned.service,
            remote=cleaned.remote,
            label=label,
            device=device,
        )

    def apply(
        self,
        subject: Subject,
        username: str,
        change: AccountChange[_T],
        settle: Settle[_T] | None = None,
    ) -> _T:
        """The steps of an account change, inside a ``run``: read the account, compute,
        write; a write that lost a race is refused (the caller may try again)."""
        loaded = self._store.require(username)
        subject.user = loaded.state.username
        result, modify, cleanup = change(loaded, subject.now)
        try:
            self._store.write(loaded.state, modify)
        except Conflict:
            raise Refused(
                RefusalReason.CONFLICT, "the account changed at the same time; try again"
            ) from None
        if settle is not None:
            settle(loaded, result)
        self._store.bookkeeping(loaded.state, cleanup if isinstance(cleanup, tuple) else (cleanup,))
        return result
