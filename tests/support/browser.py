"""Headless Chromium (Debian's, through Playwright) driving the portal as a person would:
shared by the browser story on plain HTTP (test_portal_browser.py) and the same story
through nginx on HTTPS (test_portal_proxy.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support import leaks

from pam_twostep.core.totp import decode_secret, time_step, totp

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"


@contextmanager
def chromium(*args: str) -> Iterator[Any]:
    """A headless Chromium with ``args`` besides the sandbox one (root has none)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", *args]
        )
        try:
            yield browser
        finally:
            browser.close()


class Person:
    """One browser profile (a fresh context: its own cookies), signing in as a user."""

    def __init__(self, browser: Any, lab: dict[str, Any], user: str, name: str) -> None:
        self.context = browser.new_context(viewport={"width": 1100, "height": 800})
        self.page = self.context.new_page()
        self.url = lab["portal_url"]
        self.user = user
        self.password = next(u["password"] for u in lab["users"] if u["name"] == user)
        self.name = name
        leaks.remember(self.password)

    def shot(self, name: str) -> None:
        SHOTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        self.check_accessible()

    def check_accessible(self) -> None:
        """Every visible field has a label; every button has a name; one h1."""
        unlabelled = self.page.evaluate(
            """() => Array.from(document.querySelectorAll('input:not([type=hidden])'))
                 .filter(i => !(i.id && document.querySelector('label[for="' + i.id + '"]')))
                 .map(i => i.name)"""
        )
        assert unlabelled == []
        nameless = self.page.evaluate(
            """() => Array.from(document.querySelectorAll('button'))
                 .filter(b => !(b.textContent.trim() || b.getAttribute('aria-label'))).length"""
        )
        assert nameless == 0
        assert self.page.locator("h1").count() == 1

    def submit(self, form: str) -> None:
        with self.page.expect_navigation():
            self.page.click(f"main form[action='{form}'] button[type=submit]")

    def sign_in(self, password: str | None = None) -> str:
        """Fills the password form; returns where it landed: code, account or signin."""
        self.page.goto(self.url + "/signin")
        self.page.fill("#user", self.user)
        self.page.fill("#password", password or self.password)
        self.submit("/signin")
        path = self.page.url.removeprefix(self.url)
        return {"/signin/code": "code", "/": "account", "/setup": "setup"}.get(path, path)

    def enter_code(self, code: str, trust: bool = False) -> None:
        self.page.fill("#code", code)
        if trust:
            self.page.check("#trust")
        self.submit("/signin/code")

    def confirm_new_key(self) -> tuple[bytes, int, list[str]]:
        """On the page POST /setup answered: read the key as a person types it into an
        app, confirm it with a code, save the backup codes. Returns (key, the code's
        step, the backup codes)."""
        page = self.page
        key = decode_secret(page.inner_text("#key").replace(" ", ""))
        leaks.remember(page.inner_text("#key").replace(" ", ""))
        code, step = next_code(key, time_step(time.time(), 30) - 2)
        leaks.remember(code)
        page.fill("#code", code)
        self.submit("/setup/confirm")
        codes = page.inner_text("#codes").split()
        leaks.remember(codes)
        page.click("text=I have saved them")
        return key, step, codes

    def sign_out(self) -> None:
        with self.page.expect_navigation():
            self.page.click("form.signout button")

    def text(self) -> str:
        return str(self.page.inner_text("main"))


def next_code(key: bytes, used_step: int) -> tuple[str, int]:
    """A code of a step after ``used_step`` and not before the current one: the +-1
    window then takes it for at least 30 s, however long the page takes to submit."""
    step = max(used_step + 1, time_step(time.time(), 30))
    while step > time_step(time.time(), 30) + 1:
        time.sleep(0.5)
    return totp(key, step * 30), step
