"""One account's operations: status, enrollment, backup codes, passcodes, devices,
unlock, reset, disable, password change.

Each function gets the engine's ``Accounts`` part and nothing else, and serves both
forms of its operation: the admin's (``manage`` right, ``OPS``) and, where a user may
make the change on themselves, the portal's (``self-service`` right behind a session
proof, ``SELF_SERVICE``). Reset, unlock and an admin's disable are admin only; the
user's ``disable`` must carry the password (``SelfDisable``), so the engine checks it.
"""

from __future__ import annotations

from ..access import Right
from ._ops import Handler, Op, accounts_of, manage
from ._parts import Accounts
from ._replies import Reply, ended_reply, status_reply
from ._schema import (
    Disable,
    EnrollBegin,
    EnrollConfirm,
    ForDevice,
    ForPasscode,
    ForUser,
    PasscodeAdd,
    PasswordChange,
    SelfDisable,
)
from .sessions import self_service

__all__ = ["OPS", "SELF_SERVICE"]


def _status(accounts: Accounts, v: ForUser, actor: str) -> Reply:
    return {"status": status_reply(accounts.status(v.user))}


def _enroll_begin(accounts: Accounts, v: EnrollBegin, actor: str) -> Reply:
    """``code`` is the current second factor, wanted while two-step is on (never a
    trusted device or anything the caller vouches for: the engine checks it itself)."""
    start = accounts.enroll_begin(
        v.user, v.password, code=v.code, actor=actor, service=v.service, remote=v.remote
    )
    return {
        "user": v.user,
        "secret": start.secret,
        "key": start.grouped,
        "uri": start.uri,
        "algorithm": start.params.algorithm.value,
        "digits": start.params.digits,
        "period": start.params.period,
        "expires": start.expires,
    }


def _enroll_confirm(accounts: Accounts, v: EnrollConfirm, actor: str) -> Reply:
    codes = accounts.enroll_confirm(v.user, v.code, actor=actor, service=v.service, remote=v.remote)
    return {"user": v.user, "backup_codes": codes}


def _disable(accounts: Accounts, v: Disable, actor: str) -> Reply:
    """Both forms: without a password an admin's disable; with one (always, in the
    self-service form) the user's, for which the engine checks password and code."""
    ended = accounts.disable(
        v.user,
        password=v.password,
        code=v.code,
        admin=v.password is None,
        actor=actor,
        service=v.service,
        remote=v.remote,
    )
    return ended_reply(ended)


def _reset(accounts: Accounts, v: ForUser, actor: str) -> Reply:
    return ended_reply(accounts.reset(v.user, actor=actor))


def _codes(accounts: Accounts, v: ForUser, actor: str) -> Reply:
    return {"remaining": accounts.status(v.user).backup_codes}


def _codes_regenerate(accounts: Accounts, v: ForUser, actor: str) -> Reply:
    return {"backup_codes": accounts.regenerate_backup_codes(v.user, actor=actor)}


def _passcode_add(accounts: Accounts, v: PasscodeAdd, actor: str) -> Reply:
    new = accounts.add_passcode(
        v.user,
        v.label,
        services=[s for s in v.services.split(",") if s],
        lifetime=v.lifetime,
        actor=actor,
    )
    record = new.record
    return {
        "passcode": new.passcode,
        "id": record.id,
        "label": record.label,
        "services": list(record.services),
        "created": record.created,
        "expires": record.expires or None,
    }


def _passcode_revoke(accounts: Accounts, v: ForPasscode, actor: str) -> Reply:
    return ended_reply(accounts.revoke_passcode(v.user, v.label, actor=actor))


def _passcode_revoke_all(accounts: Accounts, v: ForUser, actor: str) -> Reply:
    return ended_reply(accounts.revoke_all_passcodes(v.user, actor=actor))


def _device_revoke(accounts: Accounts, v: ForDevice, actor: str) -> Reply:
    accounts.revoke_device(v.user, v.device, actor=actor)
    return {}


