"""Account states built in memory, for the pure core's tests (no directory involved)."""

from __future__ import annotations

import os
import secrets
from dataclasses import replace

from pam_twostep.core.account import AccountState
from pam_twostep.core.codes import new_backup_code, new_id, new_passcode
from pam_twostep.core.decision import Attempt, Context, Decision, Flow, PasswordCheck, decide
from pam_twostep.core.hashing import fast_digest, hash_backup_code
from pam_twostep.core.keyring import Keyring
from pam_twostep.core.policy import Policy
from pam_twostep.core.records import Passcode
from pam_twostep.core.totp import TotpParams, time_step, totp

KEYS = Keyring({"k1": bytes(range(32))}, "k1")
SECRET = bytes(range(100, 120))
NOW = 1_800_000_000
STAMP = "0" * 32
UUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def plain_state(**changes: object) -> AccountState:
    state = AccountState(
        dn="uid=alice,ou=people,dc=example,dc=org",
        username="alice",
        uuid=UUID,
        stamp=STAMP,
        has_class=True,
    )
    return replace(state, **changes)  # type: ignore[arg-type]


def enabled_state(**changes: object) -> AccountState:
    sealed = KEYS.seal(SECRET, context=UUID.encode(), nonce=os.urandom(12))
    return plain_state(
        enabled=True,
        secret=sealed,
        params=TotpParams(),
        last_step=time_step(NOW, 30) - 5,
        **changes,
    )


def code(now: float = NOW) -> str:
    return totp(SECRET, now, TotpParams())


def with_backup_codes(state: AccountState, count: int = 3) -> tuple[AccountState, list[str]]:
    plain = [new_backup_code(secrets.token_bytes) for _ in range(count)]
    hashes = tuple(hash_backup_code(c, os.urandom(16)) for c in plain)
    return replace(state, backup_codes=hashes), plain


def with_passcode(
    state: AccountState,
    label: str = "Thunderbird",
    *,
    services: tuple[str, ...] = (),
    expires: int = 0,
    stamp: str | None = None,
) -> tuple[AccountState, str]:
    plain = new_passcode(secrets.token_bytes)
    record = Passcode(
        id=new_id(secrets.token_bytes),
        label=label,
        digest=fast_digest("passcode", plain),
        created=NOW - 100,
        expires=expires,
        services=services,
        stamp=stamp or state.stamp,
    )
    return replace(state, passcodes=(*state.passcodes, record)), plain


def run(
    state: AccountState,
    attempt: Attempt,
    *,
    policy: Policy | None = None,
    password: PasswordCheck = PasswordCheck.RIGHT,
    service: str = "imap",
    remote: str = "192.0.2.1",
    now: int = NOW,
) -> Decision:
    return decide(
        state,
        policy or Policy(),
        attempt,
        Context(service, remote, now),
        password=password,
        keys=KEYS,
        random=secrets.token_bytes,
    )


def mail(secret: str) -> Attempt:
    return Attempt(Flow.MAIL, secret)


def interactive(password: str = "pw", code: str | None = None, **extra: object) -> Attempt:
    return Attempt(Flow.INTERACTIVE, password, code=code, **extra)  # type: ignore[arg-type]
