"""Webmail sessions: the credential a webmail reads mail with, from sign-in to sign-out.

``core.websessions`` says what the credential is and when it lives; this part reads
the account, writes the changes and records the events:

- ``start`` after an interactive sign-in the webmail's ``auth`` accepted (the handler
  calls it only then): a credential, when one is needed (two-step on, or a policy that
  keeps the plain password out of mail), else None and the webmail goes on with the
  password as before;
- ``check`` on each page the webmail serves: whether the credential is still live (a
  password change, a disable or "revoke all" ends it here first), and the note that
  keeps it alive;
- ``end`` at sign-out, with the credential itself (possession is the proof);
- ``revoke`` from Account Security or an admin, by the session's id.

Events: ``webmail-session-start``, ``webmail-session-end`` (sign-out) and
``webmail-session-revoke``; ``check`` records none (it changes nothing a person did).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..core.changes import Modify
from ..core.codes import Random
from ..core.errors import NotFound, RefusalReason
from ..core.lockout import lock_state
from ..core.websessions import end_session, find_session, issue_session, touch_session
from ._audited import Auditor
from ._inputs import check_username, context
from ._store import AccountStore, Loaded
from .revocations import Revoker

__all__ = ["WebmailSessions"]


class WebmailSessions:
    def __init__(
        self,
        store: AccountStore,
        auditor: Auditor,
        revoker: Revoker,
        *,
        clock: Callable[[], float],
        random: Random,
    ) -> None:
        self._store = store
        self._auditor = auditor
        self._revoker = revoker
        self._clock = clock
        self._random = random

    def needed(self, loaded: Loaded) -> bool:
        """Whether mail must not see this account's password: two-step is on, or the
        policy keeps the password out of mail."""
        return loaded.state.enabled or not loaded.policy.mail_password

    def start(self, username: str, *, bind: Sequence[str], idle: int, browser: str) -> str | None:
        """A new credential for ``username`` (already signed in), or None when the
        password may go on reaching mail. Raises ``ValueError`` for a bad ``bind`` or
        ``idle`` before anything is written."""
        loaded = self._store.require(username)
        if not self.needed(loaded):
            return None
        remote = context("webmail", browser, 0).remote

        def change(loaded: Loaded, now: int) -> tuple[str, Modify, Modify]:
            token, _, modify, cleanup = issue_session(
                loaded.state, now=now, idle=idle, bind=bind, browser=remote, random=self._random
            )
            return token, modify, cleanup

        return self._auditor.change_account(
            "webmail-session-start", username, None, change, service="webmail", remote=remote
        )

    def check(self, username: str, token: str, browser: str) -> bool:
        """Whether ``token`` is a live session of ``username``; a yes keeps it alive."""
        name = check_username(username)
        loaded = self._store.load(name) if name is not None else None
        if loaded is None:
            return False
        now = int(self._clock())
        session = find_session(loaded.state, token, now)
        if session is None or lock_state(loaded.state, loaded.policy, now).locked:
            return False
        remote = context("webmail", browser, now).remote
        self._store.bookkeeping(
            loaded.state, (touch_session(loaded.state, session, now, remote or session.browser),)
        )
        return True

    def end(self, username: str, token: str, *, browser: str = "") -> bool:
        """Sign-out: the session ``token`` ends. False when it had ended already."""
        name = check_username(username)
        loaded = self._store.load(name) if name is not None else None
        if loaded is None or find_session(loaded.state, token, int(self._clock())) is None:
            return False

        def change(loaded: Loaded, now: int) -> tuple[None, Modify, Modify]:
            session = find_session(loaded.state, token, now)
            if session is None:
                return None, Modify(()), Modify(())
            return None, end_session(loaded.state, session), Modify(())

        watched, seen = self._revoker.changing(change)
        self._auditor.change_account(
            "webmail-session-end", username, None, watched, service="webmail", remote=browser
        )
        self._revoker.settle(seen, username, None)
        return True

    def revoke(self, username: str, session_id: str, *, actor: str | None = None) -> None:
        """Account Security's "end this session", or an admin's."""

        def change(loaded: Loaded, now: int) -> tuple[None, Modify, Modify]:
            session = next((s for s in loaded.state.web_sessions if s.id == session_id), None)
            if session is None:
                raise NotFound(
                    RefusalReason.NO_SUCH_SESSION,
                    f"no webmail session with id {session_id[:16]!r}",
                )
            return None, end_session(loaded.state, session), Modify(())

        watched, seen = self._revoker.changing(change)
        self._auditor.change_account(
            "webmail-session-revoke", username, actor, watched, device=session_id[:16]
        )
        self._revoker.settle(seen, username, actor)
