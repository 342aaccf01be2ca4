"""The portal in a real browser (headless Chromium through Playwright), against the lab's
real slapd, twostepd, Dovecot and Postfix: the user guide's whole story, one page after
another, with a screenshot of each in screenshots/ (`make screenshots` copies them to
docs/screenshots/ for the README)."""

from __future__ import annotations

import imaplib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import leaks
from support.browser import CHROMIUM, SHOTS, Person, chromium, next_code
from support.stack import source, world_readable_directory

from pam_twostep import wire
from pam_twostep.core.totp import decode_secret, time_step
from pam_twostep.lab.dovecot import SourceIMAP
from pam_twostep.lab.stack import Lab

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, Any]]:
    instance = Lab(world_readable_directory("twostep-portal-") / "lab")
    info = instance.up()
    yield info
    instance.down()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as instance:
        yield instance


def imap_ok(lab: dict[str, Any], user: str, secret: str) -> bool:
    client = SourceIMAP("127.0.0.1", lab["imap_port"], source())
    try:
        client.login(user, secret)
    except imaplib.IMAP4.error:
        return False
    finally:
        client.logout()
    return True


def test_the_user_guides_story(lab: dict[str, Any], browser: Any) -> None:
    alice = Person(browser, lab, "alice", "first browser")
    page = alice.page

    # Sign in with the password alone; the page says two-step is off.
    alice.page.goto(alice.url + "/")
    assert alice.page.url.endswith("/signin")
    alice.shot("01-signin")
    assert alice.sign_in() == "account"
    assert "Off. Signing in asks for your password only." in alice.text()
    alice.shot("02-account-off")
    headers = page.request.get(alice.url + "/").headers
    assert "default-src 'none'" in headers["content-security-policy"]
    cookies = {c["name"]: c for c in alice.context.cookies()}
    assert cookies["twostep"]["httpOnly"] and cookies["twostep"]["sameSite"] == "Lax"

    # Set up: the password again, the QR code and key, a code, the backup codes.
    page.click("text=Set up two-step verification")
    page.fill("#password", alice.password)
    alice.submit("/setup")
    alice.shot("03-setup-scan")
    uri = page.text_content(".uri")
    qr_png = SHOTS / "qr.png"
    page.locator("figure.qr").screenshot(path=str(qr_png))
    decoded = subprocess.run(
        ["zbarimg", "-q", "--raw", str(qr_png)], capture_output=True, text=True, check=True
    )
    assert decoded.stdout.strip() == uri
    qr_png.unlink()
    key = decode_secret(page.inner_text("#key").replace(" ", ""))
    leaks.remember(page.inner_text("#key").replace(" ", ""))
    code, step = next_code(key, time_step(time.time(), 30) - 2)
    page.fill("#code", code)
    alice.submit("/setup/confirm")
    alice.shot("04-backup-codes")
    codes = page.inner_text("#codes").split()
    assert len(codes) == 10
    leaks.remember(codes, code)
    page.click("text=I have saved them")
    assert "On. Signing in asks for your password and a code" in alice.text()
    alice.sign_out()

    # A fresh browser: the code is asked; trust this browser.
    phone = Person(browser, lab, "alice", "second browser")
    assert phone.sign_in() == "code"
    phone.shot("05-code")
    phone.enter_code(codes[0], trust=True)
    assert phone.page.url == phone.url + "/"
    assert "this browser" in phone.text()
    phone.sign_out()
    # ... and again: no code asked.
    assert phone.sign_in() == "account"

    # Another browser trusted too, then revoked from the second one.
    laptop = Person(browser, lab, "alice", "third browser")
    assert laptop.sign_in() == "code"
    code, step = next_code(key, step)
    leaks.remember(code)
    laptop.enter_code(code, trust=True)
    phone.page.reload()
    assert phone.page.locator("section[aria-labelledby=h-devices] tbody tr").count() == 2
    phone.submit("/devices/revoke-others")
    assert phone.page.locator("section[aria-labelledby=h-devices] tbody tr").count() == 1
    laptop.sign_out()
    assert laptop.sign_in() == "code"  # asked again

    # An application passcode: a trusted-device sign-in must confirm it is the user first.
    page = phone.page
    page.fill("#label", "Thunderbird")
    phone.submit("/passcodes")
    assert page.url.startswith(phone.url + "/reauth")
    page.fill("#password", phone.password)
    page.fill("#code", codes[1])
    phone.submit("/reauth")
    page.fill("#label", "Thunderbird")
    page.check("#svc-imap")
    phone.submit("/passcodes")
    phone.shot("06-passcode")
    passcode = page.inner_text("#passcode").replace(" ", "")
    leaks.remember(passcode)
    assert (len(passcode) == 24 and passcode.isupper()) or passcode.isalnum()
    page.click("text=Done")
    assert "never" in page.inner_text("td.last-used")
    assert imap_ok(lab, "alice", passcode)
    page.reload()
    assert "from 127." in page.inner_text("td.last-used")
    phone.shot("07-account-on")

    # Revoked: IMAP refuses it.
    phone.submit("/passcodes/revoke")
    assert "no longer works" in phone.text()
    assert not imap_ok(lab, "alice", passcode)

    # A password change revokes every passcode (and every other device).
    page.fill("#label", "Phone")
    phone.submit("/passcodes")
    second = page.inner_text("#passcode").replace(" ", "")
    leaks.remember(second)
    page.click("text=Done")
    assert imap_ok(lab, "alice", second)
    page.click("text=Change your password")
    phone.shot("08-password")
    new_password = phone.password + "-new"
    leaks.remember(new_password)
    page.fill("#old", phone.password)
    page.fill("#new", new_password)
    page.fill("#again", new_password)
    phone.submit("/password")
    assert "Every application passcode and every other trusted device was revoked" in phone.text()
    assert page.locator("section[aria-labelledby=h-apps] tbody tr").count() == 0
    assert "this browser" in phone.text()  # the browser it was changed from stays trusted
    assert not imap_ok(lab, "alice", second)
    phone.sign_out()
    assert phone.sign_in(new_password) == "account"

    for person in (alice, phone, laptop):
        person.context.close()


