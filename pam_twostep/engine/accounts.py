"""Managing one account: its status, enrollment, codes, passcodes, devices and lock, and
the changes that end two-step or the password.

Each change is computed by the pure core and applied through the auditor's runner, so
every one is read afresh, written as one modify and recorded as exactly one event,
whatever its outcome. Where a change asks for the user's password or code, the check
counts as a sign-in would: a wrong one is a failure towards the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Collection
from typing import TypeVar

from ..config import Config
from ..core import enrollment, management, staleclients
from ..core.account import Attr
from ..core.changes import Change, Modify
from ..core.codes import Random
from ..core.decision import Attempt, Context, Flow, Method, Outcome, Reason
from ..core.errors import Conflict, DirectoryUnavailable, RefusalReason, Refused
from ..core.keyring import Keyring
from ..core.lockout import address_wait, lock_state, record_failure
from ..core.revocation import Ended
from ..core.rollout import end_mail_password, required_now
from ._audited import AccountChange, Auditor, Cleanup
from ._inputs import check_username, context
from ._ports import DirectoryPort
from ._store import AccountStore, Loaded
from .logins import Authenticator
from .revocations import Revoker

__all__ = ["AccountManager"]

_T = TypeVar("_T")


class AccountManager:
    def __init__(
        self,
        config: Config,
        directory: DirectoryPort,
        store: AccountStore,
        auditor: Auditor,
        logins: Authenticator,
        keys: Keyring,
        revoker: Revoker,
        *,
        clock: Callable[[], float],
        random: Random,
    ) -> None:
        self._config = config
        self._directory = directory
        self._store = store
        self._auditor = auditor
        self._logins = logins
        self._keys = keys
        self._revoker = revoker
        self._clock = clock
        self._random = random

    # -- reads ------------------------------------------------------------------------

    def status(self, username: str) -> management.AccountStatus:
        loaded = self._store.require(username)
        return management.status(loaded.state, loaded.policy, loaded.policy_dn, int(self._clock()))

    def session_generation(self, username: str) -> str | None:
        """What a portal session is bound to (issue 14 M4), read afresh: the password
        stamp (any password change, in the portal or not, ends every session), whether
        two-step is on and the sealed key (a disable, a reset or a new authenticator end
        them too, and a re-enrollment never revives an old one). None for no account.

        A digest, so a caller holding it learns nothing of the entry; derived from values
        the entry has already, so no attribute is added for it."""
        name = check_username(username)
        loaded = self._store.load(name) if name is not None else None
        if loaded is None:
            return None
        state = loaded.state
        parts = ("twostep-portal-session", state.stamp, str(state.enabled), state.secret or "")
        return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()

    def record_sign_out(self, username: str, *, actor: str | None = None) -> None:
        """The audit event of a portal sign-out, which ended every portal session of the
        account (twostepd keeps that in memory: the entry is not written)."""
        self._auditor.run("sign-out", username, actor, lambda subject: None)

    # -- shared checks ----------------------------------------------------------------

    def _count_failure(self, loaded: Loaded, kind: str, presented: str, ctx: Context) -> None:
        commit, prune, locks = record_failure(
            loaded.state,
            loaded.policy,
            now=ctx.now,
            kind=kind,
            service=ctx.service,
            address=ctx.remote,
            presented=presented,
            random=self._random,
        )
        self._store.write(loaded.state, commit)
        self._store.bookkeeping(loaded.state, (prune,))
        if locks:
            self._revoker.locked(loaded.state)

    def _revoking(
        self,
        action: str,
        username: str,
        actor: str | None,
        change: AccountChange[_T],
        *,
        service: str = "twostep",
        remote: str = "",
        label: str | None = None,
    ) -> tuple[_T, Ended]:
        """A change that may take mail credentials away, and the ending of the mail
        sessions that used them (``engine.revocations``)."""
        watched, seen = self._revoker.changing(change)
        result = self._auditor.change_account(
            action, username, actor, watched, service=service, remote=remote, label=label
        )
        return result, self._revoker.settle(seen, username, actor)

    @staticmethod
    def _refuse_if_locked(loaded: Loaded, now: int) -> None:
        if lock_state(loaded.state, loaded.policy, now).locked:
            raise Refused(RefusalReason.LOCKED, "the account is locked; ask an administrator")

    def _check_password(self, loaded: Loaded, password: str, ctx: Context) -> None:
        """Refuse a locked account, an address that must wait (the sign-in throttle holds
        for every password check, or the 100-failure lock would be the only limit here)
        or a wrong password; a wrong one counts as a failure."""
        self._refuse_if_locked(loaded, ctx.now)
        if address_wait(loaded.state, loaded.policy, ctx.remote, ctx.now) is not None:
            raise Refused(RefusalReason.THROTTLED, "too many failures from here; try later")
        if not self._directory.check_password(loaded.state.dn, password):
            self._count_failure(loaded, "password", password, ctx)
            raise Refused(RefusalReason.WRONG_PASSWORD, "the password is not right")

    def _verify_second_factor(
        self, username: str, password: str, code: str, service: str, remote: str
    ) -> None:
        """Re-authentication with password and code, through the login decision itself."""
        decision = self._logins.authenticate(
            username, Attempt(Flow.INTERACTIVE, password, code=code), service=service, remote=remote
        )
        if decision.outcome is Outcome.TEMPFAIL:
            raise DirectoryUnavailable("re-authentication could not be decided")
        if decision.outcome is not Outcome.ACCEPT or decision.method not in (
            Method.TOTP,
            Method.BACKUP_CODE,
        ):
            reason = (
                RefusalReason.LOCKED
                if decision.reason is Reason.LOCKED
                else RefusalReason.WRONG_PASSWORD
                if decision.reason is Reason.WRONG_PASSWORD
                else RefusalReason.WRONG_CODE
            )
            raise Refused(reason, "the password and code were not accepted")

    # -- enrollment and backup codes --------------------------------------------------

    def enroll_begin(
        self,
        username: str,
        password: str,
        *,
        code: str | None = None,
        actor: str | None = None,
        service: str = "twostep",
        remote: str = "",
    ) -> enrollment.EnrollmentStart:
        """Check the password, then create a pending secret (the active one is untouched).

        While two-step is on, ``code`` (from the app, or a backup code) must come with the
        password and is checked as a sign-in would check it (counted, used up): whoever
        confirms the new secret holds the account's second factor, so the password alone
        must not be enough. There is no way to vouch for it otherwise (a trusted device,
        a portal session, an admin): an administrator resets or disables two-step first.
        """

        def change(loaded: Loaded, now: int) -> tuple[enrollment.EnrollmentStart, Modify, Modify]:
            proven = False
            if not loaded.state.enabled:
                self._check_password(loaded, password, context(service, remote, now))
            elif code:
                self._verify_second_factor(username, password, code, service, remote)
                proven = True
            start, modify = enrollment.begin(
                loaded.state,
                loaded.policy,
                params=self._config.totp.params,
                issuer=self._config.totp.issuer,
                lifetime=self._config.totp.enrollment_lifetime,
                keys=self._keys,
                now=now,
                random=self._random,
                second_factor=proven,
            )
            return start, modify, Modify(())

        def settle(loaded: Loaded, start: enrollment.EnrollmentStart) -> None:
            # With no pending secret read there was nothing to swap: if the owner turned
            # two-step on meanwhile, this secret landed after it. confirm would refuse
            # it (it does not replace); it goes, and the begin is refused as lost.
            if loaded.state.enabled or loaded.state.pending is not None:
                return
            fresh = self._store.require(username).state
            if fresh.enabled and fresh.pending is not None and not fresh.pending.replaces:
                undo = Modify((Change.delete(Attr.PENDING, fresh.pending.dump()),))
                self._store.bookkeeping(fresh, (undo,))
                raise Refused(
                    RefusalReason.CONFLICT, "the account changed at the same time; try again"
                )

        return self._auditor.change_account(
            "enroll-begin",
            username,
            actor,
            change,
            service=service,
            remote=remote,
            settle=settle,
        )

    def enroll_confirm(
        self,
        username: str,
        code: str,
        *,
        actor: str | None = None,
        service: str = "twostep",
        remote: str = "",
    ) -> list[str]:
        """Turn two-step on with the pending secret; returns the backup codes to show once."""

        def change(loaded: Loaded, now: int) -> tuple[list[str], Modify, Modify]:
            self._refuse_if_locked(loaded, now)
            try:
                return (
                    *enrollment.confirm(
                        loaded.state,
                        loaded.policy,
                        code,
                        keys=self._keys,
                        now=now,
                        random=self._random,
                    ),
                    Modify(()),
                )
            except Refused as exc:
                if exc.reason is RefusalReason.WRONG_CODE:
                    self._count_failure(loaded, "code", code, context(service, remote, now))
                raise

        # two-step on: the password no longer opens mail (its report is in the audit)
        codes, _ = self._revoking(
            "enroll-confirm", username, actor, change, service=service, remote=remote
        )
        return codes

    def regenerate_backup_codes(self, username: str, *, actor: str | None = None) -> list[str]:
        def change(loaded: Loaded, now: int) -> tuple[list[str], Modify, Modify]:
            return (
                *management.regenerate_backup_codes(loaded.state, loaded.policy, self._random),
                Modify(()),
            )

        return self._auditor.change_account("codes-regenerate", username, actor, change)

    # -- passcodes and devices --------------------------------------------------------

    def add_passcode(
        self,
        username: str,
        label: str,
        *,
        services: Collection[str] = (),
        lifetime: int | None = None,
        actor: str | None = None,
    ) -> management.NewPasscode:
        def change(loaded: Loaded, now: int) -> tuple[management.NewPasscode, Modify, Modify]:
            new, modify = management.add_passcode(
                loaded.state,
                loaded.policy,
                label=label,
                services=services,
                lifetime=lifetime,
                mail_services=self._config.mail_services,
                now=now,
                random=self._random,
            )
            return new, modify, Modify(())

        def settle(loaded: Loaded, new: management.NewPasscode) -> None:
            # The label was checked against the read only: of two adds at once, the one
            # that sees the other after its own write takes its passcode back. One told
            # ok is never taken back; both may be refused, neither both kept.
            fresh = self._store.require(username).state
            mine = new.record
            if any(
                p.id != mine.id and p.label.casefold() == mine.label.casefold()
                for p in fresh.live_passcodes(int(self._clock()))
            ):
                # A real write: if the undo fails the passcode would stay, live, behind
                # a refusal; a failure here is the change's error, not a refusal.
                with contextlib.suppress(Conflict):  # revoked meanwhile: gone already
                    self._store.write(fresh, Modify((Change.delete(Attr.PASSCODE, mine.dump()),)))
                raise Refused(
                    RefusalReason.LABEL_TAKEN, f"a passcode labelled {mine.label!r} already exists"
                )

        return self._auditor.change_account(
            "passcode-add", username, actor, change, label=label[:64], settle=settle
        )

    def revoke_passcode(self, username: str, label: str, *, actor: str | None = None) -> Ended:
        return self._revoking(
            "passcode-revoke",
            username,
            actor,
            lambda loaded, now: (None, *management.revoke_passcode(loaded.state, label, now)),
            label=label[:64],
        )[1]

    def revoke_all_passcodes(self, username: str, *, actor: str | None = None) -> Ended:
        return self._revoking(
            "passcode-revoke-all",
            username,
            actor,
            lambda loaded, now: (None, *management.revoke_all_passcodes(loaded.state, now)),
        )[1]

    def revoke_device(self, username: str, device_id: str, *, actor: str | None = None) -> None:
        self._auditor.change_account(
            "device-revoke",
            username,
            actor,
            lambda loaded, now: (None, *management.revoke_device(loaded.state, device_id)),
            device=device_id[:16],
        )

    def revoke_other_devices(
        self, username: str, keep_id: str, *, actor: str | None = None
    ) -> None:
        self._auditor.change_account(
            "device-revoke-others",
            username,
            actor,
            lambda loaded, now: (None, *management.revoke_other_devices(loaded.state, keep_id)),
            device=keep_id[:16],
        )

    def revoke_all_devices(self, username: str, *, actor: str | None = None) -> None:
        self._auditor.change_account(
            "device-revoke-all",
            username,
            actor,
            lambda loaded, now: (None, *management.revoke_all_devices(loaded.state)),
        )

    def end_mail_password(self, username: str, *, actor: str | None = None) -> Ended:
        """Passcodes only at mail for this account from now, whatever the policy's grace
        (``core.rollout``); the mail sessions the password opened end."""
        return self._revoking(
            "mail-password-end",
            username,
            actor,
            lambda loaded, now: (
                None,
                end_mail_password(loaded.state, loaded.policy, now),
                Modify(()),
            ),
        )[1]

    # -- the lock, reset, disable, the password ---------------------------------------

    def unlock(self, username: str, *, actor: str | None = None) -> None:
        self._auditor.change_account(
            "unlock",
            username,
            actor,
            lambda loaded, now: (None, management.unlock_modify(), Modify(())),
        )

    def reset(self, username: str, *, actor: str | None = None) -> Ended:
        """Admin: wipe all two-step state, devices, passcodes and the lock."""
        return self._revoking(
            "reset",
            username,
            actor,
            lambda loaded, now: (None, management.reset_modify(loaded.state), Modify(())),
        )[1]

    def disable(
        self,
        username: str,
        *,
        password: str | None = None,
        code: str | None = None,
        admin: bool = False,
        actor: str | None = None,
        service: str = "twostep",
        remote: str = "",
    ) -> Ended:
        """Turn two-step off: an admin may; a user must present password and a code."""

        def change(loaded: Loaded, now: int) -> tuple[None, Modify, Modify]:
            if not loaded.state.enabled:
                raise Refused(
                    RefusalReason.NOT_ENABLED, "two-step verification is not on for this account"
                )
            if not admin:
                if required_now(loaded.policy, now):
                    raise Refused(
                        RefusalReason.REQUIRED_BY_POLICY,
                        "policy requires two-step verification for this account",
                    )
                self._verify_second_factor(username, password or "", code or "", service, remote)
            passcodes = loaded.state.passcodes
            retired = staleclients.retire_passcodes(loaded.state, passcodes, now, "disabled")
            return None, management.disable_modify(loaded.state), retired

        return self._revoking("disable", username, actor, change, service=service, remote=remote)[1]

    def change_password(
        self,
        username: str,
        old: str,
        new: str,
        *,
        keep_device: str | None = None,
        actor: str | None = None,
        service: str = "twostep",
        remote: str = "",
    ) -> Ended:
        """Change the password as the user (RFC 3062); every passcode and device dies, but
        ``keep_device``, the device the change was made from."""

        def change(loaded: Loaded, now: int) -> tuple[None, Modify, Cleanup]:
            self._refuse_if_locked(loaded, now)
            if not new or len(new) > 1024 or not new.isprintable():
                raise Refused(
                    RefusalReason.INVALID_INPUT,
                    "a new password has 1 to 1024 printable characters",
                )
            if not self._directory.change_password(loaded.state.dn, old, new):
                self._count_failure(loaded, "password", old, context(service, remote, now))
                raise Refused(RefusalReason.WRONG_PASSWORD, "the password is not right")
            # The password has changed: what follows must not be able to lose a race
            # (a refusal now would tell the user to retry a change already made), so
            # passcodes and devices are replaced, not swapped. A device trusted in the
            # meantime goes too, the safe direction.
            fresh = self._store.require(username).state
            kept = (
                management.renewed_device(fresh, keep_device, fresh.stamp) if keep_device else None
            )
            modify = Modify(
                (
                    Change.replace(Attr.PASSCODE),
                    Change.replace(Attr.DEVICE, *(() if kept is None else (kept.dump(),))),
                )
            )
            live = [p for p in loaded.state.passcodes if p.stamp == loaded.state.stamp]
            remembered = staleclients.password_replaced(
                loaded.state, old, fresh.stamp, new, self._keys, now, passcodes=live
            )
            followup = (Modify((Change.replace(Attr.USAGE),)), remembered)
            return None, modify, followup

        return self._revoking(
            "password-change", username, actor, change, service=service, remote=remote
        )[1]
