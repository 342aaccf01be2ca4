"""What keeps the portal's pages safe, apart from the pages themselves.

* CSRF: one random token per session, in every form, compared in constant time; a
  cross-origin ``Origin`` header is refused too. Session cookies are SameSite=Lax.
* Sessions: signed cookies (Flask), ending after ``idle_timeout`` unused and after
  ``session_lifetime`` in any case.
* Recent authentication: sensitive changes need a password (and code, once two-step is
  on) given within ``reauth_window``; a sign-in through a trusted device does not count,
  nor does confirming a new key. A new key itself, while two-step is on, wants a code
  given with the request that begins it, which twostepd checks: no session state counts.
* Headers: a Content-Security-Policy that allows only the portal's own script and style
  files, no framing, no referrer, no caching of pages that may hold a secret.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping

__all__ = [
    "HEADERS",
    "new_token",
    "recent",
    "safe_next",
    "session_ended",
    "tokens_match",
]

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: object, given: object) -> bool:
    if not isinstance(expected, str) or not isinstance(given, str) or not expected:
        return False
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def session_ended(session: Mapping[str, object], now: float, idle: int, lifetime: int) -> bool:
    """Whether a signed-in session has run out (unused too long, or simply too old)."""
    started, seen = session.get("started"), session.get("seen")
    if not isinstance(started, int | float) or not isinstance(seen, int | float):
        return True
    return now - seen > idle or now - started > lifetime


def recent(session: Mapping[str, object], now: float, window: int) -> bool:
    """Whether the user proved password (and code) within ``window`` seconds."""
    strong = session.get("strong")
    return isinstance(strong, int | float) and 0 <= now - strong <= window


def safe_next(target: object) -> str:
    """A local path to return to after re-authenticating; anything else is the home page."""
    if (
        isinstance(target, str)
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and target.isprintable()
        and len(target) < 200
    ):
        return target
    return "/"
