"""Continuations: "this client proved this user's password a moment ago".

An interactive login is two requests: the password (answered ``challenge`` when a code
is needed), then password and code. The first answer carries a continuation, an HMAC
over the user name, the asking peer's uid, an expiry and the account's login state (its
password stamp and its second-factor state), under a key that lives only in the daemon's
memory and is shared by its serving processes. Presented with a code, a valid
continuation stands in for the second password check: one LDAP bind fewer per
interactive login. It proves nothing else: the account is read afresh, lock-out and the
code are checked as always, and a continuation that does not verify (expired, another
peer, the daemon restarted, the state moved on) simply means the password is checked
again.

It opens at most one login: the state in the MAC moves with every accepted code (the TOTP
watermark, a spent backup code), with a lock and with a password change (the stamp), so a
continuation that served once is stale in whichever serving process sees it next. A
wrong code leaves it usable until it expires, so a mistyped code can be typed again
(each wrong code counts towards lock-out as always). It is issued only where the
password itself was checked: a continuation never renews itself, and an empty code is
no code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .core.account import AccountState

__all__ = ["LIFETIME", "Continuations", "PasswordProof", "login_state"]

LIFETIME = 300
"""Seconds to type a verification code."""


def login_state(state: AccountState) -> str:
    """What a continuation is bound to: the password stamp and everything a second
    factor's use or failure changes."""
    parts = (
        state.stamp,
        str(state.enabled),
        state.secret or "",
        str(state.last_step),
        *state.backup_codes,
        str(state.locked_at),
    )
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


class PasswordProof(Protocol):
    """What the engine asks of a login's proof of password, without knowing its form."""

    def proven(self, state: str) -> bool:
        """Whether the password was proven already for the account in this login state
        (``login_state``)."""
        ...

    def checked(self, state: str) -> None:
        """The password was checked by the directory in this request and the login
        needs a code next: a new proof may be handed out for this login state."""
        ...


class Continuations:
    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _mac(self, user: str, uid: int, state: str, expires: int) -> str:
        message = f"{user}\0{uid}\0{state}\0{expires}".encode("utf-8", "surrogatepass")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode("ascii")

    def issue(self, user: str, uid: int, state: str, now: float) -> str:
        """A continuation for ``user`` asking as ``uid``, in login ``state``."""
        expires = int(now) + LIFETIME
        return f"{expires}.{self._mac(user, uid, state, expires)}"

    def valid(self, token: object, user: str, uid: int, state: str, now: float) -> bool:
        """Whether ``token`` is an unexpired continuation for this user, peer and login
        state."""
        if not isinstance(token, str) or len(token) > 64:
            return False
        expires_text, _, mac = token.partition(".")
        if not expires_text.isascii() or not expires_text.isdigit() or len(expires_text) > 12:
            return False
        expires = int(expires_text)
        if expires <= now or expires > now + LIFETIME + 1:
            return False
        expected = self._mac(user, uid, state, expires)
        return hmac.compare_digest(mac.encode("ascii", "replace"), expected.encode("ascii"))
