"""``make demo``'s webmail step: Alice signs in to Roundcube as a browser would.

A new browser (a fresh cookie jar) gets the password page, then the code page, then the
inbox; Roundcube's reads of her mail are audited as the webmail session credential, and
``twostep webmail list`` shows the session. Plain HTTPS requests, no browser needed:
the lab's CA is the only one trusted.
"""

from __future__ import annotations

import html
import http.cookiejar
import re
import ssl
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

__all__ = ["webmail_sign_in"]

_FIELD = r'name="{name}"[^>]*value="([^"]*)"'


def _field(page: str, name: str) -> str:
    found = re.search(_FIELD.format(name=re.escape(name)), page) or re.search(
        r'value="([^"]*)"[^>]*name="' + re.escape(name) + '"', page
    )
    if found is None:
        raise SystemExit(f"demo: the webmail page has no {name} field")
    return html.unescape(found.group(1))


def webmail_sign_in(
    info: dict[str, Any], user: str, password: str, code: Callable[[], str]
) -> tuple[bool, bool]:
    """(asked for a code, the inbox opened) for a sign-in from a new browser."""
    context = ssl.create_default_context(cafile=info["webmail_ca"])
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
        urllib.request.HTTPSHandler(context=context),
    )
    base = info["webmail_url"] + "/?_task=login"

    def post(fields: dict[str, str]) -> str:
        data = urllib.parse.urlencode(fields).encode()
        with opener.open(base, data=data, timeout=30) as response:
            return str(response.read().decode("utf-8", "replace"))

    with opener.open(base, timeout=30) as response:
        page = response.read().decode("utf-8", "replace")
    common = {"_task": "login", "_action": "login", "_timezone": "UTC"}
    page = post(common | {"_token": _field(page, "_token"), "_user": user, "_pass": password})
    asked = 'id="twostepcode"' in page
    if asked:
        page = post(
            common
            | {
                "_token": _field(page, "_token"),
                "_twostep": _field(page, "_twostep"),
                "_code": code(),
            }
        )
    return asked, 'id="messagelist"' in page
