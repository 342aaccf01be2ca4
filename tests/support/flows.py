"""Short-hands for engine tests: enroll a user, log in by each route."""

from __future__ import annotations

from support.slapd import USERS

from pam_twostep.core.decision import Attempt, Decision, Flow
from pam_twostep.core.totp import decode_secret, totp
from pam_twostep.engine import Engine


def enroll(
    engine: Engine, now: float, user: str = "alice", password: str | None = None
) -> tuple[bytes, list[str]]:
    shown = engine.enroll_begin(
        user, USERS.get(user, f"{user}-pw") if password is None else password
    )
    key = decode_secret(shown.secret)
    return key, engine.enroll_confirm(user, totp(key, now))


def mail_login(
    engine: Engine, user: str, secret: str, service: str = "imap", remote: str = "192.0.2.10"
) -> Decision:
    return engine.authenticate(user, Attempt(Flow.MAIL, secret), service=service, remote=remote)


def interactive_login(
    engine: Engine,
    user: str,
    code: str | None = None,
    *,
    password: str | None = None,
    device_token: str | None = None,
    trust: bool = False,
    service: str = "sshd",
    remote: str = "192.0.2.20",
) -> Decision:
    attempt = Attempt(
        Flow.INTERACTIVE,
        USERS.get(user, f"{user}-pw") if password is None else password,
        code=code,
        device_token=device_token,
        trust_device=trust,
        device_label="Laptop",
    )
    return engine.authenticate(user, attempt, service=service, remote=remote)