def _device_revoke_others(accounts: Accounts, v: ForDevice, actor: str) -> Reply:
    accounts.revoke_other_devices(v.user, v.device, actor=actor)
    return {}


def _device_revoke_all(accounts: Accounts, v: ForUser, actor: str) -> Reply:
    accounts.revoke_all_devices(v.user, actor=actor)
    return {}


def _unlock(accounts: Accounts, v: ForUser, actor: str) -> Reply:
    accounts.unlock(v.user, actor=actor)
    return {}


def _mail_password_end(accounts: Accounts, v: ForUser, actor: str) -> Reply:
    return ended_reply(accounts.end_mail_password(v.user, actor=actor))


def _password_change(accounts: Accounts, v: PasswordChange, actor: str) -> Reply:
    return ended_reply(
        accounts.change_password(
            v.user,
            v.old,
            v.new,
            keep_device=v.keep_device,
            actor=actor,
            service=v.service,
            remote=v.remote,
        )
    )


OPS: dict[str, Op] = {
    "status": (Right.MANAGE, manage(ForUser, accounts_of, _status)),
    "enroll-begin": (Right.MANAGE, manage(EnrollBegin, accounts_of, _enroll_begin)),
    "enroll-confirm": (Right.MANAGE, manage(EnrollConfirm, accounts_of, _enroll_confirm)),
    "disable": (Right.MANAGE, manage(Disable, accounts_of, _disable)),
    "reset": (Right.MANAGE, manage(ForUser, accounts_of, _reset)),
    "codes": (Right.MANAGE, manage(ForUser, accounts_of, _codes)),
    "codes-regenerate": (Right.MANAGE, manage(ForUser, accounts_of, _codes_regenerate)),
    "passcode-add": (Right.MANAGE, manage(PasscodeAdd, accounts_of, _passcode_add)),
    "passcode-revoke": (Right.MANAGE, manage(ForPasscode, accounts_of, _passcode_revoke)),
    "passcode-revoke-all": (Right.MANAGE, manage(ForUser, accounts_of, _passcode_revoke_all)),
    "device-revoke": (Right.MANAGE, manage(ForDevice, accounts_of, _device_revoke)),
    "device-revoke-others": (
        Right.MANAGE,
        manage(ForDevice, accounts_of, _device_revoke_others),
    ),
    "device-revoke-all": (Right.MANAGE, manage(ForUser, accounts_of, _device_revoke_all)),
    "unlock": (Right.MANAGE, manage(ForUser, accounts_of, _unlock)),
    "mail-password-end": (Right.MANAGE, manage(ForUser, accounts_of, _mail_password_end)),
    "password-change": (Right.MANAGE, manage(PasswordChange, accounts_of, _password_change)),
}

SELF_SERVICE: dict[str, Handler] = {
    "status": self_service(ForUser, accounts_of, _status),
    "enroll-begin": self_service(EnrollBegin, accounts_of, _enroll_begin),
    "enroll-confirm": self_service(EnrollConfirm, accounts_of, _enroll_confirm, renews=True),
    "disable": self_service(SelfDisable, accounts_of, _disable, renews=True),
    "codes": self_service(ForUser, accounts_of, _codes),
    "codes-regenerate": self_service(ForUser, accounts_of, _codes_regenerate),
    "passcode-add": self_service(PasscodeAdd, accounts_of, _passcode_add),
    "passcode-revoke": self_service(ForPasscode, accounts_of, _passcode_revoke),
    "passcode-revoke-all": self_service(ForUser, accounts_of, _passcode_revoke_all),
    "device-revoke": self_service(ForDevice, accounts_of, _device_revoke),
    "device-revoke-others": self_service(ForDevice, accounts_of, _device_revoke_others),
    "device-revoke-all": self_service(ForUser, accounts_of, _device_revoke_all),
    "mail-password-end": self_service(ForUser, accounts_of, _mail_password_end),
    "password-change": self_service(PasswordChange, accounts_of, _password_change, renews=True),
}
"""What the ``self-service`` right reaches here: each a user's change to their own
account. Nothing here is an admin operation; ``disable`` checks the password."""
