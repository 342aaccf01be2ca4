"""Continuations: "this client proved this user's password a moment ago".

An interactive login is two requests: the password (answered ``challenge`` when a code
is needed), then password and code. The first answer carries a continuation, an HMAC
over the user name, the asking peer's uid and an expiry, under a key that lives only in
the daemon's memory. Presented with the code, a valid continuation stands in for the
second password check: one LDAP bind fewer per interactive login. It proves nothing
else: the account is read afresh, lock-out and the code are checked as always, and a
continuation that does not verify (expired, another peer, the daemon restarted) simply
means the password is checked again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["LIFETIME", "Continuations"]

LIFETIME = 300
"""Seconds to type a verification code."""


class Continuations:
    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _mac(self, user: str, uid: int, expires: int) -> str:
        message = f"{user}\0{uid}\0{expires}".encode("utf-8", "surrogatepass")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode("ascii")

    def issue(self, user: str, uid: int, now: float) -> str:
        expires = int(now) + LIFETIME
        return f"{expires}.{self._mac(user, uid, expires)}"

    def valid(self, token: object, user: str, uid: int, now: float) -> bool:
        if not isinstance(token, str) or len(token) > 64:
            return False
        expires_text, _, mac = token.partition(".")
        if not expires_text.isascii() or not expires_text.isdigit() or len(expires_text) > 12:
            return False
        expires = int(expires_text)
        if expires <= now or expires > now + LIFETIME + 1:
            return False
        return hmac.compare_digest(
            mac.encode("ascii", "replace"), self._mac(user, uid, expires).encode("ascii")
        )
