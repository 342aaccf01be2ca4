"""The login decision: entry state + what was presented + context -> outcome + changes.

Pure: no I/O, no clock, no global randomness. The one thing it cannot know by itself,
whether the account password is right, is established by the caller with an LDAP bind
*only when* ``wants_password`` says so, and handed in as a ``PasswordCheck``.

Mail services (IMAP, POP3, SMTP, ...) send one secret and cannot answer a prompt. With
two-step on, that secret must be an application passcode; the password is refused, and
so is password+code glued together: a client stores and replays what it was given, so a
code inside it would be replayed (and refused) on its next connection, and accepting it
would turn every mail client into a password oracle for the account. With two-step off,
the password is checked, where policy allows.

Interactive services (sshd, login, the portal) send the password and then, when two-step
is on and the device is not trusted, a verification code or a backup code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from .account import AccountState, Attr
from .changes import Change, Modify
from .codes import (
    CodeKind,
    Random,
    classify,
    new_device_token,
    new_id,
    normalize,
    split_device_token,
)
from .errors import CorruptEntry
from .hashing import digest_matches, fast_digest, verify_backup_codes
from .keyring import Keyring
from .lockout import address_wait, clear_changes, lock_state, missing_lock, record_failure
from .policy import Policy
from .records import Device, Passcode, check_label, normalize_address
from .rollout import ever_a_passcode, mail_password_accepted, reminder, required_now
from .totp import StepMatch, match_step, time_step
from .usage import USAGE_INTERVAL, usage_note
from .websessions import SERVICES as WEB_SESSION_SERVICES
from .websessions import find_session, is_session_token, session_is_live

__all__ = [
    "MAX_DEVICES",
    "USAGE_INTERVAL",
    "Attempt",
    "Context",
    "Decision",
    "Flow",
    "Method",
    "Outcome",
    "PasswordCheck",
    "Reason",
    "barred",
    "conflicted",
    "decide",
    "temporary_failure",
    "throttled",
    "unknown_user",
    "wants_password",
]

MAX_DEVICES = 20
"""Trusted devices kept per account; the oldest beyond this are dropped."""


class Flow(Enum):
    MAIL = "mail"
    INTERACTIVE = "interactive"


class Outcome(Enum):
    ACCEPT = "accept"
    DENY = "deny"
    CHALLENGE = "challenge"
    """Password right, now a code is needed."""
    TEMPFAIL = "tempfail"


class Method(Enum):
    PASSWORD = "password"
    PASSCODE = "passcode"
    TOTP = "totp"
    BACKUP_CODE = "backup-code"
    TRUSTED_DEVICE = "trusted-device"
    WEB_SESSION = "webmail-session"


class Reason(Enum):
    UNKNOWN_USER = "unknown-user"
    MALFORMED = "malformed"
    LOCKED = "locked"
    """The account is locked: every address, every service, nothing checked."""
    THROTTLED = "throttled"
    """This address failed too often on this account and must wait; nothing checked."""
    SOURCE_THROTTLED = "source-throttled"
    """This address failed too often across accounts; nothing checked."""
    WRONG_PASSWORD = "wrong-password"
    WRONG_PASSCODE = "wrong-passcode"
    WRONG_CODE = "wrong-code"
    REPLAYED = "replayed"
    PASSWORD_NOT_ACCEPTED = "password-not-accepted"
    PASSCODES_DISABLED = "passcodes-disabled"
    PASSCODE_EXPIRED = "passcode-expired"
    PASSCODE_SCOPE = "passcode-scope"
    SESSION_ENDED = "session-ended"
    """A webmail session credential that is not (or no longer) live; not counted."""
    SESSION_SCOPE = "session-scope"
    """A live webmail session credential used for another service or from elsewhere."""
    ENROLLMENT_REQUIRED = "enrollment-required"
    CODE_REQUIRED = "code-required"
    DIRECTORY_UNAVAILABLE = "directory-unavailable"
    CORRUPT_ENTRY = "corrupt-entry"
    KEY_UNAVAILABLE = "key-unavailable"
    AMBIGUOUS_USER = "ambiguous-user"
    INTERNAL = "internal"


class PasswordCheck(Enum):
    NOT_CHECKED = "not-checked"
    RIGHT = "right"
    WRONG = "wrong"


@dataclass(frozen=True)
class Attempt:
    """What the client presented. ``repr`` hides the secrets."""

    flow: Flow
    secret: str
    """The password (interactive), or the one secret a mail client sent."""
    code: str | None = None
    device_token: str | None = None
    trust_device: bool = False
    device_label: str = ""

    def __repr__(self) -> str:
        return (
            f"Attempt(flow={self.flow.value}, code={'yes' if self.code else 'no'}, "
            f"device_token={'yes' if self.device_token else 'no'}, "
            f"trust_device={self.trust_device})"
        )


@dataclass(frozen=True)
class Context:
    service: str
    remote: str
    now: int


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    username: str
    method: Method | None = None
    reason: Reason | None = None
    label: str | None = None
    """The passcode's label, for the audit event."""
    device: str | None = None
    """The trusted device used or created."""
    device_token: str | None = None
    """A new device token, to hand to the client once and never to log."""
    commit: Modify = Modify(())
    """Must be applied for the outcome to stand."""
    followups: tuple[Modify, ...] = ()
    """Bookkeeping; may be lost."""
    locks: bool = False
    counted: bool = False
    """The commit records a new failure (what the per-address throttle counts)."""
    repeat: bool = False
    """A wrong secret already counted in the lock-out window (a client retrying it)."""
    retry_at: int | None = None
    """Locked or throttled: when the refusal ends (None while locked until an unlock)."""
    fields: Mapping[str, str] = field(default_factory=dict)
    """Userdb fields for the mail server (home, uid, ...), filled in by the engine."""
    required_from: int | None = None
    """An interactive sign-in without two-step that its policy will refuse from this
    date (``core.rollout.reminder``): the client reminds the user."""

    def __repr__(self) -> str:
        return (
            f"Decision({self.outcome.value}, user={self.username!r}, "
            f"method={self.method and self.method.value}, "
            f"reason={self.reason and self.reason.value})"
        )


