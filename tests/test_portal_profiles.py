"""The portal's one-time mail set-up downloads (portal.profiles, issue 18), through the
real portal against a real twostepd and slapd: offered only with ``mail_settings`` and a
passcode that covers IMAP and SMTP, downloadable once, by the session that made it,
within ten minutes, never with a traceback; and, with the lab's Dovecot and Postfix, the
credentials in both files open IMAP and SMTP AUTH."""

from __future__ import annotations

import plistlib
import re
import smtplib
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Clock, config_data, make_secrets_dir
from support import leaks
from support.engines import engine_for
from support.flows import enroll
from support.slapd import USERS, Slapd
from support.stack import (
    MailStack,
    running_stack,
    running_twostepd,
    source,
)

from pam_twostep.config import Config, parse_config
from pam_twostep.engine import Engine
from pam_twostep.lab.dovecot import SourceIMAP
from pam_twostep.lab.twostepd import Twostepd
from pam_twostep.portal import create_app
from pam_twostep.portal.profiles import LIFETIME, Handoffs

HTTPS = "https://portal.example.org"
MAIL_SETTINGS = {
    "address": "{user}@example.org",
    "display_name": "Example Mail",
    "imap": {"host": "imap.example.org"},
    "smtp": {"host": "smtp.example.org", "security": "starttls"},
}
GONE = "can be downloaded only once"


@pytest.fixture(scope="module")
def daemon(slapd_server: Slapd) -> Iterator[Twostepd]:
    yield from running_twostepd(
        "twostep-portal-profiles-",
        lambda base: config_data(slapd_server, make_secrets_dir(base / "etc")),
    )


@pytest.fixture
def config(daemon: Twostepd, slapd: Slapd) -> Config:
    daemon.reload_and_wait()
    return parse_config({**daemon.config, "mail_settings": MAIL_SETTINGS})


@pytest.fixture
def wall() -> Clock:
    return Clock(time.time())


@pytest.fixture
def app(config: Config, wall: Clock) -> Any:
    """One portal process: every client below shares its memory, as browsers would."""
    made = create_app(config, secret_key=b"k" * 32, clock=wall)
    made.testing = True
    return made


@pytest.fixture
def admin(config: Config) -> Iterator[Engine]:
    with engine_for(config, Clock(time.time())) as engine:
        yield engine


@pytest.fixture
def codes(admin: Engine) -> list[str]:
    """Alice enrolled; her backup codes (each signs one browser in)."""
    _, fresh = enroll(admin, time.time(), "alice")
    leaks.remember(*fresh)
    return fresh


def csrf(client: Any, path: str = "/signin") -> str:
    page = client.get(path, base_url=HTTPS, follow_redirects=True).get_data(as_text=True)
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def post(client: Any, path: str, token: str | None = None, **form: Any) -> Any:
    leaks.remember(*(form.get(k) for k in ("password", "code")))
    data = {"csrf": token if token is not None else csrf(client), **form}
    return client.post(path, data=data, base_url=HTTPS)


def signed_in(app: Any, code: str, user: str = "alice") -> Any:
    """A new browser, signed in as ``user`` with a backup code (so recently, too)."""
    client = app.test_client()
    assert post(client, "/signin", user=user, password=USERS[user]).status_code == 302
    if user == "alice":
        assert post(client, "/signin/code", code=code).headers["Location"] == "/"
    return client


def new_passcode(client: Any, label: str = "iPhone", **form: Any) -> tuple[str, str | None]:
    """POST /passcodes: the passcode shown, and the download handle offered (or None)."""
    page = post(client, "/passcodes", label=label, **form)
    text = page.get_data(as_text=True)
    assert page.status_code == 200, text
    shown = re.search(r'id="passcode">([A-Z0-9 ]+)<', text)
    assert shown, text
    passcode = shown.group(1).replace(" ", "")
    leaks.remember(passcode)
    handle = re.search(r'name="handle" value="([^"]+)"', text)
    if handle is None:
        assert "/passcodes/download" not in text
        return passcode, None
    assert 'value="apple"' in text and 'value="thunderbird"' in text
    assert passcode not in handle.group(1) and "?" not in text.split("/passcodes/download")[1][:2]
    return passcode, handle.group(1)


