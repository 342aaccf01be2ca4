"""The Flask test client's cookies on Werkzeug 2.2 (Debian 12) and 2.3 on (Debian 13, pip).

Werkzeug 2.3 added ``client.get_cookie(key, domain=...)`` and made ``set_cookie`` take the
key first; 2.2 keeps an ``http.cookiejar`` in ``client.cookie_jar`` and its ``set_cookie``
takes the server name first.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_cookie", "set_cookie"]


def get_cookie(client: Any, key: str, domain: str) -> str | None:
    """The value of the cookie ``key`` the client holds for ``domain``, or None."""
    if hasattr(client, "get_cookie"):
        cookie = client.get_cookie(key, domain=domain)
        return None if cookie is None else str(cookie.value)
    for cookie in client.cookie_jar:
        if cookie.name == key and cookie.domain.lstrip(".") == domain:
            return str(cookie.value)
    return None


def set_cookie(client: Any, key: str, value: str, domain: str) -> None:
    """Give the client the cookie ``key`` for ``domain`` (host-only, as the portal sets it)."""
    if hasattr(client, "get_cookie"):
        client.set_cookie(key, value, domain=domain)
    else:
        client.set_cookie(domain, key, value)