def unknown_user(username: str) -> Decision:
    return Decision(Outcome.DENY, username, reason=Reason.UNKNOWN_USER)


def temporary_failure(username: str, reason: Reason) -> Decision:
    return Decision(Outcome.TEMPFAIL, username, reason=reason)


def throttled(username: str, reason: Reason, until: int | None) -> Decision:
    """A refusal made before anything was checked: nothing to write, nothing learnt.

    Clients see an ordinary failed login (a mail client: authentication failed), so a
    guesser cannot tell a throttled guess from a wrong one, nor a right one from either.
    """
    return Decision(Outcome.DENY, username, reason=reason, retry_at=until)


def barred(state: AccountState, policy: Policy, ctx: Context) -> Decision | None:
    """The refusal of a locked account, or of an address throttled on it; else None.

    The lock first (it holds for everyone), then the per-address wait. Both come from
    the entry alone, so every process and host agrees.
    """
    lock = lock_state(state, policy, ctx.now)
    if lock.locked:
        written = missing_lock(state, policy, ctx.now)
        return Decision(
            Outcome.DENY,
            state.username,
            reason=Reason.LOCKED,
            followups=(written,) if written else (),
            retry_at=lock.until,
        )
    until = address_wait(state, policy, ctx.remote, ctx.now)
    if until is not None:
        return throttled(state.username, Reason.THROTTLED, until)
    return None


def wants_password(
    state: AccountState, policy: Policy, attempt: Attempt, now: int, remote: str = ""
) -> bool:
    """Whether the caller must check the account password (an LDAP bind) first.

    Never for an account that is locked or an address that is throttled on it: those are
    refused unchecked. ``remote`` is the address as in ``Context``."""
    if barred(state, policy, Context("", remote, now)) is not None:
        return False
    if attempt.flow is Flow.MAIL:
        # a webmail session credential is never a password to try on the directory
        if is_session_token(attempt.secret):
            return False
        if not mail_password_accepted(state, policy, now):
            return False
        # in a grace period a passcode, even a dead one, is decided as one: no bind
        return not state.enabled or not ever_a_passcode(state, normalize(attempt.secret))
    return True


