"""After a change, the mail sessions that used what it took away are ended.

Each change that can take a mail credential away (a passcode revoked, the password
changed, two-step turned on or off, a reset) runs through ``Revoker.changing``, which
keeps the account as the change read it; ``settle`` reads it again once the change is
written and hands the difference (``core.revocation``) to the mail servers. A reading
that fails afterwards ends every session of the user: never too few.

Logins add what only they see: the lock-out a failure brings, and records on the entry
made under a password that is no longer the entry's (changed by ``ldappasswd`` or an
administrator), each ended in the background and once per password per process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from ..core.account import AccountState
from ..core.changes import Modify
from ..core.revocation import (
    NOTHING_ENDED,
    Ended,
    Kick,
    RevocationCause,
    kick_plan,
    password_changed,
    revocation,
)
from ._audited import AccountChange, Cleanup
from ._ports import SessionEnder
from ._store import AccountStore, Loaded

__all__ = ["Revoker"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_NOTICED_MAX = 10_000


class Revoker:
    def __init__(
        self,
        store: AccountStore,
        sessions: SessionEnder | None,
        clock: Callable[[], float],
        *,
        by_address: bool = False,
    ) -> None:
        self._by_address = by_address
        self._store = store
        self._sessions = sessions
        self._clock = clock
        self._noticed: dict[str, str] = {}
        """Entry DN -> the password stamp whose change was already acted on."""
        self._lock = threading.Lock()

    def changing(self, change: AccountChange[_T]) -> tuple[AccountChange[_T], list[Loaded]]:
        """``change``, keeping the account it read in the list returned with it."""
        seen: list[Loaded] = []

        def watched(loaded: Loaded, now: int) -> tuple[_T, Modify, Cleanup]:
            seen.append(loaded)
            return change(loaded, now)

        return watched, seen

    def settle(self, seen: list[Loaded], username: str, actor: str | None) -> Ended:
        """End what the change (now written) took away; the report for the reply."""
        if self._sessions is None or not seen:
            return NOTHING_ENDED
        before = seen[-1]
        now = int(self._clock())
        plan: Kick | None
        try:
            after = self._store.load(username)
        except Exception:  # the change is written: never an error for it now
            log.exception("re-reading %r after a change failed: ending all", username)
            after = None
        if after is None:
            plan = Kick(before.state.username, None)
        else:
            change = revocation(before.state, before.policy, after.state, after.policy, now)
            plan = kick_plan(change, by_address=self._by_address)
        if plan is None:
            return NOTHING_ENDED
        try:
            return self._sessions.end(plan, RevocationCause.CHANGE, actor)
        except Exception:
            log.exception("ending %r's mail sessions failed", plan.user)
            return Ended(True, 0, ("internal error",))

    def locked(self, state: AccountState) -> None:
        """A login just locked the account: nothing it had is good now."""
        if self._sessions is not None:
            self._sessions.end_later(Kick(state.username, None), RevocationCause.LOCKED)

    def notice(self, state: AccountState) -> None:
        """Records under an old password on the entry: its password changed elsewhere."""
        if self._sessions is None:
            return
        change = password_changed(state)
        if change is None:
            return
        with self._lock:
            if self._noticed.get(state.dn) == state.stamp:
                return
            if len(self._noticed) >= _NOTICED_MAX:
                self._noticed.clear()
            self._noticed[state.dn] = state.stamp
        plan = kick_plan(change)
        if plan is not None:
            self._sessions.end_later(plan, change.cause)
