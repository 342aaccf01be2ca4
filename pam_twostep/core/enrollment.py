"""Turning two-step on: begin (new secret, pending) and confirm (a code proves the app has it).

The new secret is kept as a *pending* enrollment, sealed like the active one but in its
own attribute, until a code computed from it comes back. So an abandoned or failed
enrollment never disturbs an active secret, and re-enrolling a new phone is the same
two steps. Confirming swaps the secret in, sets the watermark to the confirming code's
step (that code cannot be used again to log in) and issues fresh backup codes.

Whoever confirms a pending secret owns the account's second factor from then on, so
while two-step is on a pending secret is only begun once the current second factor
(a code or backup code, given for this very request) has been checked: the password
alone, a trusted device or a session would otherwise be enough to take the account.
An administrator who wants a user to start over resets (or disables) two-step first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .account import AccountState, Attr
from .changes import Change, Modify
from .codes import Random, group, new_backup_code
from .errors import CorruptEntry, RefusalReason, Refused
from .hashing import SALT_BYTES, hash_backup_code
from .keyring import NONCE_BYTES, Keyring
from .policy import Policy
from .records import Pending
from .totp import SECRET_BYTES, StepMatch, TotpParams, encode_secret, match_step, provisioning_uri
from .websessions import end_all

__all__ = ["EnrollmentStart", "begin", "confirm", "issue_backup_codes"]


@dataclass(frozen=True)
class EnrollmentStart:
    """What the user needs to set up the app; shown once, never logged."""

    secret: str = field(repr=False)
    """Base32, as apps expect when the key is typed."""
    grouped: str = field(repr=False)
    """The same key in groups of four, for typing."""
    uri: str = field(repr=False)
    """otpauth:// URI for the QR code."""
    params: TotpParams
    expires: int


def issue_backup_codes(count: int, random: Random) -> tuple[list[str], tuple[str, ...]]:
    """(codes to show once, grouped; their argon2id hashes to store)."""
    codes = [new_backup_code(random) for _ in range(count)]
    hashes = tuple(hash_backup_code(code, random(SALT_BYTES)) for code in codes)
    return [group(code, 5) for code in codes], hashes


def begin(
    state: AccountState,
    policy: Policy,
    *,
    params: TotpParams,
    issuer: str,
    lifetime: int,
    keys: Keyring,
    now: int,
    random: Random,
    second_factor: bool = False,
) -> tuple[EnrollmentStart, Modify]:
    """A new pending secret, written by compare-and-swap over the pending one read.

    ``second_factor`` says the caller checked the account's current second factor for
    this request; without it an account with two-step on is refused. The swap makes a
    begin that read the account while it was off conflict if its owner confirmed (and
    so turned two-step on) in the meantime, instead of leaving a secret behind that
    could be confirmed without the owner's second factor. A begin that read no pending
    secret has nothing to swap against, so the pending value also records whether it
    was begun with the second factor while on (``replaces``); ``confirm`` refuses one
    that was not on an account that is on now.
    """
    if state.enabled and not second_factor:
        raise Refused(
            RefusalReason.ALREADY_ENABLED,
            "two-step verification is already on: give a code from your app or a backup "
            "code to replace it, or ask an administrator to reset it",
        )
    if not policy.available and not state.enabled:
        raise Refused(
            RefusalReason.NOT_AVAILABLE, "two-step verification is not available for this account"
        )
    secret = random(SECRET_BYTES)
    sealed = keys.seal(secret, context=state.uuid.encode(), nonce=random(NONCE_BYTES))
    pending = Pending(
        sealed=sealed,
        params=params,
        created=now,
        expires=now + lifetime,
        replaces=state.enabled,
    )
    encoded = encode_secret(secret)
    start = EnrollmentStart(
        secret=encoded,
        grouped=group(encoded, 4, " "),
        uri=provisioning_uri(secret, account=state.username, issuer=issuer, params=params),
        params=params,
        expires=pending.expires,
    )
    earlier = () if state.pending is None else (Change.delete(Attr.PENDING, state.pending.dump()),)
    return start, Modify((*earlier, Change.add(Attr.PENDING, pending.dump())), guarded=True)


def confirm(
    state: AccountState,
    policy: Policy,
    code: str,
    *,
    keys: Keyring,
    now: int,
    random: Random,
) -> tuple[list[str], Modify]:
    """The backup codes to show once, and the guarded modify that turns two-step on."""
    pending = state.pending
    if pending is None:
        raise Refused(
            RefusalReason.NO_PENDING_ENROLLMENT,
            "there is no enrollment to confirm; begin one first",
        )
    if pending.expires <= now:
        raise Refused(
            RefusalReason.PENDING_EXPIRED, "the enrollment has expired; begin again for a new key"
        )
    if state.enabled and not pending.replaces:
        raise Refused(
            RefusalReason.ALREADY_ENABLED,
            "two-step verification was turned on after this enrollment began: begin again, "
            "with a code from your app",
        )
    try:
        secret = keys.open(pending.sealed, context=state.uuid.encode())
    except ValueError as exc:
        raise CorruptEntry(Attr.PENDING, str(exc)) from None
    match, step = match_step(
        secret,
        "".join(code.split()),
        now=now,
        params=pending.params,
        window=policy.totp_window,
        watermark=None,
    )
    if match is not StepMatch.MATCH or step is None:
        raise Refused(
            RefusalReason.WRONG_CODE,
            "that code does not match the new key; check the app's clock and retry",
        )
    shown, hashes = issue_backup_codes(policy.backup_codes, random)
    params = pending.params
    modify = Modify(
        (
            Change.delete(Attr.PENDING, pending.dump()),
            Change.replace(Attr.SECRET, pending.sealed),
            Change.replace(Attr.ALGORITHM, params.algorithm.value),
            Change.replace(Attr.DIGITS, str(params.digits)),
            Change.replace(Attr.PERIOD, str(params.period)),
            Change.replace(Attr.LAST_STEP, str(step)),
            Change.replace(Attr.BACKUP_CODE, *hashes),
            Change.replace(Attr.ENABLED, "TRUE"),
            # a webmail session opened with less (the password alone, or the key this
            # one replaces) ends: what it proved is no longer enough
            *end_all(state).changes,
        ),
        guarded=True,
    )
    return shown, modify