def _passcode_of(state: AccountState, presented: str) -> Passcode | None:
    """The passcode ``presented`` is, made under the current password; else None."""
    if classify(presented, 0) is not CodeKind.PASSCODE:
        return None
    digest = fast_digest("passcode", presented)
    found = None
    for passcode in state.passcodes:  # every one, no early exit: right and wrong cost the same
        if digest_matches(passcode.digest, digest):
            found = passcode
    return found if found is not None and found.stamp == state.stamp else None


def _deny(
    state: AccountState,
    policy: Policy,
    ctx: Context,
    reason: Reason,
    kind: str,
    presented: str,
    random: Random,
    label: str | None = None,
) -> Decision:
    commit, prune, locks = record_failure(
        state,
        policy,
        now=ctx.now,
        kind=kind,
        service=ctx.service,
        address=ctx.remote,
        presented=presented,
        random=random,
        step=_code_step(state, presented, ctx.now) if kind == "code" else None,
    )
    return Decision(
        Outcome.DENY,
        state.username,
        reason=reason,
        label=label,
        commit=commit,
        followups=(prune,) if prune else (),
        locks=locks,
        counted=bool(commit),
        repeat=not commit,
    )


def _code_step(state: AccountState, code: str, now: int) -> int | None:
    """The time step a wrong verification code was a guess at; None for any other code.

    Each new step brings one code not tried before into the window (``totp_window``
    either side), so the same code is one new guess per step and counts once per step
    (``core.lockout``). A backup code is static: the same wrong one never comes right,
    so its repeats stay repeats."""
    if state.params is None or classify(code, state.params.digits) is not CodeKind.TOTP:
        return None
    return time_step(now, state.params.period)


def _dead_records(state: AccountState, ctx: Context) -> Modify:
    """Passcodes and devices killed by a password change or expiry, to be swept away."""
    dead_passcodes = [p for p in state.passcodes if not state.passcode_is_live(p, ctx.now)]
    dead_devices = [d for d in state.devices if not state.device_is_live(d, ctx.now)]
    dead_sessions = [s for s in state.web_sessions if not session_is_live(state, s, ctx.now)]
    changes = []
    kept = (
        {p.id for p in state.passcodes if p not in dead_passcodes}
        | {d.id for d in state.devices if d not in dead_devices}
        | {s.id for s in state.web_sessions if s not in dead_sessions}
    )
    # notes of records gone, and all but the newest of a record's (two first uses at once)
    orphans = [n for n in state.usage if n.id not in kept or n is not state.usage_of(n.id)]
    if orphans:
        changes.append(Change.delete(Attr.USAGE, *(n.dump() for n in orphans)))
    if dead_passcodes:
        changes.append(Change.delete(Attr.PASSCODE, *(p.dump() for p in dead_passcodes)))
    if dead_devices:
        changes.append(Change.delete(Attr.DEVICE, *(d.dump() for d in dead_devices)))
    if dead_sessions:
        changes.append(Change.delete(Attr.WEB_SESSION, *(s.dump() for s in dead_sessions)))
    return Modify(tuple(changes))


def _accept(
    state: AccountState,
    ctx: Context,
    method: Method,
    *,
    commit: Modify = Modify(()),
    used: str | None = None,
    label: str | None = None,
    device: str | None = None,
    device_token: str | None = None,
    extra: Modify = Modify(()),
    clears: bool = True,
    clears_only: frozenset[str] | None = None,
) -> Decision:
    """``used`` is the passcode or device whose 'last used' note may need a refresh;
    ``clears`` False keeps the failures from this address (a bearer credential replayed
    by a server says nothing of where its user is); ``clears_only`` clears just the
    failures of those kinds."""
    followups = [
        clear_changes(state, ctx.remote, clears_only) if clears else Modify(()),
        _dead_records(state, ctx),
        extra,
    ]
    if used is not None:
        followups.append(usage_note(state, used, ctx.now, ctx.remote))
    return Decision(
        Outcome.ACCEPT,
        state.username,
        method=method,
        label=label,
        device=device,
        device_token=device_token,
        commit=commit,
        followups=tuple(f for f in followups if f),
    )