def download(client: Any, handle: str, kind: str = "apple", token: str | None = None) -> Any:
    return post(client, "/passcodes/download", token, handle=handle, format=kind)


def refused(response: Any) -> None:
    text = response.get_data(as_text=True)
    assert response.status_code == 410, text
    assert GONE in text and "Create a new passcode" in text
    assert "Traceback" not in text and "Content-Disposition" not in response.headers


# -- the downloads ----------------------------------------------------------------------


def test_the_profile_downloads_once_with_the_new_passcode(app: Any, codes: list[str]) -> None:
    client = signed_in(app, codes[0])
    passcode, handle = new_passcode(client, "Work iPhone")
    assert handle
    response = download(client, handle, "apple")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-apple-aspen-config"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="mail-Work-iPhone.mobileconfig"'
    )
    profile = plistlib.loads(response.get_data())
    (mail,) = profile["PayloadContent"]
    assert mail["IncomingPassword"].replace("-", "").upper() == passcode
    assert mail["IncomingMailServerUsername"] == "alice"
    assert mail["EmailAddress"] == "alice@example.org"
    assert "Work iPhone" in profile["PayloadDisplayName"]
    # once in all: neither format again, nor the same one
    refused(download(client, handle, "apple"))
    refused(download(client, handle, "thunderbird"))


def test_the_autoconfig_file_downloads_and_then_nothing(app: Any, codes: list[str]) -> None:
    client = signed_in(app, codes[0])
    passcode, handle = new_passcode(client, "Laptop")
    assert handle
    response = download(client, handle, "thunderbird")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/xml"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Disposition"].startswith("attachment; ")
    root = ET.fromstring(response.get_data())  # noqa: S314 - our own portal's answer
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    assert root.findtext("emailProvider/incomingServer/password", "").replace("-", "") == passcode
    assert root.findtext("emailProvider/outgoingServer/socketType") == "STARTTLS"
    refused(download(client, handle, "apple"))


