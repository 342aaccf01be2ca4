"""The engine: read an account, decide, write the changes, audit. The only place they meet.

Everything that authenticates or manages (the daemon's request handlers, tests) goes
through an ``Engine``, so every path applies the same decision, the same directory
writes and the same audit event. Time and randomness are injected: production passes
``time.time`` and ``secrets.token_bytes``, tests pass their own.

Authentication fails closed here: any exception a login raises becomes a TEMPFAIL
decision (logged with its traceback for the operator, never shown to the client).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

from .audit import AuditEvent, AuditSink
from .config import Config
from .continuation import PasswordProof, login_state
from .core import enrollment, management, rotation
from .core.account import ACCOUNT_CLASS, POLICY_CLASS, AccountState, Attr, RawEntry, parse_account
from .core.candidate import Candidate
from .core.changes import Change, Modify
from .core.codes import Random
from .core.decision import (
    Attempt,
    Context,
    Decision,
    Flow,
    Method,
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
from .core.errors import (
    Conflict,
    CorruptEntry,
    DirectoryUnavailable,
    KeyUnavailable,
    NotFound,
    RefusalReason,
    Refused,
    TemporaryFailure,
)
from .core.import_plan import Outcome as ImportOutcome
from .core.import_plan import plan_import
from .core.keyring import Keyring
from .core.lockout import address_wait, lock_state, record_failure
from .core.policy import (
    POLICY_ATTRIBUTES,
    Policy,
    attribute_of,
    overrides_from_ldap,
    policy_to_ldap,
    resolve_policy,
)
from .directory import Directory, escape_filter
from .throttle import SourceThrottle
from .turns import Turns

__all__ = ["Engine", "PolicyEntry", "check_username"]

log = logging.getLogger(__name__)

_POLICY_TTL = 30
"""Seconds a class-of-service entry is cached: policy edits apply within this delay."""
_MAX_USERNAME = 256
_SERVICE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
# An IP address, or the host name sshd passes as PAM_RHOST with UseDNS: kept, so that such
# clients are not all one address "" for lock-out and the audit.
_ADDRESS = re.compile(r"[0-9A-Fa-f.:]{1,45}|[A-Za-z0-9][A-Za-z0-9.-]{0,62}")
_T = TypeVar("_T")
_POLICY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")


@dataclass(frozen=True)
class PolicyEntry:
    """A class-of-service entry: what it sets, and what is in force under it."""

    name: str
    dn: str
    settings: Mapping[str, bool | int]
    effective: Policy
    default: bool


def check_username(username: object) -> str | None:
    """The username if it is one we will look up: 1-256 printable characters, trimmed."""
    if (
        not isinstance(username, str)
        or not 0 < len(username) <= _MAX_USERNAME
        or not username.isprintable()
        or username != username.strip()
    ):
        return None
    return username


def _context(service: str, remote: str, now: int) -> Context:
    """Service and address as recorded: anything unexpected is replaced, not trusted."""
    service = service.lower() if isinstance(service, str) else ""
    return Context(
        service=service if _SERVICE.fullmatch(service) else "unknown",
        remote=remote.lower() if isinstance(remote, str) and _ADDRESS.fullmatch(remote) else "",
        now=now,
    )


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


@dataclass(frozen=True)
class _Loaded:
    state: AccountState
    policy: Policy
    policy_dn: str | None
    fields: Mapping[str, str]


class Engine:
    def __init__(
        self,
        config: Config,
        directory: Directory,
        keyring: Keyring,
        audit: AuditSink,
        *,
        clock: Callable[[], float] = time.time,
        random: Random = secrets.token_bytes,
    ) -> None:
        self.config = config
        self.directory = directory
        self._keys = keyring
        self._audit = audit
        self._clock = clock
        self._random = random
        # "*" (all user attributes) keeps the request small: naming forty attributes costs
        # more to encode (ldap3 + pyasn1) than the few extra attributes cost to return.
        self._attributes = ["*", Attr.UUID]
        self.login_count = 0
        """Logins decided since start (for the daemon's stats)."""
        self._policies: dict[str, tuple[float, dict[str, bool | int] | None]] = {}
        self._policy_lock = threading.Lock()
        self._turns = Turns()
        self._sources = SourceThrottle()
        """Recent failures per address across accounts (this process's memory only)."""

    # -- shared steps -----------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock())

    def _load(self, username: str) -> _Loaded | None:
        raw = self.directory.find_account(username, self._attributes)
        if raw is None:
            return None
        state = parse_account(raw, username, self.config.users.username_attribute)
        policy, policy_dn = self._policy_of(state)
        return _Loaded(state, policy, policy_dn, self._fields(raw))

    def _policy_of(self, state: AccountState) -> tuple[Policy, str | None]:
        """The policy in force for an account, and the entry it comes from."""
        policy_dn = state.policy_dn or self.config.policy.default
        cos = self._policy_entry(policy_dn) if policy_dn else {}
        if cos is None:
            raise CorruptEntry(
                Attr.POLICY, f"names a policy entry that does not exist: {policy_dn}"
            )
        return resolve_policy(self.config.policy.defaults, cos, state.overrides), policy_dn

    def _fields(self, raw: RawEntry) -> dict[str, str]:
        """The configured userdb fields present on the entry (first value of each)."""
        fields = {}
        for name, attribute in self.config.userdb_fields.items():
            values = raw.get(attribute)
            if values:
                try:
                    fields[name] = values[0].decode("utf-8")
                except UnicodeDecodeError:
                    raise CorruptEntry(attribute, "not UTF-8") from None
        return fields

    def _policy_entry(self, dn: str) -> dict[str, bool | int] | None:
        now = self._clock()
        with self._policy_lock:
            cached = self._policies.get(dn)
        if cached is not None and now - cached[0] < _POLICY_TTL:
            return cached[1]
        raw = self.directory.read(dn, POLICY_ATTRIBUTES)
        values = overrides_from_ldap(raw.attributes) if raw is not None else None
        with self._policy_lock:
            self._policies[dn] = (now, values)
        return values

    def forget_policies(self) -> None:
        """Drop cached policy entries (after ``policy set``, or on reload)."""
        with self._policy_lock:
            self._policies.clear()

    def _write(self, state: AccountState, modify: Modify) -> None:
        if not modify:
            return
        try:
            if not state.has_class:
                self.directory.add_values_if_missing(state.dn, Attr.OBJECT_CLASS, ACCOUNT_CLASS)
            self.directory.modify(state.dn, modify)
        finally:
            # even a failed write may have been applied: later reads must not trust theirs
            self._turns.wrote(state.dn)

    def _bookkeeping(self, state: AccountState, modifies: Collection[Modify]) -> None:
        for modify in modifies:
            try:
                self._write(state, modify)
            except (Conflict, TemporaryFailure) as exc:
                log.debug("bookkeeping write for %s skipped: %s", state.username, exc)

    def _emit_done(
        self, action: str, user: str, actor: str | None, label: str | None = None
    ) -> None:
        """The event of an administrative change that went through."""
        self._emit(
            AuditEvent(
                time=self._now(),
                action=action,
                user=user,
                outcome="ok",
                service="twostep",
                remote="",
                label=label,
                actor=actor,
            )
        )

    def _emit(self, event: AuditEvent) -> None:
        try:
            self._audit.emit(event)
        except Exception:
            log.exception("audit event lost")

    # -- logins -----------------------------------------------------------------------

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
        ctx = _context(service, remote, self._now())
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
        self._emit(
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
            )
        )
        return decision

    def _authenticate(
        self, username: str, attempt: Attempt, ctx: Context, proof: PasswordProof | None = None
    ) -> Decision:
        mark = self._turns.mark()
        loaded = self._load(username)
        if loaded is None:
            return unknown_user(username)
        with self._turns.turn(loaded.state.dn, self.config.ldap.timeout) as waited:
            if waited or self._turns.stale(loaded.state.dn, mark):
                loaded = self._load(username)
                if loaded is None:
                    return unknown_user(username)
            return self._decide(loaded, attempt, ctx, proof)

    def _decide(
        self, loaded: _Loaded, attempt: Attempt, ctx: Context, proof: PasswordProof | None
    ) -> Decision:
        state, policy = loaded.state, loaded.policy
        check = PasswordCheck.NOT_CHECKED
        bound = False
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
                right = proven or self.directory.check_password(state.dn, attempt.secret)
                bound = not proven
                check = PasswordCheck.RIGHT if right else PasswordCheck.WRONG
            decision = decide(
                state, policy, attempt, ctx, password=check, keys=self._keys, random=self._random
            )
        if decision.commit:
            try:
                self._write(state, decision.commit)
            except Conflict:
                if not decision.commit.guarded:
                    raise DirectoryUnavailable(
                        "unexpected conflict on an unguarded write"
                    ) from None
                decision = conflicted(state, policy, attempt, ctx, self._random)
                self._bookkeeping(state, (decision.commit,))
        if decision.counted and not _is_loopback(ctx.remote):
            self._sources.failed(ctx.remote, ctx.now)
        self._bookkeeping(state, decision.followups)
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
        if policy.throttle_source_failures == 0 or _is_loopback(ctx.remote):
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
        raw = self.directory.find_account(name, self._attributes)
        if raw is None:
            return None
        state = parse_account(raw, name, self.config.users.username_attribute)
        return state.username, self._fields(raw)

    # -- management -------------------------------------------------------------------

    def _require(self, username: str) -> _Loaded:
        name = check_username(username)
        loaded = self._load(name) if name is not None else None
        if loaded is None:
            raise NotFound(RefusalReason.UNKNOWN_USER, f"no such user: {str(username)[:64]!r}")
        return loaded

    def _manage(
        self,
        action: str,
        username: str,
        actor: str | None,
        change: Callable[[_Loaded, int], tuple[_T, Modify, Modify]],
        *,
        service: str = "twostep",
        remote: str = "",
        label: str | None = None,
        device: str | None = None,
    ) -> _T:
        """Run one management change with its audit event, whatever the outcome."""
        ctx = _context(service, remote, self._now())
        user = str(username)[:64]
        try:
            loaded = self._require(username)
            user = loaded.state.username
            result, modify, cleanup = change(loaded, ctx.now)
            try:
                self._write(loaded.state, modify)
            except Conflict:
                raise Refused(
                    RefusalReason.CONFLICT, "the account changed at the same time; try again"
                ) from None
            self._bookkeeping(loaded.state, (cleanup,))
        except Refused as exc:
            self._emit(
                AuditEvent(
                    time=ctx.now,
                    action=action,
                    user=user,
                    outcome="refused",
                    service=ctx.service,
                    remote=ctx.remote,
                    reason=exc.reason.value,
                    label=label,
                    device=device,
                    actor=actor,
                )
            )
            raise
        except TemporaryFailure:
            self._emit(
                AuditEvent(
                    time=ctx.now,
                    action=action,
                    user=user,
                    outcome="error",
                    service=ctx.service,
                    remote=ctx.remote,
                    label=label,
                    device=device,
                    actor=actor,
                )
            )
            raise
        self._emit(
            AuditEvent(
                time=ctx.now,
                action=action,
                user=user,
                outcome="ok",
                service=ctx.service,
                remote=ctx.remote,
                label=label,
                device=device,
                actor=actor,
            )
        )
        return result

    def _count_failure(self, loaded: _Loaded, kind: str, presented: str, ctx: Context) -> None:
        commit, prune, _ = record_failure(
            loaded.state,
            loaded.policy,
            now=ctx.now,
            kind=kind,
            service=ctx.service,
            address=ctx.remote,
            presented=presented,
            random=self._random,
        )
        self._write(loaded.state, commit)
        self._bookkeeping(loaded.state, (prune,))

    @staticmethod
    def _refuse_if_locked(loaded: _Loaded, now: int) -> None:
        if lock_state(loaded.state, loaded.policy, now).locked:
            raise Refused(RefusalReason.LOCKED, "the account is locked; ask an administrator")

    def _check_password(self, loaded: _Loaded, password: str, ctx: Context) -> None:
        """Refuse a locked account, an address that must wait (the sign-in throttle holds
        for every password check, or the 100-failure lock would be the only limit here)
        or a wrong password; a wrong one counts as a failure."""
        self._refuse_if_locked(loaded, ctx.now)
        if address_wait(loaded.state, loaded.policy, ctx.remote, ctx.now) is not None:
            raise Refused(RefusalReason.THROTTLED, "too many failures from here; try later")
        if not self.directory.check_password(loaded.state.dn, password):
            self._count_failure(loaded, "password", password, ctx)
            raise Refused(RefusalReason.WRONG_PASSWORD, "the password is not right")

    def status(self, username: str) -> management.AccountStatus:
        loaded = self._require(username)
        return management.status(loaded.state, loaded.policy, loaded.policy_dn, self._now())

    def session_generation(self, username: str) -> str | None:
        """What a portal session is bound to (issue 14 M4), read afresh: the password
        stamp (any password change, in the portal or not, ends every session), whether
        two-step is on and the sealed key (a disable, a reset or a new authenticator end
        them too, and a re-enrollment never revives an old one). None for no account.

        A digest, so a caller holding it learns nothing of the entry; derived from values
        the entry has already, so no attribute is added for it."""
        name = check_username(username)
        loaded = self._load(name) if name is not None else None
        if loaded is None:
            return None
        state = loaded.state
        parts = ("twostep-portal-session", state.stamp, str(state.enabled), state.secret or "")
        return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()

    def record_sign_out(self, username: str, *, actor: str | None = None) -> None:
        """The audit event of a portal sign-out, which ended every portal session of the
        account (twostepd keeps that in memory: the entry is not written)."""
        self._emit_done("sign-out", username, actor)

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

        def change(loaded: _Loaded, now: int) -> tuple[enrollment.EnrollmentStart, Modify, Modify]:
            proven = False
            if not loaded.state.enabled:
                self._check_password(loaded, password, _context(service, remote, now))
            elif code:
                self._verify_second_factor(username, password, code, service, remote)
                proven = True
            start, modify = enrollment.begin(
                loaded.state,
                loaded.policy,
                params=self.config.totp.params,
                issuer=self.config.totp.issuer,
                lifetime=self.config.totp.enrollment_lifetime,
                keys=self._keys,
                now=now,
                random=self._random,
                second_factor=proven,
            )
            return start, modify, Modify(())

        return self._manage("enroll-begin", username, actor, change, service=service, remote=remote)

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

        def change(loaded: _Loaded, now: int) -> tuple[list[str], Modify, Modify]:
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
                    self._count_failure(loaded, "code", code, _context(service, remote, now))
                raise

        return self._manage(
            "enroll-confirm", username, actor, change, service=service, remote=remote
        )

    def regenerate_backup_codes(self, username: str, *, actor: str | None = None) -> list[str]:
        def change(loaded: _Loaded, now: int) -> tuple[list[str], Modify, Modify]:
            return (
                *management.regenerate_backup_codes(loaded.state, loaded.policy, self._random),
                Modify(()),
            )

        return self._manage("codes-regenerate", username, actor, change)

    def add_passcode(
        self,
        username: str,
        label: str,
        *,
        services: Collection[str] = (),
        lifetime: int | None = None,
        actor: str | None = None,
    ) -> management.NewPasscode:
        def change(loaded: _Loaded, now: int) -> tuple[management.NewPasscode, Modify, Modify]:
            new, modify = management.add_passcode(
                loaded.state,
                loaded.policy,
                label=label,
                services=services,
                lifetime=lifetime,
                mail_services=self.config.mail_services,
                now=now,
                random=self._random,
            )
            return new, modify, Modify(())

        return self._manage("passcode-add", username, actor, change, label=label[:64])

    def revoke_passcode(self, username: str, label: str, *, actor: str | None = None) -> None:
        self._manage(
            "passcode-revoke",
            username,
            actor,
            lambda loaded, now: (None, *management.revoke_passcode(loaded.state, label)),
            label=label[:64],
        )

    def revoke_all_passcodes(self, username: str, *, actor: str | None = None) -> None:
        self._manage(
            "passcode-revoke-all",
            username,
            actor,
            lambda loaded, now: (None, *management.revoke_all_passcodes(loaded.state)),
        )

    def revoke_device(self, username: str, device_id: str, *, actor: str | None = None) -> None:
        self._manage(
            "device-revoke",
            username,
            actor,
            lambda loaded, now: (None, *management.revoke_device(loaded.state, device_id)),
            device=device_id[:16],
        )

    def revoke_other_devices(
        self, username: str, keep_id: str, *, actor: str | None = None
    ) -> None:
        self._manage(
            "device-revoke-others",
            username,
            actor,
            lambda loaded, now: (None, *management.revoke_other_devices(loaded.state, keep_id)),
            device=keep_id[:16],
        )

    def revoke_all_devices(self, username: str, *, actor: str | None = None) -> None:
        self._manage(
            "device-revoke-all",
            username,
            actor,
            lambda loaded, now: (None, *management.revoke_all_devices(loaded.state)),
        )

    def unlock(self, username: str, *, actor: str | None = None) -> None:
        self._manage(
            "unlock",
            username,
            actor,
            lambda loaded, now: (None, management.unlock_modify(), Modify(())),
        )

    # -- key rotation -----------------------------------------------------------------

    def _accounts(self) -> list[str]:
        base = self.config.users.base
        return self.directory.names_under(base, f"(objectClass={ACCOUNT_CLASS})")

    def _read_account(self, dn: str) -> AccountState | None:
        raw = self.directory.read(dn, self._attributes)
        if raw is None:
            return None
        attribute = self.config.users.username_attribute
        names = raw.get(attribute)
        return parse_account(raw, names[0].decode("utf-8", "replace") if names else dn, attribute)

    def key_usage(self) -> rotation.KeyUsage:
        """How many sealed values name each key, over every account (reads them all)."""
        values: Counter[str] = Counter()
        unreadable = []
        for dn in self._accounts():
            try:
                state = self._read_account(dn)
                if state is not None:
                    values.update(rotation.sealed_with(state, self._keys))
            except CorruptEntry:
                unreadable.append(dn)
        return rotation.KeyUsage(
            current=self._keys.current,
            loaded=tuple(sorted(self._keys.key_ids)),
            values=dict(values),
            unreadable=tuple(unreadable),
        )

    def reseal_keys(self, *, actor: str | None = None) -> rotation.ResealReport:
        """Re-seal every value not sealed with the current key; online, account by account."""
        resealed = current = 0
        failed: list[tuple[str, str]] = []
        for dn in self._accounts():
            outcome = self._reseal_account(dn, actor)
            if outcome == "resealed":
                resealed += 1
            elif outcome == "current":
                current += 1
            else:
                failed.append((dn, outcome))
        return rotation.ResealReport(resealed, current, tuple(failed))

    def _reseal_account(self, dn: str, actor: str | None) -> str:
        for _ in range(3):  # a concurrent enrollment or reset wins; then read again
            try:
                state = self._read_account(dn)
                if state is None:
                    return "current"  # deleted meanwhile: nothing left to re-seal
                modify = rotation.reseal(state, self._keys, self._random)
                if not modify:
                    return "current"
                self._write(state, modify)
            except Conflict:
                continue
            except (CorruptEntry, KeyUnavailable) as exc:
                log.warning("%s: not re-sealed: %s", dn, exc)
                return str(exc)
            self._emit_done("key-reseal", state.username, actor)
            return "resealed"
        return "changed three times while being re-sealed; run it again"

    # -- imports ----------------------------------------------------------------------

    def import_account(
        self,
        match_attribute: str,
        match_value: str,
        candidate: Candidate,
        *,
        apply: bool,
        replace: bool,
        actor: str | None = None,
    ) -> tuple[str, str | None, str]:
        """(outcome, the account's user name, why) for one authenticator brought over.

        The account is the one directory user whose ``match_attribute`` is
        ``match_value``. Without ``apply`` nothing is written and an import that would
        happen says ``would-import``. Everything for the account is one modify.
        """
        if not _ATTRIBUTE.fullmatch(match_attribute):
            raise Refused(RefusalReason.INVALID_INPUT, "not an attribute name")
        search = f"({match_attribute}={escape_filter(match_value)})"
        found = self.directory.search(self.config.users.base, search, self._attributes, 2)
        wanted = f"{match_attribute}={match_value[:64]}"
        if not found:
            return "skipped", None, f"no directory user has {wanted}"
        if len(found) > 1:
            return "skipped", None, f"more than one directory user has {wanted}"
        attribute = self.config.users.username_attribute
        names = found[0].get(attribute)
        username = names[0].decode("utf-8", "replace") if names else match_value
        unreadable = "its stored two-step values are unreadable ({}): reset it first"
        try:
            state = parse_account(found[0], username, attribute)
        except CorruptEntry as exc:
            return "skipped", username, unreadable.format(exc)
        try:
            policy, _ = self._policy_of(state)
            policy_dn = self.show_policy(candidate.policy).dn if candidate.policy else None
            outcome, modify, why = plan_import(
                state,
                policy,
                candidate,
                keys=self._keys,
                random=self._random,
                replace=replace,
                policy_dn=policy_dn,
            )
        except CorruptEntry as exc:
            return "skipped", state.username, unreadable.format(exc)
        except Refused as exc:  # a policy that does not exist, or cannot
            return "skipped", state.username, str(exc)
        if outcome is not ImportOutcome.IMPORTED:
            return outcome.value, state.username, why
        if not apply:
            return "would-import", state.username, ""
        self._write(state, modify)
        self._emit_done("import", state.username, actor, label=candidate.source[-64:])
        return outcome.value, state.username, ""

    def reset(self, username: str, *, actor: str | None = None) -> None:
        """Admin: wipe all two-step state, devices, passcodes and the lock."""
        self._manage(
            "reset",
            username,
            actor,
            lambda loaded, now: (None, management.reset_modify(), Modify(())),
        )

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
    ) -> None:
        """Turn two-step off: an admin may; a user must present password and a code."""

        def change(loaded: _Loaded, now: int) -> tuple[None, Modify, Modify]:
            if not loaded.state.enabled:
                raise Refused(
                    RefusalReason.NOT_ENABLED, "two-step verification is not on for this account"
                )
            if not admin:
                if loaded.policy.required:
                    raise Refused(
                        RefusalReason.REQUIRED_BY_POLICY,
                        "policy requires two-step verification for this account",
                    )
                self._verify_second_factor(username, password or "", code or "", service, remote)
            return None, management.disable_modify(), Modify(())

        self._manage("disable", username, actor, change, service=service, remote=remote)

    def _verify_second_factor(
        self, username: str, password: str, code: str, service: str, remote: str
    ) -> None:
        """Re-authentication with password and code, through the login decision itself."""
        decision = self.authenticate(
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
    ) -> None:
        """Change the password as the user (RFC 3062); every passcode and device dies, but
        ``keep_device``, the device the change was made from."""

        def change(loaded: _Loaded, now: int) -> tuple[None, Modify, Modify]:
            self._refuse_if_locked(loaded, now)
            if not new or len(new) > 1024 or not new.isprintable():
                raise Refused(
                    RefusalReason.INVALID_INPUT,
                    "a new password has 1 to 1024 printable characters",
                )
            if not self.directory.change_password(loaded.state.dn, old, new):
                self._count_failure(loaded, "password", old, _context(service, remote, now))
                raise Refused(RefusalReason.WRONG_PASSWORD, "the password is not right")
            fresh = self._require(username).state
            modify = Modify(
                (
                    Change.replace(Attr.PASSCODE),
                    *(
                        Change.delete(Attr.DEVICE, d.dump())
                        for d in fresh.devices
                        if d.id != keep_device
                    ),
                )
            )
            if keep_device:
                modify = modify.then(
                    *management.restamp_device(fresh, keep_device, fresh.stamp).changes
                )
            return None, modify, Modify((Change.replace(Attr.USAGE),))

        self._manage("password-change", username, actor, change, service=service, remote=remote)

    # -- policies (class-of-service entries) -------------------------------------------

    def _policy_dn(self, name: str) -> str:
        base = self.config.policy.base
        if base is None:
            raise Refused(
                RefusalReason.INVALID_INPUT, "policy.base is not set in the configuration"
            )
        if not isinstance(name, str) or not _POLICY_NAME.fullmatch(name):
            raise Refused(
                RefusalReason.INVALID_INPUT,
                "a policy name has 1 to 64 letters, digits, '.', '_' or '-'",
            )
        return f"cn={name},{base}"

    def _policy_record(self, raw: RawEntry) -> PolicyEntry:
        names = raw.get("cn")
        settings = overrides_from_ldap(raw.attributes)
        return PolicyEntry(
            name=names[0].decode("utf-8", "replace") if names else raw.dn,
            dn=raw.dn,
            settings=settings,
            effective=resolve_policy(self.config.policy.defaults, settings),
            default=raw.dn.lower() == (self.config.policy.default or "").lower(),
        )

    def list_policies(self) -> list[PolicyEntry]:
        base = self.config.policy.base
        if base is None:
            raise Refused(
                RefusalReason.INVALID_INPUT, "policy.base is not set in the configuration"
            )
        entries = self.directory.search(
            base, f"(objectClass={POLICY_CLASS})", ["cn", *POLICY_ATTRIBUTES]
        )
        return sorted((self._policy_record(e) for e in entries), key=lambda p: p.name)

    def show_policy(self, name: str) -> PolicyEntry:
        raw = self.directory.read(self._policy_dn(name), ["cn", "objectClass", *POLICY_ATTRIBUTES])
        classes = (
            {v.decode("utf-8", "replace").lower() for v in raw.get("objectClass")} if raw else set()
        )
        if raw is None or POLICY_CLASS.lower() not in classes:
            raise NotFound(RefusalReason.NO_SUCH_POLICY, f"no policy named {name!r}")
        return self._policy_record(raw)

    def create_policy(
        self, name: str, settings: Mapping[str, bool | int | None], *, actor: str | None = None
    ) -> PolicyEntry:
        dn = self._policy_dn(name)
        present = {k: v for k, v in settings.items() if v is not None}
        attributes = {attr: [value] for attr, value in policy_to_ldap(present).items()}
        attributes["cn"] = [name]
        try:
            self.directory.add_entry(dn, ["applicationProcess", POLICY_CLASS], attributes)
        except Conflict:
            raise Refused(RefusalReason.CONFLICT, f"a policy named {name!r} exists") from None
        self._emit(
            AuditEvent(
                time=self._now(),
                action="policy-create",
                user="",
                outcome="ok",
                label=name,
                actor=actor,
            )
        )
        return self.show_policy(name)

    def set_policy(
        self, name: str, settings: Mapping[str, bool | int | None], *, actor: str | None = None
    ) -> PolicyEntry:
        """Change settings of a policy entry; a None value removes the setting."""
        self.show_policy(name)
        changes = [Change.replace(attribute_of(key)) for key, v in settings.items() if v is None]
        present = {k: v for k, v in settings.items() if v is not None}
        changes += [Change.replace(attr, value) for attr, value in policy_to_ldap(present).items()]
        self.directory.modify(self._policy_dn(name), Modify(tuple(changes)))
        self.forget_policies()
        self._emit(
            AuditEvent(
                time=self._now(),
                action="policy-set",
                user="",
                outcome="ok",
                label=name,
                actor=actor,
            )
        )
        return self.show_policy(name)

    def assign_policy(self, username: str, name: str | None, *, actor: str | None = None) -> None:
        """Point an account at a policy by name (None: back to the configured default)."""
        policy_dn = self.show_policy(name).dn if name is not None else None

        def change(loaded: _Loaded, now: int) -> tuple[None, Modify, Modify]:
            values = (policy_dn,) if policy_dn else ()
            return None, Modify((Change.replace(Attr.POLICY, *values),)), Modify(())

        self._manage("policy-assign", username, actor, change, label=name)

    # -- TEMP shim: the split engine's parts, until engine/ lands (issue 20) ----------

    @property
    def logins(self) -> Engine:
        """TEMP shim for ``engine.logins`` (the split engine's ``Authenticator``)."""
        return self

    @property
    def accounts(self) -> Engine:
        """TEMP shim for ``engine.accounts`` (the split engine's ``AccountManager``)."""
        return self

    @property
    def policies(self) -> Engine:
        """TEMP shim for ``engine.policies`` (the split engine's ``PolicyAdmin``)."""
        return self

    @property
    def keys(self) -> Engine:
        """TEMP shim for ``engine.keys`` (the split engine's ``KeyRotation``)."""
        return self

    @property
    def imports(self) -> Engine:
        """TEMP shim for ``engine.imports`` (the split engine's ``Importer``)."""
        return self

    def stats(self) -> dict[str, object]:
        """TEMP shim for ``Engine.stats``: the counters the daemon's ``stats`` reports."""
        return {
            "directory": self.directory.counts(),
            "ldap_server": self.directory.server_in_use,
            "logins": self.login_count,
        }