def _decide_mail(
    state: AccountState,
    policy: Policy,
    attempt: Attempt,
    ctx: Context,
    password: PasswordCheck,
    random: Random,
) -> Decision:
    if is_session_token(attempt.secret):
        return _decide_web_session(state, attempt, ctx)
    if not state.enabled:
        if not policy.mail_password:
            return _deny(
                state, policy, ctx, Reason.PASSWORD_NOT_ACCEPTED, "password", attempt.secret, random
            )
        return _decide_mail_password(state, policy, attempt, ctx, password, random)

    presented = normalize(attempt.secret)
    if mail_password_accepted(state, policy, ctx.now) and not ever_a_passcode(state, presented):
        # the grace (core.rollout): the password alone clears password failures only
        return _decide_mail_password(
            state, policy, attempt, ctx, password, random, clears_only=frozenset({"password"})
        )
    if not policy.passcodes:
        return _deny(state, policy, ctx, Reason.PASSCODES_DISABLED, "passcode", presented, random)
    found = _passcode_of(state, presented)
    if found is None:
        return _deny(state, policy, ctx, Reason.WRONG_PASSCODE, "passcode", presented, random)
    if found.expires and found.expires <= ctx.now:
        return _deny(
            state,
            policy,
            ctx,
            Reason.PASSCODE_EXPIRED,
            "passcode",
            presented,
            random,
            label=found.label,
        )
    if not found.allows(ctx.service):
        return _deny(
            state,
            policy,
            ctx,
            Reason.PASSCODE_SCOPE,
            "passcode",
            presented,
            random,
            label=found.label,
        )
    return _accept(state, ctx, Method.PASSCODE, used=found.id, label=found.label)


def _decide_mail_password(
    state: AccountState,
    policy: Policy,
    attempt: Attempt,
    ctx: Context,
    password: PasswordCheck,
    random: Random,
    *,
    clears_only: frozenset[str] | None = None,
) -> Decision:
    """Where mail takes the password (``core.rollout.mail_password_accepted``)."""
    if password is PasswordCheck.RIGHT:
        return _accept(state, ctx, Method.PASSWORD, clears_only=clears_only)
    if password is PasswordCheck.WRONG:
        return _deny(state, policy, ctx, Reason.WRONG_PASSWORD, "password", attempt.secret, random)
    raise ValueError("the password was not checked")


def _decide_web_session(state: AccountState, attempt: Attempt, ctx: Context) -> Decision:
    """A mail login with a webmail session credential (``core.websessions``): refused
    uncounted when it matches nothing live, accepted only for the mail services and
    from the addresses the webmail was bound to."""
    session = find_session(state, attempt.secret, ctx.now)
    if session is None:
        return Decision(Outcome.DENY, state.username, reason=Reason.SESSION_ENDED)
    if ctx.service not in WEB_SESSION_SERVICES or normalize_address(ctx.remote) not in session.bind:
        return Decision(Outcome.DENY, state.username, reason=Reason.SESSION_SCOPE)
    # the note names the browser, not the webmail host every such login comes from
    note = usage_note(state, session.id, ctx.now, session.browser)
    return _accept(state, ctx, Method.WEB_SESSION, extra=note, clears=False)


def _trusted_device(
    state: AccountState, policy: Policy, token: str | None, now: int
) -> Device | None:
    if not token or not policy.trusted_devices:
        return None
    parts = split_device_token(token)
    if parts is None:
        return None
    device = next((d for d in state.live_devices(now) if d.id == parts[0]), None)
    if device is None or not digest_matches(device.digest, fast_digest("device", parts[1])):
        return None
    return device


def _new_device(
    state: AccountState, policy: Policy, attempt: Attempt, ctx: Context, random: Random
) -> tuple[Device, str, Modify]:
    device_id = new_id(random)
    token = new_device_token(random, device_id)
    try:
        label = check_label(attempt.device_label.strip()[:64]) if attempt.device_label else ""
    except ValueError:
        label = ""
    device = Device(
        id=device_id,
        label=label or f"{ctx.service} device",
        created=ctx.now,
        digest=fast_digest("device", token),
        expires=ctx.now + policy.device_lifetime,
        stamp=state.stamp,
    )
    live = sorted(state.live_devices(ctx.now), key=lambda d: d.created)
    excess = live[: max(0, len(live) + 1 - MAX_DEVICES)]
    drop = Modify((Change.delete(Attr.DEVICE, *(d.dump() for d in excess)),) if excess else ())
    return device, token, drop