def test_another_session_is_refused_and_the_owner_still_gets_it(
    app: Any, codes: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    owner = signed_in(app, codes[0])
    _, handle = new_passcode(owner)
    assert handle
    same_user_elsewhere = signed_in(app, codes[1])
    with caplog.at_level("INFO"):
        refused(download(same_user_elsewhere, handle))
    assert "of another session" in caplog.text
    bob = signed_in(app, "", "bob")
    refused(download(bob, handle))
    # the owner's form token in another browser is a forged request
    assert download(same_user_elsewhere, handle, token=csrf(owner, "/")).status_code == 403
    assert download(owner, handle).status_code == 200


def test_signed_out_browsers_get_nothing(app: Any, codes: list[str]) -> None:
    client = signed_in(app, codes[0])
    _, handle = new_passcode(client)
    assert handle
    post(client, "/signout")
    response = download(client, handle)
    assert response.status_code == 302 and response.headers["Location"] == "/signin"


def test_ten_minutes_and_it_is_gone(app: Any, codes: list[str], wall: Clock) -> None:
    client = signed_in(app, codes[0])
    _, handle = new_passcode(client)
    assert handle
    wall.advance(LIFETIME + 1)
    refused(download(client, handle))


def test_a_passcode_revoked_meanwhile_is_not_handed_out(
    app: Any, codes: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    client = signed_in(app, codes[0])
    _, handle = new_passcode(client, "Tablet")
    assert handle
    post(client, "/passcodes/revoke", label="Tablet")
    with caplog.at_level("INFO"):
        refused(download(client, handle))
    assert "the passcode was revoked" in caplog.text


@pytest.mark.parametrize(
    "handle",
    ["", "x", "x" * 43, "é" * 43, "../../etc/passwd", "x" * 5000, "A" * 42 + "\0", "<script>"],
)
def test_malformed_handles_are_refused_plainly(app: Any, codes: list[str], handle: str) -> None:
    client = signed_in(app, codes[0])
    new_passcode(client)
    refused(download(client, handle))


@pytest.mark.parametrize("kind", ["", "windows", "apple\0", "x" * 3000])
def test_unknown_formats_are_a_bad_request_that_spends_nothing(
    app: Any, codes: list[str], kind: str
) -> None:
    client = signed_in(app, codes[0])
    _, handle = new_passcode(client)
    assert handle
    response = download(client, handle, kind)
    assert response.status_code == 400 and "Traceback" not in response.get_data(as_text=True)
    assert download(client, handle).status_code == 200


def test_a_download_needs_the_csrf_token(app: Any, codes: list[str]) -> None:
    client = signed_in(app, codes[0])
    _, handle = new_passcode(client)
    assert handle
    assert download(client, handle, token="forged").status_code == 403
    response = client.post(
        "/passcodes/download",
        data={"csrf": csrf(client, "/"), "handle": handle, "format": "apple"},
        base_url=HTTPS,
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert download(client, handle).status_code == 200


def test_no_buttons_for_a_passcode_the_files_could_not_use(app: Any, codes: list[str]) -> None:
    client = signed_in(app, codes[0])
    assert new_passcode(client, "Reader", services=["imap"])[1] is None
    assert new_passcode(client, "Poller", services=["pop3"])[1] is None
    assert new_passcode(client, "Both", services=["imap", "smtp"])[1] is not None


def test_no_buttons_without_mail_settings(daemon: Twostepd, slapd: Slapd, wall: Clock) -> None:
    daemon.reload_and_wait()
    bare = create_app(parse_config(daemon.config), secret_key=b"k" * 32, clock=wall)
    bare.testing = True
    with engine_for(parse_config(daemon.config), Clock(time.time())) as admin:
        _, fresh = enroll(admin, time.time(), "alice")
    leaks.remember(*fresh)
    client = signed_in(bare, fresh[0])
    assert new_passcode(client)[1] is None
    refused(download(client, "x" * 43))


def test_nothing_secret_reaches_the_log(
    app: Any, codes: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    client = signed_in(app, codes[0])
    passcode, handle = new_passcode(client)
    assert handle
    with caplog.at_level("DEBUG"):
        download(client, handle)
        download(client, handle)
    logged = caplog.text
    assert handle not in logged and passcode not in logged
    assert passcode.lower() not in logged.replace("-", "").lower()


# -- the handoff on its own -------------------------------------------------------------


def test_handles_are_capped_per_user_and_in_all() -> None:
    clock = Clock()
    handoffs = Handoffs(clock)
    alice = [handoffs.offer("alice", "s1", f"p{n}", "L", f"id{n}") for n in range(6)]
    assert len(handoffs) == 4
    assert handoffs.take(alice[0], "alice", "s1") is None  # the oldest went first
    held = handoffs.take(alice[5], "alice", "s1")
    assert held is not None and held.passcode == "p5"
    assert "p5" not in repr(held) and "s1" not in repr(held)
    others = [handoffs.offer(f"user{n}", "s", "p", "L", "id") for n in range(300)]
    assert len(handoffs) == 256
    # full: new pages offer no download; nobody's waiting one is pushed out
    assert others[-1] is None and others[252] is not None
    waiting = alice[4]
    assert waiting is not None
    held = handoffs.take(waiting, "alice", "s1")
    assert held is not None and held.passcode == "p4"


def test_a_handle_is_taken_by_one_of_many_at_once() -> None:
    handoffs = Handoffs(Clock())
    handle = handoffs.offer("alice", "s1", "p", "L", "id")
    won: list[object] = []
    start = threading.Barrier(8)

    def attempt() -> None:
        start.wait()
        held = handoffs.take(handle, "alice", "s1")
        if held is not None:
            won.append(held)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1


def test_a_wrong_session_does_not_spend_the_handle_but_time_does() -> None:
    clock = Clock()
    handoffs = Handoffs(clock)
    handle = handoffs.offer("alice", "s1", "p", "L", "id")
    assert handoffs.take(handle, "alice", "s2") is None
    assert handoffs.take(handle, "bob", "s1") is None
    clock.advance(LIFETIME - 1)
    assert handoffs.take(handle, "alice", "s1") is not None
    late = handoffs.offer("alice", "s1", "p", "L", "id")
    clock.advance(LIFETIME)
    assert handoffs.take(late, "alice", "s1") is None and len(handoffs) == 0


# -- the files' credentials against the lab's Dovecot and Postfix ------------------------


@pytest.fixture(scope="module")
def mail(slapd_server: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailStack]:
    secrets = make_secrets_dir(tmp_path_factory.mktemp("profiles-mail") / "etc")
    yield from running_stack(config_data(slapd_server, secrets), "lua")


def test_both_files_open_imap_and_smtp_auth(mail: MailStack, slapd: Slapd) -> None:
    config = parse_config(
        {
            **mail.daemon.config,
            "mail_settings": {
                "address": "{user}@example.org",
                "imap": {"host": "127.0.0.1", "port": mail.dovecot.imap_port, "security": "none"},
                "smtp": {"host": "127.0.0.1", "port": mail.postfix.port, "security": "none"},
            },
        }
    )
    portal = create_app(config, secret_key=b"k" * 32)
    portal.testing = True
    with engine_for(config, Clock(time.time())) as admin:
        _, fresh = enroll(admin, time.time(), "alice")
    leaks.remember(*fresh)
    client = signed_in(portal, fresh[0])

    _, apple_handle = new_passcode(client, "iPhone")
    _, thunderbird_handle = new_passcode(client, "Thunderbird")
    assert apple_handle and thunderbird_handle
    (account,) = plistlib.loads(download(client, apple_handle, "apple").get_data())[
        "PayloadContent"
    ]
    autoconfig = download(client, thunderbird_handle, "thunderbird").get_data()
    server = ET.fromstring(autoconfig)[0]  # noqa: S314 - our own portal's answer
    logins = [
        (
            (account["IncomingMailServerHostName"], account["IncomingMailServerPortNumber"]),
            (account["IncomingMailServerUsername"], account["IncomingPassword"]),
            (account["OutgoingMailServerHostName"], account["OutgoingMailServerPortNumber"]),
            (account["OutgoingMailServerUsername"], account["OutgoingPassword"]),
        ),
        (
            (server.findtext("incomingServer/hostname"), server.findtext("incomingServer/port")),
            (
                server.findtext("incomingServer/username"),
                server.findtext("incomingServer/password"),
            ),
            (server.findtext("outgoingServer/hostname"), server.findtext("outgoingServer/port")),
            (
                server.findtext("outgoingServer/username"),
                server.findtext("outgoingServer/password"),
            ),
        ),
    ]
    for (imap_host, imap_port), imap_login, (smtp_host, smtp_port), smtp_login in logins:
        assert imap_host == smtp_host == "127.0.0.1"
        imap = SourceIMAP(str(imap_host), int(str(imap_port)), source())
        try:
            assert imap.login(str(imap_login[0]), str(imap_login[1]))[0] == "OK"
        finally:
            imap.logout()
        with smtplib.SMTP(
            str(smtp_host), int(str(smtp_port)), timeout=30, source_address=(source(), 0)
        ) as smtp:
            smtp.ehlo("client.test")
            assert smtp.login(str(smtp_login[0]), str(smtp_login[1]))[0] == 235
    # and the account's own password is not what they carry
    refused_imap = SourceIMAP("127.0.0.1", mail.dovecot.imap_port, source())
    try:
        with pytest.raises(SourceIMAP.error):
            refused_imap.login("alice", USERS["alice"])
    finally:
        refused_imap.logout()
