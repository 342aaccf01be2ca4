"""Changes people ask for: passcodes, devices, backup codes, turning off, reset, status.

Pure like the login decision: each function takes the account state (and policy, time,
randomness) and returns what to show plus the ``Modify`` to apply, or raises ``Refused``
with a sentence for the user. Who may ask for what is decided by the caller.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from .account import AccountState, Attr
from .changes import Change, Modify
from .codes import Random, group, new_id, new_passcode
from .enrollment import issue_backup_codes
from .errors import NotFound, RefusalReason, Refused
from .hashing import fast_digest
from .lockout import lock_state, unlock_modify
from .policy import Policy
from .records import Device, Passcode, check_label, check_service_name
from .rollout import mail_password_accepted, reminder
from .stale_records import StaleClient
from .staleclients import retire_passcodes, shown
from .websessions import end_all, live_sessions

__all__ = [
    "AccountStatus",
    "DeviceInfo",
    "NewPasscode",
    "PasscodeInfo",
    "WebSessionInfo",
    "add_passcode",
    "disable_modify",
    "regenerate_backup_codes",
    "reset_modify",
    "renewed_device",
    "revoke_all_devices",
    "revoke_all_passcodes",
    "revoke_device",
    "revoke_other_devices",
    "revoke_passcode",
    "status",
    "unlock_modify",
]


@dataclass(frozen=True)
class NewPasscode:
    passcode: str = field(repr=False)
    """Grouped in fours, capitals: shown exactly once."""
    record: Passcode


def _usage_cleanup(state: AccountState, ids: Collection[str]) -> Modify:
    notes = [u.dump() for u in state.usage if u.id in ids]
    return Modify((Change.delete(Attr.USAGE, *notes),) if notes else ())


def _require_enabled(state: AccountState) -> None:
    if not state.enabled:
        raise Refused(RefusalReason.NOT_ENABLED, "two-step verification is not on for this account")


def add_passcode(
    state: AccountState,
    policy: Policy,
    *,
    label: str,
    services: Collection[str],
    lifetime: int | None,
    mail_services: Collection[str],
    now: int,
    random: Random,
) -> tuple[NewPasscode, Modify]:
    """A new application passcode; ``lifetime`` None means as long as policy allows."""
    _require_enabled(state)
    if not policy.passcodes:
        raise Refused(
            RefusalReason.PASSCODES_DISABLED,
            "application passcodes are not allowed for this account",
        )
    try:
        label = check_label(label)
        scope = tuple(sorted({check_service_name(s) for s in services}))
    except ValueError as exc:
        raise Refused(RefusalReason.INVALID_INPUT, str(exc)) from None
    unknown = [s for s in scope if s not in mail_services]
    if unknown:
        raise Refused(
            RefusalReason.INVALID_INPUT,
            f"{', '.join(unknown)}: not a mail service (known: {', '.join(sorted(mail_services))})",
        )
    live = state.live_passcodes(now)
    if any(p.label.casefold() == label.casefold() for p in live):
        raise Refused(RefusalReason.LABEL_TAKEN, f"a passcode labelled {label!r} already exists")
    if len(live) >= policy.passcode_limit:
        raise Refused(
            RefusalReason.LIMIT_REACHED,
            f"the limit of {policy.passcode_limit} passcodes is reached; revoke one first",
        )
    if lifetime is not None and lifetime <= 0:
        raise Refused(RefusalReason.INVALID_INPUT, "a passcode's lifetime must be positive")
    if policy.passcode_lifetime:
        lifetime = min(lifetime or policy.passcode_lifetime, policy.passcode_lifetime)
    plain = new_passcode(random)
    record = Passcode(
        id=new_id(random),
        label=label,
        digest=fast_digest("passcode", plain),
        created=now,
        expires=now + lifetime if lifetime else 0,
        services=scope,
        stamp=state.stamp,
    )
    return NewPasscode(group(plain, 4), record), Modify((Change.add(Attr.PASSCODE, record.dump()),))


def revoke_passcode(
    state: AccountState, label: str, now: int
) -> tuple[Modify, tuple[Modify, Modify]]:
    """The passcode(s) so labelled; then, apart, their usage notes go and what
    recognises a client still using one is kept (``core.staleclients``)."""
    matches = [p for p in state.passcodes if p.label.casefold() == label.casefold()]
    if not matches:
        raise NotFound(RefusalReason.NO_SUCH_PASSCODE, f"no passcode labelled {label[:64]!r}")
    return (
        Modify((Change.delete(Attr.PASSCODE, *(p.dump() for p in matches)),)),
        (
            _usage_cleanup(state, {p.id for p in matches}),
            retire_passcodes(state, matches, now, "revoked"),
        ),
    )


def revoke_all_passcodes(state: AccountState, now: int) -> tuple[Modify, tuple[Modify, Modify]]:
    """Every passcode, and every webmail session with them: "revoke all" leaves no
    credential a mail server takes."""
    return (
        Modify((Change.replace(Attr.PASSCODE), *end_all(state).changes)),
        (
            _usage_cleanup(state, {p.id for p in state.passcodes} | _session_ids(state)),
            retire_passcodes(state, state.passcodes, now, "revoked"),
        ),
    )


def _session_ids(state: AccountState) -> set[str]:
    return {s.id for s in state.web_sessions}


def _drop_devices(state: AccountState, devices: list[Device]) -> tuple[Modify, Modify]:
    if not devices:
        return Modify(()), Modify(())
    return (
        Modify((Change.delete(Attr.DEVICE, *(d.dump() for d in devices)),)),
        _usage_cleanup(state, {d.id for d in devices}),
    )


def revoke_device(state: AccountState, device_id: str) -> tuple[Modify, Modify]:
    matches = [d for d in state.devices if d.id == device_id]
    if not matches:
        raise NotFound(
            RefusalReason.NO_SUCH_DEVICE, f"no trusted device with id {device_id[:16]!r}"
        )
    return _drop_devices(state, matches)


def revoke_other_devices(state: AccountState, keep_id: str) -> tuple[Modify, Modify]:
    if not any(d.id == keep_id for d in state.devices):
        raise NotFound(RefusalReason.NO_SUCH_DEVICE, f"no trusted device with id {keep_id[:16]!r}")
    return _drop_devices(state, [d for d in state.devices if d.id != keep_id])


def revoke_all_devices(state: AccountState) -> tuple[Modify, Modify]:
    """Every trusted device, and every open webmail session (signed in on a device)."""
    commit, cleanup = _drop_devices(state, list(state.devices))
    sessions = end_all(state)
    if not sessions:
        return commit, cleanup
    ids = {d.id for d in state.devices} | _session_ids(state)
    return Modify((*commit.changes, *sessions.changes)), _usage_cleanup(state, ids)


def renewed_device(state: AccountState, device_id: str, stamp: str) -> Device | None:
    """The device ``device_id`` under the password ``stamp``, or None if there is none."""
    device = next((d for d in state.devices if d.id == device_id), None)
    if device is None:
        return None
    return Device(
        id=device.id,
        label=device.label,
        digest=device.digest,
        created=device.created,
        expires=device.expires,
        stamp=stamp,
    )


def regenerate_backup_codes(
    state: AccountState, policy: Policy, random: Random
) -> tuple[list[str], Modify]:
    _require_enabled(state)
    shown, hashes = issue_backup_codes(policy.backup_codes, random)
    return shown, Modify((Change.replace(Attr.BACKUP_CODE, *hashes),))


_FACTORS = (
    Attr.SECRET,
    Attr.ALGORITHM,
    Attr.DIGITS,
    Attr.PERIOD,
    Attr.LAST_STEP,
    Attr.PENDING,
    Attr.BACKUP_CODE,
    Attr.PASSCODE,
    Attr.DEVICE,
    Attr.USAGE,
)


def disable_modify(state: AccountState) -> Modify:
    """Two-step off: every factor, passcode, device and webmail session goes; lock state
    and policy stay. The webmail sessions only when there are some: a directory whose
    schema predates them has no such attribute to name."""
    return Modify(
        (
            Change.replace(Attr.ENABLED, "FALSE"),
            *(Change.replace(name) for name in _FACTORS),
            *end_all(state).changes,
        )
    )


def reset_modify(state: AccountState) -> Modify:
    """As if two-step had never been used, but for the policy assignment and overrides.
    Retired credentials and stale clients only when there are some (as webmail sessions:
    a directory whose schema predates them has no such attribute)."""
    remembered = tuple(
        Change.replace(name)
        for name, records in (
            (Attr.RETIRED, state.retired),
            (Attr.STALE_CLIENT, state.stale_clients),
        )
        if records or state.unreadable.get(name)
    )
    return Modify(
        (
            Change.replace(Attr.ENABLED),
            *(Change.replace(name) for name in _FACTORS),
            *end_all(state).changes,
            *unlock_modify().changes,
            *remembered,
        )
    )


@dataclass(frozen=True)
class PasscodeInfo:
    id: str
    label: str
    services: tuple[str, ...]
    created: int
    expires: int
    last_used: int | None
    last_address: str | None


@dataclass(frozen=True)
class DeviceInfo:
    id: str
    label: str
    created: int
    expires: int
    last_seen: int | None
    last_address: str | None


@dataclass(frozen=True)
class WebSessionInfo:
    id: str
    browser: str
    created: int
    last_used: int | None
    last_address: str | None


@dataclass(frozen=True)
class AccountStatus:
    username: str
    enabled: bool
    policy: Policy
    policy_dn: str | None
    backup_codes: int
    passcodes: tuple[PasscodeInfo, ...]
    devices: tuple[DeviceInfo, ...]
    locked: bool
    locked_until: int | None
    recent_failures: int
    pending_expires: int | None
    web_sessions: tuple[WebSessionInfo, ...] = ()
    stale_clients: tuple[StaleClient, ...] = ()
    """Clients still presenting a retired credential (``core.staleclients``)."""
    required_from: int | None = None
    """Two-step becomes required for this account then (still ahead, not yet on)."""
    mail_password_until: int | None = None
    """Two-step is on and mail still takes the password until then (``core.rollout``)."""


def status(state: AccountState, policy: Policy, policy_dn: str | None, now: int) -> AccountStatus:
    """What ``twostep status`` and the portal show; dead passcodes and devices are left out."""
    lock = lock_state(state, policy, now)

    def used(record_id: str) -> tuple[int | None, str | None]:
        note = state.usage_of(record_id)
        return (note.time, note.address) if note else (None, None)

    return AccountStatus(
        username=state.username,
        enabled=state.enabled,
        policy=policy,
        policy_dn=policy_dn,
        backup_codes=len(state.backup_codes) if state.enabled else 0,
        passcodes=tuple(
            PasscodeInfo(p.id, p.label, p.services, p.created, p.expires, *used(p.id))
            for p in sorted(state.live_passcodes(now), key=lambda p: p.created)
        ),
        devices=tuple(
            DeviceInfo(d.id, d.label, d.created, d.expires, *used(d.id))
            for d in sorted(state.live_devices(now), key=lambda d: d.created)
        ),
        locked=lock.locked,
        locked_until=lock.until,
        recent_failures=lock.recent,
        required_from=reminder(state, policy, now),
        mail_password_until=(
            policy.mail_password_until
            if state.enabled and mail_password_accepted(state, policy, now)
            else None
        ),
        pending_expires=(
            state.pending.expires if state.pending and state.pending.expires > now else None
        ),
        web_sessions=tuple(
            WebSessionInfo(s.id, s.browser, s.created, *used(s.id))
            for s in sorted(live_sessions(state, now), key=lambda s: s.created)
        ),
        stale_clients=shown(state, now),
    )