def _decide_interactive(
    state: AccountState,
    policy: Policy,
    attempt: Attempt,
    ctx: Context,
    password: PasswordCheck,
    keys: Keyring,
    random: Random,
) -> Decision:
    if password is PasswordCheck.WRONG:
        if not attempt.secret:  # a continuation that ran out, never a guess: not counted
            return Decision(Outcome.DENY, state.username, reason=Reason.WRONG_PASSWORD)
        return _deny(state, policy, ctx, Reason.WRONG_PASSWORD, "password", attempt.secret, random)
    if password is not PasswordCheck.RIGHT:
        raise ValueError("the password was not checked")
    if not state.enabled:
        if required_now(policy, ctx.now):
            return Decision(Outcome.DENY, state.username, reason=Reason.ENROLLMENT_REQUIRED)
        accepted = _accept(state, ctx, Method.PASSWORD)
        return replace(accepted, required_from=reminder(state, policy, ctx.now))

    device = _trusted_device(state, policy, attempt.device_token, ctx.now)
    if device is not None:
        return _accept(state, ctx, Method.TRUSTED_DEVICE, used=device.id, device=device.id)
    if not attempt.code:
        return Decision(Outcome.CHALLENGE, state.username, reason=Reason.CODE_REQUIRED)

    if state.secret is None or state.params is None:  # parse_account refuses such entries
        raise CorruptEntry(Attr.SECRET, "two-step is on but there is no secret")
    code = normalize(attempt.code)
    kind = classify(code, state.params.digits)
    if kind is CodeKind.TOTP:
        try:
            key = keys.open(state.secret, context=state.uuid.encode())
        except ValueError as exc:
            raise CorruptEntry(Attr.SECRET, str(exc)) from None
        match, step = match_step(
            key,
            code,
            now=ctx.now,
            params=state.params,
            window=policy.totp_window,
            watermark=state.last_step,
        )
        if match is StepMatch.REPLAYED:
            return _deny(state, policy, ctx, Reason.REPLAYED, "code", code, random)
        if match is StepMatch.NO_MATCH or step is None:
            return _deny(state, policy, ctx, Reason.WRONG_CODE, "code", code, random)
        # Compare-and-swap: delete the watermark we read, add the new one, in ONE modify.
        old = (
            ()
            if state.last_step is None
            else (Change.delete(Attr.LAST_STEP, str(state.last_step)),)
        )
        commit = Modify((*old, Change.add(Attr.LAST_STEP, str(step))), guarded=True)
        method = Method.TOTP
    elif kind is CodeKind.BACKUP_CODE:
        index = verify_backup_codes(state.backup_codes, code)
        if index is None:
            return _deny(state, policy, ctx, Reason.WRONG_CODE, "code", code, random)
        commit = Modify((Change.delete(Attr.BACKUP_CODE, state.backup_codes[index]),), guarded=True)
        method = Method.BACKUP_CODE
    else:
        return _deny(state, policy, ctx, Reason.WRONG_CODE, "code", code, random)

    if attempt.trust_device and policy.trusted_devices:
        device, token, drop = _new_device(state, policy, attempt, ctx, random)
        return _accept(
            state,
            ctx,
            method,
            commit=commit.then(Change.add(Attr.DEVICE, device.dump())),
            device=device.id,
            device_token=token,
            extra=drop,
        )
    return _accept(state, ctx, method, commit=commit)


def decide(
    state: AccountState,
    policy: Policy,
    attempt: Attempt,
    ctx: Context,
    *,
    password: PasswordCheck,
    keys: Keyring,
    random: Random,
) -> Decision:
    """The outcome of one login attempt and the directory changes that go with it."""
    refusal = barred(state, policy, ctx)
    if refusal is not None:
        return refusal
    if attempt.flow is Flow.MAIL:
        return _decide_mail(state, policy, attempt, ctx, password, random)
    return _decide_interactive(state, policy, attempt, ctx, password, keys, random)


def conflicted(
    state: AccountState, policy: Policy, attempt: Attempt, ctx: Context, random: Random
) -> Decision:
    """A guarded commit lost its race: the code was used by a concurrent login."""
    presented = normalize(attempt.code or "")
    return _deny(state, policy, ctx, Reason.REPLAYED, "code", presented, random)
