"""Logins: read the account, decide, write what the decision commits, audit.

Authentication fails closed here: any exception a login raises becomes a TEMPFAIL
decision (logged with its traceback for the operator, never shown to the client), and
only ``decide`` can produce an accept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace

from ..audit import AuditEvent
from ..config import Config
from ..continuation import PasswordProof, login_state
from ..core.account import AccountState, parse_account
from ..core.codes import Random
from ..core.decision import (
    Attempt,
    Context,
    Decision,
    Outcome,
    PasswordCheck,
    Reason,
    barred,
    conflicted,
    decide,
    temporary_failure,
    throttled,
    unknown_user,
    wants_password,
)
from ..core.errors import Conflict, CorruptEntry, DirectoryUnavailable, KeyUnavailable
from ..core.keyring import Keyring
from ..core.policy import Policy
from ..core.staleclients import Observed
from ..throttle import SourceThrottle
from ._audited import Auditor
from ._inputs import check_username, context, is_loopback
from ._ports import DirectoryPort
from ._store import AccountStore, Loaded
from .revocations import Revoker
from .staleclients import StaleClients

__all__ = ["Authenticator"]

log = logging.getLogger(__name__)


class Authenticator:
    """What a verify-only caller needs (a login, a userdb lookup), and nothing that
    changes an account otherwise."""

    def __init__(
        self,
        config: Config,
        directory: DirectoryPort,
        store: AccountStore,
        auditor: Auditor,
        keys: Keyring,
        revoker: Revoker,
        stale: StaleClients,
        *,
        clock: Callable[[], float],
        random: Random,
    ) -> None:
        self._config = config
        self._directory = directory
        self._store = store
        self._auditor = auditor
        self._keys = keys
        self._revoker = revoker
        self._stale = stale
        self._clock = clock
        self._random = random
        self.login_count = 0
        """Logins decided since start (for the daemon's stats)."""
        self._sources = SourceThrottle()
        """Recent failures per address across accounts (this process's memory only)."""

    def authenticate(
        self,
        username: str,
        attempt: Attempt,
        *,
        service: str,
        remote: str = "",
        proof: PasswordProof | None = None,
    ) -> Decision:
        """Decide one login and apply its changes. Never raises; never accepts by accident.

        ``proof`` (a continuation) may stand in for the password check; it is asked only
        where a password is wanted, with the account's current password stamp."""
        ctx = context(service, remote, int(self._clock()))
        name = check_username(username)
        self.login_count += 1
        try:
            if name is None:
                decision = Decision(Outcome.DENY, "", reason=Reason.MALFORMED)
            else:
                decision = self._authenticate(name, attempt, ctx, proof)
        except CorruptEntry as exc:
            log.warning("user %r: stored two-step value unusable: %s", name, exc)
            decision = temporary_failure(name or "", Reason.CORRUPT_ENTRY)
        except KeyUnavailable as exc:
            log.error("user %r: %s", name, exc)
            decision = temporary_failure(name or "", Reason.KEY_UNAVAILABLE)
        except DirectoryUnavailable as exc:
            log.warning("directory unavailable: %s", exc)
            decision = temporary_failure(name or "", Reason.DIRECTORY_UNAVAILABLE)
        except Exception:
            log.exception("login of %r failed unexpectedly", name)
            decision = temporary_failure(name or "", Reason.INTERNAL)
        self._auditor.emit(
            AuditEvent(
                time=ctx.now,
                action="login",
                user=decision.username or str(username)[:64],
                outcome=decision.outcome.value,
                service=ctx.service,
                remote=ctx.remote,
                method=decision.method.value if decision.method else None,
                reason=decision.reason.value if decision.reason else None,
                label=decision.label,
                device=decision.device,
                retry_at=decision.retry_at,
                repeat=True if decision.repeat else None,
            )
        )
        return decision

    def _authenticate(
        self, username: str, attempt: Attempt, ctx: Context, proof: PasswordProof | None = None
    ) -> Decision:
        turns = self._store.turns
        mark = turns.mark()
        loaded = self._store.load(username)
        if loaded is None:
            return unknown_user(username)
        with turns.turn(loaded.state.dn, self._config.ldap.timeout) as waited:
            if waited or turns.stale(loaded.state.dn, mark):
                loaded = self._store.load(username)
                if loaded is None:
                    return unknown_user(username)
            return self._decide(loaded, attempt, ctx, proof)

    def _decide(
        self, loaded: Loaded, attempt: Attempt, ctx: Context, proof: PasswordProof | None
    ) -> Decision:
        state, policy = loaded.state, loaded.policy
        self._revoker.notice(state)
        check = PasswordCheck.NOT_CHECKED
        bound = False
        observed: Observed | None = None
        # Locked, or this address throttled (on this account, or across accounts): refused
        # before any bind or secret check, and nothing written.
        decision = barred(state, policy, ctx) or self._source_throttled(state, policy, ctx)
        if decision is None:
            if wants_password(state, policy, attempt, ctx.now, ctx.remote):
                # A continuation (a password checked moments ago for this client) spares a
                # bind; only with a code, and only for the password as it is now.
                proven = (
                    bool(attempt.code)
                    and not attempt.device_token  # a device's use moves no state: no reuse
                    and proof is not None
                    and proof.proven(login_state(state))
                )
                right = proven or self._directory.check_password(state.dn, attempt.secret)
                bound = not proven
                check = PasswordCheck.RIGHT if right else PasswordCheck.WRONG
            decision = decide(
                state, policy, attempt, ctx, password=check, keys=self._keys, random=self._random
            )
            observed = self._stale.observe(
                decision, loaded, attempt, ctx, password=check, bound=bound
            )
            decision = observed.decision
        # Counted before the write: while the write provider is unreachable (strict single
        # use) the write fails, and the guess must still count against its address.
        counted = decision.counted and not is_loopback(ctx.remote)
        if counted:
            self._sources.failed(ctx.remote, ctx.now)
        if decision.commit:
            try:
                self._store.write(state, decision.commit)
            except Conflict:
                if not decision.commit.guarded:
                    raise DirectoryUnavailable(
                        "unexpected conflict on an unguarded write"
                    ) from None
                decision = conflicted(state, policy, attempt, ctx, self._random)
                self._store.bookkeeping(state, (decision.commit,))
        if decision.locks or (decision.reason is Reason.LOCKED and decision.followups):
            # this failure locked it, or a lock reached by failures elsewhere is written now
            self._revoker.locked(state)
        if decision.counted and not counted and not is_loopback(ctx.remote):
            self._sources.failed(ctx.remote, ctx.now)
        self._store.bookkeeping(state, decision.followups)
        if observed is not None:
            self._stale.seen(state, observed, ctx)
        if decision.outcome is Outcome.ACCEPT and loaded.fields:
            decision = replace(decision, fields=loaded.fields)
        if decision.outcome is Outcome.CHALLENGE and bound and proof is not None:
            proof.checked(login_state(state))  # never renewed from a continuation
        return decision

    def _source_throttled(
        self, state: AccountState, policy: Policy, ctx: Context
    ) -> Decision | None:
        """The refusal of an address that failed too often across accounts, if it did.

        Never for loopback (a webmail or proxy on this host speaks for many users) nor
        where the policy turns it off (0: a site whose users share one NAT address)."""
        if policy.throttle_source_failures == 0 or is_loopback(ctx.remote):
            return None
        until = self._sources.until(
            ctx.remote, policy.throttle_source_failures, policy.lockout_window, ctx.now
        )
        return None if until is None else throttled(state.username, Reason.SOURCE_THROTTLED, until)

    def lookup(self, username: str) -> tuple[str, Mapping[str, str]] | None:
        """A userdb lookup: the canonical name and userdb fields of a known user, else None.

        Raises ``TemporaryFailure`` when the directory cannot say.
        """
        name = check_username(username)
        if name is None:
            return None
        raw = self._directory.find_account(name, self._store.attributes)
        if raw is None:
            return None
        state = parse_account(raw, name, self._config.users.username_attribute)
        return state.username, self._store.fields(raw)
