"""Stale clients (``core.staleclients``) as logins meet them, and as owners dismiss them.

A login's decision goes through ``observe`` before anything is written; after the
login's own writes, ``seen`` writes the stale-client records (in the background in
twostepd), audits a newly recorded stale client (``stale-client``, outcome ``recorded``,
with the credential's label, never the secret) and hands it to the notifier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..audit import AuditEvent
from ..core import staleclients
from ..core.account import AccountState
from ..core.changes import Modify
from ..core.codes import Random
from ..core.decision import Attempt, Context, Decision, PasswordCheck
from ..core.errors import Conflict, DirectoryRefused, TemporaryFailure
from ..core.keyring import Keyring
from ..core.staleclients import Observed
from ._audited import Auditor
from ._ports import StaleNotifier
from ._store import AccountStore, Loaded

__all__ = ["Later", "StaleClients"]

log = logging.getLogger(__name__)

_NOTHING = Modify(())
_PAUSE = 600

Later = Callable[[Callable[[], None]], None]


class StaleClients:
    def __init__(
        self,
        store: AccountStore,
        auditor: Auditor,
        keys: Keyring,
        notices: StaleNotifier | None,
        *,
        clock: Callable[[], float],
        random: Random,
        later: Later | None = None,
    ) -> None:
        """``later``: runs the writes off the request path (twostepd's ``Background``);
        None: at once (tests, tools)."""
        self._clock = clock
        self._later = later
        self._paused_until = 0.0
        self._store = store
        self._auditor = auditor
        self._keys = keys
        self._notices = notices
        self._random = random

    def observe(
        self,
        decision: Decision,
        loaded: Loaded,
        attempt: Attempt,
        ctx: Context,
        *,
        password: PasswordCheck,
        bound: bool,
    ) -> Observed:
        return staleclients.observe(
            decision,
            loaded.state,
            attempt,
            ctx,
            password=password,
            bound=bound,
            keys=self._keys,
        )

    def seen(self, state: AccountState, observed: Observed, ctx: Context) -> None:
        """Write what ``observe`` found, off the request path when there is a
        background runner: whether a secret matched must not show in a reply's timing
        (with two-step on, mail never checks the password, and must not start to)."""
        if observed.match is None and not observed.remembered:
            return
        if self._later is None:
            self._write(state, observed, ctx)
        else:
            self._later(lambda: self._write(state, observed, ctx))

    def _write(self, login: AccountState, observed: Observed, ctx: Context) -> None:
        """Read the entry again and write from what it holds now (other logins may have
        recorded, a password may have changed, since). No turn is taken: a login must
        not wait on this, or its timing would tell what matched; one worker per process
        keeps these jobs in order, and their writes delete exactly what they read.

        The owner is audited and told of a new stale client only once it landed, under
        the name the login used. A directory that refuses the attributes (a schema or
        ACL that predates them) is left alone for ``_PAUSE`` seconds rather than asked
        at every login."""
        if self._clock() < self._paused_until:
            return
        try:
            fresh = self._store.read_account(login.dn)
            if fresh is None or fresh.uuid != login.uuid:
                return  # gone, or another entry at that name since
            self._store.write(fresh, staleclients.remember(fresh, observed.remembered, ctx.now))
            if observed.match is None:
                return
            modify, client = staleclients.recorded(
                fresh, observed.match, ctx, self._random, self._per_day()
            )
            self._store.write(fresh, modify)
        except Conflict:
            return  # a concurrent change: the next login tries again
        except DirectoryRefused as exc:
            self._paused_until = self._clock() + _PAUSE
            log.warning(
                "stale-client records not written (%s); not trying for %d s: are the "
                "schema upgraded and the ACL updated (ldap_schema/README.md)?",
                exc,
                _PAUSE,
            )
            return
        except TemporaryFailure as exc:
            log.info("stale-client records for %s not written: %s", login.username, exc)
            return
        if client is None:
            return
        self._auditor.emit(
            AuditEvent(
                time=ctx.now,
                action="stale-client",
                user=login.username,
                outcome="recorded",
                service=ctx.service,
                remote=ctx.remote,
                reason=client.kind,
                label=client.label or None,
            )
        )
        if self._notices is not None and client.told:
            self._notices.tell(login.username, client)

    def _per_day(self) -> int:
        return self._notices.per_day if self._notices is not None else 0

    def dismiss(self, username: str, stale_id: str, *, actor: str | None = None) -> None:
        self._auditor.change_account(
            "stale-client-dismiss",
            username,
            actor,
            lambda loaded, now: (None, staleclients.dismiss(loaded.state, stale_id), _NOTHING),
            device=stale_id[:16],
        )