def test_required_enrollment_then_a_new_phone(lab: dict[str, Any], browser: Any) -> None:
    """M3: a user whose policy requires two-step, not enrolled, signs in, is sent to
    setup, enrolls and gets backup codes. H1: later, on a browser trusted for her, the
    password alone with the page's own form (code field taken out) begins no new key;
    with a backup code it does, and confirming the new key is no re-authentication."""
    for request in (
        {"op": "policy-create", "name": "required-web", "settings": {"required": True}},
        {"op": "policy-assign", "user": "carol", "name": "required-web"},
    ):
        reply = wire.ask(lab["daemon_socket"], dict(request), 10)
        assert reply["result"] == "ok" or reply.get("reason") == "conflict", reply
    carol = Person(browser, lab, "carol", "required browser")
    page = carol.page

    assert carol.sign_in() == "setup"
    page.goto(carol.url + "/")
    assert page.url == carol.url + "/setup"  # nothing else before two-step is set up
    assert "Your organisation requires two-step verification" in carol.text()
    page.fill("#password", carol.password)
    carol.submit("/setup")
    key, _, codes = carol.confirm_new_key()
    assert len(codes) == 10
    assert "On. Signing in asks for your password and a code" in carol.text()
    carol.sign_out()
    assert carol.sign_in() == "code"
    carol.enter_code(codes[0], trust=True)
    carol.sign_out()
    assert carol.sign_in() == "account"  # trusted: no code asked

    # The password alone, through the page's own form and token: refused, nothing shown.
    page.click("text=Move to a new phone")
    carol.check_accessible()
    page.evaluate("document.querySelector('#code').remove()")
    page.fill("#password", carol.password)
    carol.submit("/setup")
    assert page.url == carol.url + "/setup"
    assert "already on" in carol.text() and page.locator("#key").count() == 0

    # With a backup code (the phone is lost): a new key, new codes.
    page.fill("#password", carol.password)
    page.fill("#code", codes[1])
    carol.submit("/setup")
    new_key, _, new_codes = carol.confirm_new_key()
    assert new_key != key
    assert len(new_codes) == 10 and set(new_codes).isdisjoint(codes)

    # Setting up the new key did not count as proving it is her.
    page.fill("#label", "Thunderbird")
    carol.submit("/passcodes")
    assert page.url.startswith(carol.url + "/reauth")
    carol.context.close()


def test_screenshots_are_where_the_readme_expects_them() -> None:
    documented = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for shot in sorted(documented.glob("*.png")):
        assert f"docs/screenshots/{shot.name}" in readme
    assert shutil.which("zbarimg")
