"""The portal's pages through Flask's test client, against a real twostepd and slapd:
CSRF, headers, cookies, session time limits, re-authentication, hostile forms, outages,
and the lock-out it shares with every other path."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock, config_data, make_secrets_dir
from support import leaks
from support.cookies import get_cookie, set_cookie
from support.engines import engine_for
from support.flows import enroll
from support.slapd import POLICIES, USERS, Slapd
from support.stack import running_twostepd, world_readable_directory

from pam_twostep.config import Config, parse_config
from pam_twostep.core.totp import decode_secret, time_step, totp
from pam_twostep.engine import Engine
from pam_twostep.lab.twostepd import Twostepd
from pam_twostep.portal import create_app

HTTPS = "https://portal.example.org"


@pytest.fixture(scope="module")
def daemon(slapd_server: Slapd) -> Iterator[Twostepd]:
    yield from running_twostepd(
        "twostep-portal-app-",
        lambda base: config_data(slapd_server, make_secrets_dir(base / "etc")),
    )


@pytest.fixture
def config(daemon: Twostepd, slapd: Slapd) -> Config:
    daemon.reload_and_wait()  # policies are cached for 30 s: start each test afresh
    return parse_config(daemon.config)


def set_policy(daemon: Twostepd, slapd: Slapd, **attributes: list[str]) -> None:
    slapd.set_attributes(f"cn=default,{POLICIES}", **attributes)
    daemon.reload_and_wait()


@pytest.fixture
def wall() -> Clock:
    return Clock(time.time())


@pytest.fixture
def client(config: Config, wall: Clock) -> Any:
    app = create_app(config, secret_key=b"k" * 32, clock=wall)
    app.testing = True
    return app.test_client()


@pytest.fixture
def admin(config: Config) -> Iterator[Engine]:
    with engine_for(config, Clock(time.time())) as engine:
        yield engine


def csrf(client: Any, path: str = "/signin") -> str:
    page = client.get(path, base_url=HTTPS, follow_redirects=True).get_data(as_text=True)
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def post(client: Any, path: str, token: str | None = None, **form: Any) -> Any:
    leaks.remember(*(form.get(k) for k in ("password", "code", "old", "new")))
    data = {"csrf": token if token is not None else csrf(client), **form}
    return client.post(path, data=data, base_url=HTTPS)


def sign_in(client: Any, user: str = "bob") -> Any:
    return post(client, "/signin", user=user, password=USERS[user])


def key_shown(response: Any) -> bytes:
    """The new key on the page a POST /setup answered with."""
    match = re.search(r'id="key">([A-Z2-7 ]+)<', response.get_data(as_text=True))
    assert response.status_code == 200 and match, response.get_data(as_text=True)
    leaks.remember(match.group(1).replace(" ", ""))
    return decode_secret(match.group(1).replace(" ", ""))


def codes_shown(response: Any) -> list[str]:
    codes = re.findall(r"<li>(\w{5}-\w{5})</li>", response.get_data(as_text=True))
    leaks.remember(*codes)
    return codes


def trusted_again(client: Any, admin: Engine) -> tuple[bytes, list[str]]:
    """Alice enrolled; this browser trusted; signed out and in again with the password
    alone (no code asked). Returns her key and the backup codes left (one was used)."""
    key, codes = enroll(admin, time.time(), "alice")
    leaks.remember(*codes)
    sign_in(client, "alice")
    post(client, "/signin/code", code=codes[0], trust="yes")
    post(client, "/signout")
    assert sign_in(client, "alice").headers["Location"] == "/"
    return key, codes[1:]


# -- headers, cookies, CSRF -----------------------------------------------------------


def test_every_page_carries_the_security_headers(client: Any) -> None:
    for response in (client.get("/signin", base_url=HTTPS), client.get("/nothing", base_url=HTTPS)):
        headers = response.headers
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Cache-Control"] == "no-store"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["Strict-Transport-Security"].startswith("max-age=")


def test_the_session_cookie_is_host_only_secure_and_http_only(client: Any) -> None:
    response = sign_in(client)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if "__Host-twostep=" in c)
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/" in cookie and "Domain" not in cookie


@pytest.mark.parametrize("token", ["", "forged", "x" * 5000])
def test_posts_without_the_right_token_are_refused(client: Any, token: str) -> None:
    csrf(client)
    response = post(client, "/signin", token=token, user="bob", password=USERS["bob"])
    assert response.status_code == 403
    assert "Traceback" not in response.get_data(as_text=True)


def test_a_foreign_origin_is_refused_even_with_the_token(client: Any) -> None:
    token = csrf(client)
    response = client.post(
        "/signin",
        data={"csrf": token, "user": "bob", "password": USERS["bob"]},
        base_url=HTTPS,
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403


# -- signing in ---------------------------------------------------------------------


def test_password_only_while_two_step_is_off(client: Any) -> None:
    response = sign_in(client)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    page = client.get("/", base_url=HTTPS).get_data(as_text=True)
    assert "Off. Signing in asks for your password only." in page


def test_wrong_passwords_are_refused_alike_and_lock_every_path(
    client: Any, admin: Engine, slapd: Slapd, daemon: Twostepd
) -> None:
    set_policy(daemon, slapd, twostepLockoutMaxFailures=["3"])
    for user in ("bob", "nobody"):
        response = post(client, "/signin", user=user, password="wrong")
        assert response.status_code == 401
        assert "The user name or password is not right." in response.get_data(as_text=True)
    for n in range(2):
        post(client, "/signin", user="bob", password=f"wrong {n}")
    locked = sign_in(client)
    assert "locked" in locked.get_data(as_text=True)
    assert admin.status("bob").locked  # the same lock Dovecot and PAM see


def test_code_step_and_trusting_this_browser(client: Any, admin: Engine) -> None:
    key, codes = enroll(admin, time.time(), "alice")
    response = sign_in(client, "alice")
    assert response.headers["Location"] == "/signin/code"
    session = get_cookie(client, "__Host-twostep", "portal.example.org")
    assert session is not None and "password" not in session
    wrong = post(client, "/signin/code", code="000000")
    assert wrong.status_code == 401
    right = post(client, "/signin/code", code=codes[0], trust="yes", label="Work laptop")
    assert right.headers["Location"] == "/"
    device = next(c for c in right.headers.getlist("Set-Cookie") if "__Host-twostep-device" in c)
    assert "HttpOnly" in device and "SameSite=Strict" in device and "Max-Age=2592000" in device
    assert "Work laptop" in client.get("/", base_url=HTTPS).get_data(as_text=True)
    post(client, "/signout")
    assert sign_in(client, "alice").headers["Location"] == "/"  # trusted: no code
    assert totp(key, time.time())  # the key still works for the app


def test_revoking_this_device_forgets_its_cookie(client: Any, admin: Engine) -> None:
    _, codes = enroll(admin, time.time(), "alice")
    sign_in(client, "alice")
    post(client, "/signin/code", code=codes[0], trust="yes")
    device = admin.status("alice").devices[0].id
    response = post(client, "/devices/revoke", device=device)
    gone = [c for c in response.headers.getlist("Set-Cookie") if "__Host-twostep-device=;" in c]
    assert gone and admin.status("alice").devices == ()
    post(client, "/signout")
    assert sign_in(client, "alice").headers["Location"] == "/signin/code"


def test_policy_required_leads_to_setup_first(client: Any, slapd: Slapd, daemon: Twostepd) -> None:
    set_policy(daemon, slapd, twostepRequired=["TRUE"])
    response = sign_in(client)
    assert response.headers["Location"] == "/setup"
    assert client.get("/", base_url=HTTPS).headers["Location"] == "/setup"
    assert client.get("/setup", base_url=HTTPS).status_code == 200


def test_required_enrollment_from_sign_in_to_backup_codes(
    client: Any, admin: Engine, slapd: Slapd, daemon: Twostepd
) -> None:
    """M3: a user whose policy requires two-step and who has not set it up signs in, is
    sent to setup, enrolls and gets the backup codes; nothing else is open before."""
    set_policy(daemon, slapd, twostepRequired=["TRUE"])
    assert sign_in(client).headers["Location"] == "/setup"
    for path in ("/codes", "/passcodes", "/devices/revoke-others", "/disable"):
        assert post(client, path, password=USERS["bob"]).headers["Location"] == "/setup"
    form = client.get("/setup", base_url=HTTPS)
    assert form.status_code == 200 and 'name="password"' in form.get_data(as_text=True)
    wrong = post(client, "/setup", password="not the password")
    assert wrong.headers["Location"] == "/setup"
    key = key_shown(post(client, "/setup", password=USERS["bob"]))
    retry = post(client, "/setup/confirm", code="000000")
    assert retry.status_code == 400 and not admin.status("bob").enabled
    done = post(client, "/setup/confirm", code=totp(key, time.time()))
    assert done.status_code == 200 and len(codes_shown(done)) == 10
    page = client.get("/", base_url=HTTPS)
    assert page.status_code == 200
    assert "On. Signing in asks for your password and a code" in page.get_data(as_text=True)
    assert admin.status("bob").enabled and admin.status("bob").backup_codes == 10


def test_grace_periods_are_shown_with_their_dates(
    client: Any, admin: Engine, slapd: Slapd, daemon: Twostepd
) -> None:
    """Issue 18: before ``required_from`` the user signs in to Account Security (not to
    setup) and reads the date; once on, the page says until when mail takes the password."""
    ahead = time.gmtime(time.time() + 3 * 86400)
    day, stored = time.strftime("%Y-%m-%d", ahead), time.strftime("%Y%m%d000000Z", ahead)
    set_policy(
        daemon,
        slapd,
        twostepRequired=["TRUE"],
        twostepRequiredFrom=[stored],
        twostepMailPasswordUntil=[stored],
    )
    assert sign_in(client).headers["Location"] == "/"
    page = client.get("/", base_url=HTTPS).get_data(as_text=True)
    assert f"requires two-step verification from\n    <strong>{day}</strong>" in page
    assert "mail-password-until" not in page  # two-step is off: mail takes it anyway
    _, codes = enroll(admin, time.time(), "bob")  # which signs the portal session out
    leaks.remember(*codes)
    sign_in(client)
    assert post(client, "/signin/code", code=codes[0]).headers["Location"] == "/"
    page = client.get("/", base_url=HTTPS).get_data(as_text=True)
    assert "required-from" not in page
    assert f'id="mail-password-until">Until <strong>{day}</strong>' in page
    assert 'href="/disable"' in page  # not required yet: it may be turned off again
    ended = post(client, "/mail-password/end")
    assert ended.headers["Location"] == "/"
    page = client.get("/", base_url=HTTPS).get_data(as_text=True)
    assert "no longer signs your mail programs in" in page
    assert "mail-password-until" not in page
    again = post(client, "/mail-password/end")  # nothing left to end: said, not an error
    assert again.headers["Location"] == "/"
    assert "already refuse" in client.get("/", base_url=HTTPS).get_data(as_text=True)


def test_the_password_on_a_trusted_browser_cannot_replace_the_authenticator(
    client: Any, admin: Engine
) -> None:
    """H1: the password and a once-trusted browser (no code asked) got a new key, new
    backup codes and a passcode at once. Now the page's own form, token and all, is
    refused without a code of the current key, and nothing is written."""
    key, codes = trusted_again(client, admin)
    token = csrf(client, "/")
    begun = post(client, "/setup", token, password=USERS["alice"])
    assert (begun.status_code, begun.headers.get("Location")) == (302, "/setup")
    assert "otpauth" not in begun.get_data(as_text=True)
    forged = post(client, "/setup", token, password=USERS["alice"], code="000000")
    assert forged.headers["Location"] == "/setup"
    confirmed = post(client, "/setup/confirm", token, code=totp(key, time.time()))
    assert confirmed.status_code == 400
    assert post(client, "/passcodes", token, label="Mine").headers["Location"].startswith("/reauth")
    status = admin.status("alice")
    assert status.pending_expires is None and status.passcodes == ()
    assert status.backup_codes == len(codes)  # the owner's codes all still work
    assert status.recent_failures == 1  # the made-up code counted towards the lock-out


def test_a_stolen_session_cookie_cannot_replace_the_authenticator(
    config: Config, client: Any, admin: Engine, wall: Clock
) -> None:
    """H1: even a session that has just given a code, copied into another browser, begins
    no new key with the password alone."""
    _, codes = enroll(admin, time.time(), "alice")
    sign_in(client, "alice")
    post(client, "/signin/code", code=codes[0])
    stolen = get_cookie(client, "__Host-twostep", "portal.example.org")
    assert stolen is not None
    thief = create_app(config, secret_key=b"k" * 32, clock=wall).test_client()
    set_cookie(thief, "__Host-twostep", stolen, "portal.example.org")
    begun = post(thief, "/setup", csrf(thief, "/"), password=USERS["alice"])
    assert (begun.status_code, begun.headers.get("Location")) == (302, "/setup")
    assert admin.status("alice").pending_expires is None


def test_replacing_the_authenticator_takes_a_code_given_now_and_is_no_reauthentication(
    client: Any, admin: Engine
) -> None:
    """The owner moving to a new phone: password and a code (or backup code) of the key
    in use, on the page itself; and a new key confirmed opens no sensitive change."""
    _, codes = trusted_again(client, admin)
    form = client.get("/setup", base_url=HTTPS)
    assert form.status_code == 200 and 'name="code"' in form.get_data(as_text=True)
    new_key = key_shown(post(client, "/setup", password=USERS["alice"], code=codes[0]))
    done = post(client, "/setup/confirm", code=totp(new_key, time.time()))
    new_codes = codes_shown(done)
    assert len(new_codes) == 10 and set(new_codes).isdisjoint(codes)
    assert post(client, "/passcodes", label="Phone").headers["Location"].startswith("/reauth")
    assert admin.status("alice").passcodes == ()
    assert admin.status("alice").backup_codes == 10


def test_revoking_other_devices_with_a_stale_device_cookie(client: Any, admin: Engine) -> None:
    """L5: this browser's device was revoked elsewhere; "Revoke all other devices" still
    revokes the others, forgets the stale cookie and answers a page, not a 500."""
    _, codes = enroll(admin, time.time(), "alice")
    leaks.remember(*codes)
    sign_in(client, "alice")
    post(client, "/signin/code", code=codes[0], trust="yes")
    mine = admin.status("alice").devices[0].id
    other = client.application.test_client()
    sign_in(other, "alice")
    post(other, "/signin/code", code=codes[1], trust="yes")
    admin.revoke_device("alice", mine)
    response = post(client, "/devices/revoke-others")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    gone = [c for c in response.headers.getlist("Set-Cookie") if "__Host-twostep-device=;" in c]
    assert gone and admin.status("alice").devices == ()
    page = client.get("/", base_url=HTTPS).get_data(as_text=True)
    assert "Every other device will be asked for a code again." in page


@pytest.mark.parametrize(
    "cookie",
    ["garbage", "x" * 100 + ".y", "abcdefgh.tooshort", "2222222a." + "A" * 43, ".", "\u00e9.x"],
)
def test_hostile_device_cookies_are_no_device(client: Any, cookie: str) -> None:
    sign_in(client)
    set_cookie(client, "__Host-twostep-device", cookie, "portal.example.org")
    assert client.get("/", base_url=HTTPS).status_code == 200
    response = post(client, "/devices/revoke-others")
    assert response.status_code == 302 and response.headers["Location"] == "/"


# -- sessions ---------------------------------------------------------------------------


def test_an_idle_session_ends(client: Any, config: Config, wall: Clock) -> None:
    sign_in(client)
    wall.advance(config.portal.idle_timeout - 5)
    assert client.get("/", base_url=HTTPS).status_code == 200
    wall.advance(config.portal.idle_timeout + 1)
    response = client.get("/", base_url=HTTPS)
    assert response.headers["Location"] == "/signin"


def test_a_used_session_still_ends_after_its_lifetime(
    client: Any, config: Config, wall: Clock
) -> None:
    sign_in(client)
    for _ in range(config.portal.session_lifetime // 600 + 1):
        wall.advance(600)
        response = client.get("/", base_url=HTTPS)
    assert response.headers["Location"] == "/signin"


def test_sensitive_changes_need_a_recent_password_and_code(
    client: Any, admin: Engine, config: Config, wall: Clock
) -> None:
    key, codes = enroll(admin, time.time(), "alice")
    sign_in(client, "alice")
    post(client, "/signin/code", code=codes[0])
    wall.advance(config.portal.reauth_window + 1)
    response = post(client, "/passcodes", label="Phone")
    assert response.headers["Location"].startswith("/reauth")
    assert admin.status("alice").passcodes == ()
    wrong = post(client, "/reauth", password=USERS["alice"], code="000000", next="/")
    assert wrong.headers["Location"].startswith("/reauth")
    right = post(client, "/reauth", password=USERS["alice"], code=codes[1], next="//evil.example")
    assert right.headers["Location"] == "/"
    made = post(client, "/passcodes", label="Phone")
    assert made.status_code == 200 and "Application passcode for Phone" in made.get_data(True)
    assert [p.label for p in admin.status("alice").passcodes] == ["Phone"]
    assert time_step(time.time(), 30) and key


def test_disable_asks_password_and_code(client: Any, admin: Engine) -> None:
    _, codes = enroll(admin, time.time(), "alice")
    sign_in(client, "alice")
    post(client, "/signin/code", code=codes[0])
    refused = post(client, "/disable", password=USERS["alice"], code="123456")
    assert refused.headers["Location"] == "/disable"
    assert admin.status("alice").enabled
    done = post(client, "/disable", password=USERS["alice"], code=codes[1])
    assert done.headers["Location"] == "/"
    assert not admin.status("alice").enabled


# -- hostile forms and outages ------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"user": "bob", "password": "x" * 2000}, 400),
        ({"user": "b\0ob", "password": "x"}, 400),
        ({"user": "x" * 300, "password": "x"}, 400),
        ({"user": "*)(uid=*", "password": USERS["bob"]}, 401),
        ({"user": "", "password": ""}, 400),
        ({"password": "x"}, 400),
    ],
)
def test_hostile_sign_in_forms(client: Any, form: dict[str, str], status: int) -> None:
    response = post(client, "/signin", **form)
    assert response.status_code == status
    assert "Traceback" not in response.get_data(as_text=True)


def test_oversized_bodies_are_refused(client: Any) -> None:
    response = post(client, "/signin", user="bob", password="x" * 100_000)
    assert response.status_code == 413


def test_multipart_bodies_of_many_parts_are_refused(client: Any) -> None:
    """64 parts at most, on every Flask (2.2 ignores MAX_FORM_PARTS in the config)."""
    token = csrf(client)
    fields = {"csrf": token, "user": "bob", "password": "x"}
    fields |= {f"f{i}": "x" for i in range(100)}
    response = client.post(
        "/signin", data=fields, content_type="multipart/form-data", base_url=HTTPS
    )
    assert response.status_code == 413


def test_pages_for_signed_in_users_send_others_to_sign_in(client: Any) -> None:
    for path in ("/", "/setup", "/password", "/disable", "/reauth"):
        assert client.get(path, base_url=HTTPS).headers["Location"] == "/signin"
    assert post(client, "/codes").headers["Location"] == "/signin"


def test_twostepd_down_is_a_page_that_says_try_again(config: Config, tmp_path: Path) -> None:
    import dataclasses

    daemonless = dataclasses.replace(
        config, daemon=dataclasses.replace(config.daemon, socket=tmp_path / "none.sock")
    )
    app = create_app(daemonless, secret_key=b"k" * 32)
    client = app.test_client()
    response = post(client, "/signin", user="bob", password=USERS["bob"])
    assert response.status_code == 503
    text = response.get_data(as_text=True)
    assert "try again in a moment" in text and "sock" not in text


def test_a_throttled_sign_in_says_so_rather_than_wrong_password(client: Any) -> None:
    for n in range(5):
        post(client, "/signin", user="bob", password=f"not it {n}")
    response = post(client, "/signin", user="bob", password=USERS["bob"])
    assert response.status_code == 401
    assert "Too many failed sign-ins from your network" in response.get_data(as_text=True)


def test_required_enrollment_with_the_name_typed_in_capitals(
    client: Any, slapd: Slapd, daemon: Twostepd
) -> None:
    """The session is the entry's own name ("bob"), whatever case was typed ("Bob", as a
    phone's keyboard capitalizes it): setup opens instead of sending back to sign-in."""
    set_policy(daemon, slapd, twostepRequired=["TRUE"])
    response = post(client, "/signin", user="Bob", password=USERS["bob"])
    assert response.headers["Location"] == "/setup"
    assert client.get("/setup", base_url=HTTPS).status_code == 200


def test_a_portal_run_as_an_administrator_opens_no_session(
    slapd_server: Slapd, slapd: Slapd, wall: Clock
) -> None:
    """A portal whose identity is in daemon.manage but not daemon.self_service gets no
    session proof: its sessions could not be ended and would run with admin rights, so
    none is opened (fail closed), whatever the password."""
    base = world_readable_directory("twostep-portal-admin-")
    data = config_data(
        slapd_server, make_secrets_dir(base / "etc"), daemon={"self_service": {"users": []}}
    )
    instance = Twostepd(base / "daemon", data)
    instance.start()
    try:
        app = create_app(parse_config(instance.config), secret_key=b"k" * 32, clock=wall)
        app.testing = True
        client = app.test_client()
        response = post(client, "/signin", user="bob", password=USERS["bob"])
        assert response.status_code == 503
        assert "not set up on this server" in response.get_data(as_text=True)
        assert client.get("/", base_url=HTTPS).headers["Location"].endswith("/signin")
    finally:
        instance.stop()
