"""A browser-like HTTP client of the portal, for tests that sign in without Chromium."""

from __future__ import annotations

import http.client
import re
import ssl
import urllib.parse

__all__ = ["Client"]


class Client:
    """A browser-like HTTP client (cookies, the page's CSRF token) that connects from a
    chosen loopback address, through nginx (HTTPS, the lab's CA and nothing else, names
    checked) or straight to the portal (HTTP)."""

    def __init__(self, base: str, source: str, ca: str | None = None) -> None:
        self.base = base
        url = urllib.parse.urlsplit(base)
        self.host = url.hostname or ""
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.source = source
        self.context = ssl.create_default_context(cafile=ca) if url.scheme == "https" else None
        self.cookies: dict[str, str] = {}
        self.token = ""

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None, **headers: str
    ) -> tuple[int, dict[str, str], str]:
        connection: http.client.HTTPConnection
        if self.context is not None:
            connection = http.client.HTTPSConnection(
                self.host, self.port, source_address=(self.source, 0), context=self.context
            )
        else:
            connection = http.client.HTTPConnection(
                self.host, self.port, source_address=(self.source, 0)
            )
        sent = {k.replace("_", "-"): v for k, v in headers.items()}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode({**form, "csrf": self.token})
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            text = response.read().decode()
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, value = header.split(";", 1)[0].partition("=")
                self.cookies[name.strip()] = value
            found = re.search(r'name="csrf" value="([^"]+)"', text)
            if found:
                self.token = found.group(1)
            return response.status, dict(response.headers), text
        finally:
            connection.close()

    def sign_in(self, user: str, password: str, **headers: str) -> tuple[int, dict[str, str]]:
        self.request("GET", "/signin")
        status, answer, _ = self.request(
            "POST", "/signin", {"user": user, "password": password}, **headers
        )
        return status, answer
