"""Roundcube with the twostep plugin, as a Dovecot/Postfix site runs it (issue 16):
Debian's Roundcube on SQLite behind nginx and php-fpm on HTTPS, the lab's slapd,
twostepd, Dovecot and Postfix, the portal behind its TLS proxy, audit on, and headless
Chromium doing what a person does.

The story: two-step off, the password signs in; two-step on in the portal; a new
browser is asked for a code and lands in the inbox; a message sent from Roundcube
goes out and its copy is read back over IMAP with a passcode; a trusted browser is not
asked again; after sign-out the session's credential opens nothing; a password change
ends an open session at its next page; wrong codes count towards lock-out; hostile
input on the code form gets a clear message; no secret reaches any log.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import os
import re
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import leaks
from support.browser import CHROMIUM, Person, chromium, next_code
from support.stack import source, world_readable_directory

from pam_twostep import wire
from pam_twostep.lab.dovecot import SourceIMAP
from pam_twostep.lab.roundcube import php_fpm
from pam_twostep.lab.stack import Lab

ROUNDCUBE = Path("/usr/share/roundcube/index.php")
pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
    pytest.mark.skipif(not ROUNDCUBE.exists(), reason="Debian's roundcube is not installed"),
]


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, Any]]:
    php_fpm()  # installed, or the test says so
    instance = Lab(world_readable_directory("twostep-webmail-") / "lab")
    info = instance.up(tls_proxy=True, webmail=True)
    yield info
    stopped = instance.down()
    assert {"php-fpm", "webmail-nginx"} <= set(stopped)


@pytest.fixture(scope="module")
def browser(lab: dict[str, Any]) -> Iterator[Any]:
    pins = f"{lab['portal_spki']},{lab['webmail_spki']}"
    with chromium(f"--ignore-certificate-errors-spki-list={pins}") as instance:
        yield instance


def ask(lab: dict[str, Any], request: dict[str, object]) -> dict[str, Any]:
    return wire.ask(lab["daemon_socket"], request, 15)


def password_of(lab: dict[str, Any], user: str) -> str:
    return str(next(u["password"] for u in lab["users"] if u["name"] == user))


def imap_ok(lab: dict[str, Any], user: str, secret: str, address: str | None = None) -> bool:
    client = SourceIMAP("127.0.0.1", lab["imap_port"], address or source())
    try:
        client.login(user, secret)
        return True
    except imaplib.IMAP4.error:
        return False
    finally:
        client.logout()


class Webmail:
    """One browser profile in Roundcube."""

    def __init__(self, browser: Any, lab: dict[str, Any], user: str) -> None:
        self.lab = lab
        self.context = browser.new_context(viewport={"width": 1100, "height": 800})
        self.page = self.context.new_page()
        self.url = lab["webmail_url"]
        self.user = user

    def sign_in(self, password: str) -> str:
        """Returns where it landed: ``inbox``, ``code`` or ``login`` (refused)."""
        page = self.page
        page.goto(self.url + "/?_task=login")
        page.fill("#rcmloginuser", self.user)
        page.fill("#rcmloginpwd", password)
        with page.expect_navigation():
            page.click("#rcmloginsubmit")
        return self.where()

    def where(self) -> str:
        page = self.page
        page.wait_for_load_state("networkidle")
        if page.locator("#twostepcode").count():
            return "code"
        if "_task=mail" in page.url and page.locator("#messagelist").count():
            return "inbox"
        return "login"

    def enter_code(self, code: str, trust: bool = False) -> str:
        page = self.page
        page.fill("#twostepcode", code)
        if trust:
            page.check("#twostep-trust")
        with page.expect_navigation():
            page.click("#rcmloginsubmit")
        return self.where()

    def message(self) -> str:
        return (
            str(self.page.inner_text("#messagestack"))
            if self.page.locator("#messagestack").count()
            else ""
        )

    def credential(self) -> str:
        """The mail credential of this browser's Roundcube session, read as an attacker
        who got the webmail's session store and its des_key would."""
        site = Path(self.lab["webmail_logs"]) / "site"
        sessid = next(c["value"] for c in self.context.cookies() if c["name"] == "roundcube_sessid")
        with sqlite3.connect(site / "db" / "roundcube.db") as db:
            (encoded,) = db.execute(
                "SELECT vars FROM session WHERE sess_id = ?", (sessid,)
            ).fetchone()
        found = re.search(r'password\|s:\d+:"([^"]+)"', base64.b64decode(encoded).decode())
        assert found is not None
        config = (site / "config" / "config.inc.php").read_text()
        key = re.search(r"\$config\['des_key'\] = '([^']+)'", config)
        assert key is not None
        clear = subprocess.run(
            [
                "php",
                "-r",
                "$d = base64_decode(getenv('C')); echo openssl_decrypt(substr($d, 8),"
                " 'DES-EDE3-CBC', getenv('K'), OPENSSL_RAW_DATA, substr($d, 0, 8));",
            ],
            env={"C": found.group(1), "K": key.group(1), "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        leaks.remember(clear)
        return clear

    def post(self, fields: dict[str, str | bytes]) -> tuple[int, str]:
        """A form posted by this browser (its cookies, its certificate pin), with any
        bytes in it: what a person with the browser's developer tools can send."""
        body = urllib.parse.urlencode(fields)
        status, text = self.page.evaluate(
            """async ([url, body]) => {
                const r = await fetch(url, {method: "POST", body, credentials: "same-origin",
                    headers: {"Content-Type": "application/x-www-form-urlencoded"}});
                return [r.status, await r.text()];
            }""",
            [self.url + "/?_task=login", body],
        )
        return int(status), str(text)

    def close(self) -> None:
        self.context.close()


def enrol_in_portal(browser: Any, lab: dict[str, Any], user: str) -> tuple[bytes, int, list[str]]:
    """Two-step on, as the user does it: in the portal, behind its TLS proxy."""
    person = Person(browser, lab, user, "portal")
    assert person.sign_in() == "account"
    person.page.click("text=Set up two-step verification")
    person.page.fill("#password", person.password)
    person.submit("/setup")
    key, step, codes = person.confirm_new_key()
    person.context.close()
    return key, step, codes


def audit(lab: dict[str, Any]) -> str:
    return Path(lab["audit_log"]).read_text()


def test_two_step_off_the_password_signs_in_and_mail_takes_it(
    lab: dict[str, Any], browser: Any
) -> None:
    alice = Webmail(browser, lab, "alice")
    assert alice.sign_in(password_of(lab, "alice")) == "inbox"
    # policy lets the password reach mail while two-step is off: no credential minted
    assert "webmail-session-start" not in audit(lab)
    alice.close()


def ldap_modify(lab: dict[str, Any], user: str, changes: str, *, check: bool = True) -> None:
    subprocess.run(
        [
            "ldapmodify",
            "-x",
            "-H",
            lab["ldap_uri"],
            "-D",
            lab["admin_dn"],
            "-w",
            lab["admin_password"],
        ],
        input=f"dn: uid={user},ou=people,{lab['base_dn']}\nchangetype: modify\n{changes}",
        text=True,
        check=check,
        capture_output=True,
    )


def test_a_date_ahead_for_required_reminds_after_sign_in(lab: dict[str, Any], browser: Any) -> None:
    """``required_from`` (issue 18): before the date the sign-in goes on to the inbox, and
    the first page says from when two-step is required; not on the pages after."""
    when = time.strftime("%Y%m%d000000Z", time.gmtime(time.time() + 2 * 86400))
    # an earlier sign-in may have given alice the class already (its password verifier)
    ldap_modify(lab, "alice", "add: objectClass\nobjectClass: twostepAccount\n", check=False)
    ldap_modify(
        lab,
        "alice",
        "replace: twostepRequired\ntwostepRequired: TRUE\n-\n"
        f"replace: twostepRequiredFrom\ntwostepRequiredFrom: {when}\n",
    )
    alice = Webmail(browser, lab, "alice")
    try:
        assert alice.sign_in(password_of(lab, "alice")) == "inbox"
        day = f"{when[:4]}-{when[4:6]}-{when[6:8]}"
        assert f"will be required for your account from {day}" in alice.message()
        alice.page.reload()
        alice.where()
        assert "will be required" not in alice.message()
    finally:
        alice.close()
        ldap_modify(lab, "alice", "delete: twostepRequired\n-\ndelete: twostepRequiredFrom\n")


def test_the_webmail_story(lab: dict[str, Any], browser: Any) -> None:
    password = password_of(lab, "bob")
    key, step, _codes = enrol_in_portal(browser, lab, "bob")
    assert not imap_ok(lab, "bob", password)  # two-step on: the password no longer opens mail

    # A new browser is asked for a code, in Roundcube's own look, then shows the inbox.
    first = Webmail(browser, lab, "bob")
    assert first.sign_in(password) == "code"
    first.page.screenshot(path=str(Path(lab["dir"]) / "webmail-code.png"))
    code, step = next_code(key, step)
    leaks.remember(code)
    assert first.enter_code(code, trust=True) == "inbox"
    credential = first.credential()
    assert credential.startswith("ws-") and credential != password
    events = audit(lab)
    assert '"action":"webmail-session-start"' in events
    assert (
        '"method":"webmail-session","outcome":"accept","remote":"127.0.0.1","service":"imap"'
        in events
    )

    # The credential opens IMAP from the webmail's address only, and is no passcode
    # for anywhere else.
    assert imap_ok(lab, "bob", credential, address="127.0.0.1")
    assert not imap_ok(lab, "bob", credential)  # another loopback address: not the webmail's

    # A message sent from Roundcube goes out through Postfix (SMTP AUTH with the
    # credential), and its copy in Sent is read back over IMAP with a passcode.
    page = first.page
    page.goto(first.url + "/?_task=mail&_action=compose")
    page.wait_for_selector("#compose-subject")
    recipient = page.locator(".recipient-input input").first
    recipient.fill("carol@example.org")
    recipient.press("Enter")
    subject = f"hello from webmail {time.time_ns()}"
    page.fill("#compose-subject", subject)
    page.fill("#composebody", "sent through the session credential")
    page.click("button.send, a.send")
    page.wait_for_url(re.compile(r"_task=mail(?!.*compose)"), timeout=30000)
    passcode = ask(lab, {"op": "passcode-add", "user": "bob", "label": "reader"})["passcode"]
    leaks.remember(passcode)
    client = SourceIMAP("127.0.0.1", lab["imap_port"], source())
    client.login("bob", passcode)
    client.select("Sent", readonly=True)
    _, found = client.search(None, "SUBJECT", f'"{subject}"')
    client.logout()
    assert found[0].split(), "the sent copy is in Sent"
    postfix_log = (Path(lab["dir"]) / "postfix" / "postfix.log").read_text()
    assert "sasl_username=bob" in postfix_log
    assert '"service":"smtp"' in audit(lab) and '"method":"webmail-session"' in audit(lab)

    # Sign-out ends the credential: it opens IMAP no more.
    page.goto(first.url + "/?_task=mail")
    page.click("a.logout")
    # the login form is back once Roundcube has run its logout (and the plugin its hook):
    # "networkidle" alone may be seen before the click's navigation has even begun
    page.wait_for_selector("#rcmloginuser", timeout=30000)
    assert not imap_ok(lab, "bob", credential, address="127.0.0.1")
    assert '"action":"webmail-session-end"' in audit(lab)

    # The trusted browser is not asked for a code again.
    assert first.sign_in(password) == "inbox"
    second_credential = first.credential()
    assert second_credential != credential

    # Account Security lists the open webmail session apart from the passcodes, and
    # ending it there signs the browser out of Roundcube at its next page.
    person = Person(browser, lab, "bob", "portal")
    assert person.sign_in() == "code"
    code, step = next_code(key, step)
    leaks.remember(code)
    person.enter_code(code)
    assert "Webmail sessions" in person.text() and "127.0.0.1" in person.text()
    person.shot("webmail-sessions")
    listed = ask(lab, {"op": "status", "user": "bob"})["status"]["webmail_sessions"]
    assert len(listed) == 1 and listed[0]["browser"] == "127.0.0.1"
    with person.page.expect_navigation():
        person.page.click("form[action='/webmail/end'] button[type=submit]")
    assert "That webmail session is ended" in person.text()
    person.context.close()
    page.goto(first.url + "/?_task=mail")
    assert first.where() == "login"
    assert not imap_ok(lab, "bob", second_credential, address="127.0.0.1")
    assert first.sign_in(password) == "inbox"
    second_credential = first.credential()

    # A password change ends the open session at its next page.
    new_password = password + "-changed"
    leaks.remember(new_password)
    ask(lab, {"op": "password-change", "user": "bob", "old": password, "new": new_password})
    page.goto(first.url + "/?_task=mail")
    assert first.where() == "login"
    assert not imap_ok(lab, "bob", second_credential, address="127.0.0.1")
    # ...and the trust went with the old password: a code again.
    assert first.sign_in(new_password) == "code"
    first.close()


def test_wrong_codes_count_and_lock_and_hostile_input_is_answered(
    lab: dict[str, Any], browser: Any
) -> None:
    password = password_of(lab, "carol")
    enrol_in_portal(browser, lab, "carol")
    carol = Webmail(browser, lab, "carol")
    assert carol.sign_in(password) == "code"

    # Hostile input on the code form: a clear message, nothing reflected, no sign-in.
    blob = carol.page.get_attribute("input[name=_twostep]", "value") or ""
    token = carol.page.get_attribute("input[name=_token]", "value") or ""
    fields = {"_task": "login", "_action": "login", "_token": token, "_twostep": blob}
    for hostile in ("1" * 5000, "12\x0034", "<script>alert(1)</script>", b"\xff\xfe12"):
        status, body = carol.post(fields | {"_code": hostile})
        assert status == 401, status
        assert "A code has only digits and letters" in body, hostile[:20]
        assert "<script>alert(1)</script>" not in body
        # each page Roundcube serves here is a new session's, with its own request token
        fields["_token"] = re.findall(r'name="_token" value="([^"]+)"', body)[0]
    assert '"user":"carol","outcome":"deny"' not in audit(lab)  # none reached twostepd

    # A tampered form state is refused, and starts over.
    _, body = carol.post(fields | {"_twostep": blob[:-8] + "AAAAAAAA", "_code": "123456"})
    assert "That took too long" in body

    # Wrong codes count towards lock-out; then the account is locked, and told so.
    ldap_modify(lab, "carol", "replace: twostepLockoutMaxFailures\ntwostepLockoutMaxFailures: 3\n")
    assert carol.sign_in(password) == "code"
    for n in range(2):
        assert carol.enter_code(f"00000{n}") == "code"
        assert "That code is not right" in carol.message()
    assert ask(lab, {"op": "status", "user": "carol"})["status"]["recent_failures"] == 2
    assert carol.enter_code("000008") == "code"  # the failure that locks: still "not right"
    assert ask(lab, {"op": "status", "user": "carol"})["status"]["locked"]
    assert carol.enter_code("000009") == "login"
    assert "locked" in carol.message()
    assert carol.sign_in(password) == "login"  # the password alone is refused too
    assert "locked" in carol.message()
    assert '"reason":"wrong-code","remote":"127.0.0.1","service":"webmail"' in audit(lab)
    carol.close()


class FakeTwostepd:
    """A socket that answers every request with ``reply`` (or closes): what the plugin
    must take as "not available", never as leave to use the password."""

    def __init__(self, directory: Path, reply: bytes | None) -> None:
        self.path = directory / f"fake-{time.time_ns()}.sock"
        self.reply = reply
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(self.path))
        os.chmod(self.path, 0o666)
        self.server.listen(8)
        self.server.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                with contextlib.suppress(OSError):
                    connection.recv(65536)
                    if self.reply is not None:
                        connection.sendall(self.reply)

    def close(self) -> None:
        self.stopping = True
        self.thread.join(5)
        self.server.close()
        self.path.unlink(missing_ok=True)


@pytest.mark.parametrize(
    "reply",
    [
        None,  # closes without a word
        b"not json\n",
        b'{"result":"error","error":"forbidden"}\n',
        b'{"result":"accept"\n',
        b'["accept"]\n',
        b'{"result":"mystery","user":"alice"}\n',
        b"",  # nothing listening: the socket is gone (below)
    ],
)
def test_a_twostepd_that_answers_oddly_signs_nobody_in(
    lab: dict[str, Any], browser: Any, reply: bytes | None
) -> None:
    """Fail closed: whatever the socket says, short of a real decision, the sign-in is
    refused as "not available", even for a user whose password alone would do."""
    settings = Path(lab["webmail_logs"]) / "site" / "plugins" / "twostep" / "config.inc.php"
    before = settings.read_text()
    fake = FakeTwostepd(Path(lab["dir"]), reply)
    if reply == b"":
        fake.close()
    try:
        settings.write_text(
            re.sub(
                r"(\$config\['twostep_socket'\] = ')[^']*",
                lambda m: m.group(1) + str(fake.path),
                before,
            )
        )
        time.sleep(2.5)  # PHP's opcache looks at a file's time at most every 2 s
        alice = Webmail(browser, lab, "alice")
        assert alice.sign_in(password_of(lab, "alice")) == "login"
        assert "Sign-in is not available at the moment" in alice.message()
        alice.close()
    finally:
        settings.write_text(before)
        fake.close()
        time.sleep(2.5)


def test_no_secret_in_any_log(lab: dict[str, Any]) -> None:
    logs = [
        p
        for p in Path(lab["dir"]).rglob("*")
        if p.is_file() and (p.suffix == ".log" or p.parent.name == "logs")
    ]
    assert any("webmail" in str(p) for p in logs)
    assert leaks.scan(logs, leaks.remembered()) == []
    for user in lab["users"]:
        assert leaks.scan(logs, [user["password"]]) == []
