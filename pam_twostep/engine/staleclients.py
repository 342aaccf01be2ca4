"""Stale clients (``core.staleclients``) as logins meet them, and as owners dismiss them.

A login's decision goes through ``observe`` before anything is written; once written,
``seen`` audits a newly recorded stale client (``stale-client``, outcome ``recorded``,
with the credential's label, never the secret) and hands it to the notifier.
"""

from __future__ import annotations

import logging

from ..audit import AuditEvent
from ..core import staleclients
from ..core.account import AccountState
from ..core.changes import Modify
from ..core.codes import Random
from ..core.decision import Attempt, Context, Decision, PasswordCheck
from ..core.errors import Conflict, TemporaryFailure
from ..core.keyring import Keyring
from ..core.staleclients import Observed
from ._audited import Auditor
from ._ports import StaleNotifier
from ._store import AccountStore, Loaded

__all__ = ["StaleClients"]

log = logging.getLogger(__name__)

_NOTHING = Modify(())


class StaleClients:
    def __init__(
        self,
        store: AccountStore,
        auditor: Auditor,
        keys: Keyring,
        notices: StaleNotifier | None,
        *,
        random: Random,
    ) -> None:
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
            random=self._random,
            notify_per_day=self._notices.per_day if self._notices is not None else 0,
        )

    def seen(self, state: AccountState, observed: Observed, ctx: Context) -> None:
        """Record a new stale client; audit it and tell its owner if that landed."""
        client = observed.new
        if client is None:
            return
        try:
            self._store.write(state, observed.record)
        except (Conflict, TemporaryFailure) as exc:
            log.debug("stale client of %s not recorded: %s", state.username, exc)
            return
        username = state.username
        self._auditor.emit(
            AuditEvent(
                time=ctx.now,
                action="stale-client",
                user=username,
                outcome="recorded",
                service=ctx.service,
                remote=ctx.remote,
                reason=client.kind,
                label=client.label or None,
            )
        )
        if self._notices is not None and client.told:
            self._notices.tell(username, client)

    def dismiss(self, username: str, stale_id: str, *, actor: str | None = None) -> None:
        self._auditor.change_account(
            "stale-client-dismiss",
            username,
            actor,
            lambda loaded, now: (None, staleclients.dismiss(loaded.state, stale_id), _NOTHING),
            device=stale_id[:16],
        )
