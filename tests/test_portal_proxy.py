"""The portal as it is deployed: behind Debian's nginx terminating TLS on loopback, with a
certificate from the lab's CA, proxying to the portal's UNIX socket with
``portal.trusted_proxies: 1`` (issue 14 M2).

Before, waitress deleted every X-Forwarded-* header (``clear_untrusted_proxy_headers``
without a ``trusted_proxy``) before the application could read them: behind the proxy
every form was refused for its ``Origin: https://...`` (403), and every attempt was
recorded from 127.0.0.1, so one success cleared every attacker's failures. Here the
browser story runs through nginx over HTTPS in headless Chromium; a sign-in sent from a
chosen loopback address is audited from that address; forwarded headers sent to nginx
by the browser are not believed.

Later, the portal listened on loopback TCP and believed X-Forwarded-* from any peer at
127.0.0.1: any local user could connect like nginx and choose the address their
sign-ins were decided, throttled and audited by. Now the headers are believed only on a
UNIX socket only nginx's group may open (``trusted_proxies`` with a TCP listen is a
configuration error), and a local user such as ``nobody`` cannot connect at all.
"""

from __future__ import annotations

import errno
import grp
import imaplib
import json
import os
import plistlib
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from support import leaks
from support.browser import CHROMIUM, Person, chromium, next_code
from support.portal_client import Client
from support.stack import LAB_INFO_KEYS, world_readable_directory

from pam_twostep.config import Config, PortalConfig, parse_config
from pam_twostep.core.errors import ConfigError
from pam_twostep.lab.nginx import NGINX
from pam_twostep.lab.portal import Portal
from pam_twostep.lab.processes import free_port, stop_group
from pam_twostep.lab.stack import Lab
from pam_twostep.portal.server import make_server, proxy_options

# the command installed beside the interpreter running the tests (.venv's, or another venv's)
TWOSTEP = str(Path(sys.executable).with_name("twostep"))

needs_nginx = pytest.mark.skipif(not Path(NGINX).exists(), reason="Debian's nginx is not installed")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, Any]]:
    instance = Lab(world_readable_directory("twostep-proxy-") / "lab")
    info = instance.up(tls_proxy=True)
    pids = dict(json.loads(instance.state_path.read_text())["pids"])
    yield info
    assert "nginx" in instance.down()
    assert not alive(pids["nginx"]) and not alive(pids["portal"])


def password(lab: dict[str, Any], user: str) -> str:
    secret = str(next(u["password"] for u in lab["users"] if u["name"] == user))
    leaks.remember(secret)
    return secret


def logins(lab: dict[str, Any], user: str) -> list[dict[str, Any]]:
    path = Path(lab["audit_log"])
    lines = path.read_text().splitlines() if path.exists() else []
    events = [json.loads(line) for line in lines]
    return [e for e in events if e.get("action") == "login" and e.get("user") == user]


def last_login(lab: dict[str, Any], user: str, after: int) -> dict[str, Any]:
    """The newest sign-in event of ``user`` beyond the first ``after`` ones."""
    deadline = time.monotonic() + 5
    while len(found := logins(lab, user)) <= after and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(found) > after, f"no new sign-in of {user} audited"
    return found[-1]


# -- waitress's proxy settings ----------------------------------------------------------


def test_proxy_headers_are_believed_on_a_unix_socket_alone() -> None:
    """waitress reports every peer of a UNIX socket as ``localhost``: the peers are
    those that may open the socket file. Over TCP, any local user is a peer at
    127.0.0.1 like the proxy, so trust is refused there, loopback or not."""
    assert "trusted_proxy" not in proxy_options(PortalConfig())
    socket_path = Path("/run/twostep-portal/portal.sock")
    options = proxy_options(PortalConfig(listen=socket_path, trusted_proxies=1))
    assert options["trusted_proxy"] == "localhost" and options["trusted_proxy_count"] == 1
    assert options["trusted_proxy_headers"] == {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    }
    assert options["clear_untrusted_proxy_headers"] is True
    assert (
        proxy_options(PortalConfig(listen=socket_path, trusted_proxies=2))["trusted_proxy_count"]
        == 2
    )
    assert "trusted_proxy" not in proxy_options(PortalConfig(listen=socket_path))
    for host in ("127.0.0.1", "::1", "0.0.0.0", "192.0.2.10", "localhost"):  # noqa: S104
        with pytest.raises(ConfigError, match=r"unix:/run/twostep-portal/portal\.sock"):
            proxy_options(PortalConfig(listen=(host, 8080), trusted_proxies=1))


def test_the_unix_socket_is_made_for_its_group(tmp_path: Path) -> None:
    """Its group is resolved at start (a missing one is a configuration error); a stale
    socket is replaced and any other file in the way is left alone."""
    path = tmp_path / "portal.sock"
    group = grp.getgrgid(os.getgid()).gr_name if os.getuid() else "www-data"

    def config(group: str) -> Config:
        return parse_config(
            {
                "ldap": {
                    "uris": ["ldap://127.0.0.1/"],
                    "bind_dn": "cn=twostep,dc=example,dc=org",
                    "bind_password_file": "/etc/twostep/ldap.secret",
                },
                "users": {"base": "ou=people,dc=example,dc=org"},
                "keys": {"current": "k1"},
                "portal": {"listen": f"unix:{path}", "trusted_proxies": 1, "socket_group": group},
            }
        )

    app = Flask("stub")
    with pytest.raises(ConfigError, match=r"portal\.socket_group: no group named 'no-such-grp'"):
        make_server(config("no-such-grp"), app)
    assert not path.exists()
    path.write_text("not a socket")
    with pytest.raises(OSError, match="in use"):
        make_server(config(group), app)
    assert path.read_text() == "not a socket"
    path.unlink()
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))
    server = make_server(config(group), app)
    try:
        status = path.stat()
        assert stat.S_ISSOCK(status.st_mode) and stat.S_IMODE(status.st_mode) == 0o660
        assert status.st_gid == grp.getgrnam(group).gr_gid
        assert server.adj.trusted_proxy == "localhost"
    finally:
        server.close()


# -- through nginx -----------------------------------------------------------------------


@needs_nginx
def test_a_sign_in_through_nginx_with_the_browsers_origin_is_accepted(
    lab: dict[str, Any],
) -> None:
    """The 403 of M2: the browser's Origin is https://..., which the portal now sees."""
    client = Client(lab["portal_url"], "127.0.0.6", lab["portal_ca"])
    status, headers = client.sign_in("bob", password(lab, "bob"), Origin=lab["portal_url"])
    assert status == 302 and headers["Location"] == "/", status
    assert "__Host-twostep" in client.cookies
    status, _, page = client.request("GET", "/")
    assert status == 200 and "Account Security" in page
    # The Origin check still works behind the proxy: a foreign one is refused, and a
    # forwarded host the browser makes up is not the proxy's.
    stranger = Client(lab["portal_url"], "127.0.0.6", lab["portal_ca"])
    status, _ = stranger.sign_in("bob", "x", Origin="https://evil.example")
    assert status == 403
    status, _ = stranger.sign_in(
        "bob", "x", Origin="https://evil.example", X_Forwarded_Host="evil.example"
    )
    assert status == 403


@needs_nginx
def test_a_sign_in_is_audited_from_the_address_nginx_forwarded(lab: dict[str, Any]) -> None:
    """Not 127.0.0.1 (nginx's own address), and not what the browser wrote in
    X-Forwarded-For: nginx replaces that with the peer it saw. (No Origin on the first
    attempt, as from a script: the old code then answered, from 127.0.0.1.)"""
    secret = password(lab, "bob")
    before = len(logins(lab, "bob"))
    client = Client(lab["portal_url"], "127.0.0.7", lab["portal_ca"])
    status, _ = client.sign_in("bob", secret + "-wrong", X_Forwarded_For="203.0.113.7")
    assert status == 401
    event = last_login(lab, "bob", before)
    assert (event["outcome"], event["remote"]) == ("deny", "127.0.0.7"), event
    status, _ = client.sign_in("bob", secret, Origin=lab["portal_url"])
    assert status == 302
    event = last_login(lab, "bob", before + 1)
    assert (event["outcome"], event["remote"]) == ("accept", "127.0.0.7"), event
    access = Path(lab["nginx_access_log"]).read_text()
    assert "127.0.0.7 [" in access and '"POST /signin" 302' in access
    assert secret not in access and "csrf" not in access  # no form body, no query


def connect_as_nobody(path: str) -> str:
    """The errno name (or "connected") of uid and gid nobody, no other group, connecting
    to the UNIX socket ``path``."""
    probe = (
        "import errno, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try: s.connect(sys.argv[1])\n"
        "except OSError as e: print(errno.errorcode[e.errno])\n"
        "else: print('connected')\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe, path],
        user=65534,
        group=65534,
        extra_groups=[],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.strip()


@needs_nginx
@pytest.mark.skipif(os.getuid() != 0, reason="becoming nobody needs root")
def test_a_local_user_cannot_reach_the_portal_behind_nginx(lab: dict[str, Any]) -> None:
    """Where X-Forwarded-* is believed, another local user cannot connect at all; and
    the portal cannot be made to believe them over TCP instead."""
    path = lab["portal_backend"].removeprefix("unix:")
    status = os.stat(path)
    assert status.st_mode & 0o777 == 0o660
    assert status.st_gid == grp.getgrnam("www-data").gr_gid  # the lab's nginx workers'
    assert connect_as_nobody(path) == errno.errorcode[errno.EACCES]
    # root (and nginx's group) may: the proxy is believed, the browser's X-Forwarded-*
    # having been replaced by nginx, above.
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
    # The same configuration with a TCP listen is refused at start, naming the fix.
    refused = subprocess.run(
        [
            TWOSTEP,
            "portal",
            "--config",
            lab["config"],
            "--listen",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert refused.returncode == 78, refused.stderr
    assert "portal.trusted_proxies: refused with portal.listen on TCP" in refused.stderr
    assert "unix:/run/twostep-portal/portal.sock" in refused.stderr


@needs_nginx
def test_a_plain_tcp_portal_ignores_forwarded_headers(lab: dict[str, Any], tmp_path: Path) -> None:
    """Without trusted_proxies (a portal straight on loopback TCP), a sign-in is audited
    from the peer's address, whatever X-Forwarded-* says, and a forged scheme and host
    do not make a foreign Origin match."""
    data = yaml.safe_load(Path(lab["config"]).read_text())
    port = free_port()
    data["portal"] = {
        **data["portal"],
        "listen": f"127.0.0.1:{port}",
        "trusted_proxies": 0,
        "secure_cookies": False,
    }
    config_path = tmp_path / "twostep.yaml"
    config_path.write_text(yaml.safe_dump(data))
    shutil.copymode(lab["config"], config_path)
    portal = Portal(tmp_path / "portal", config_path, port)
    portal.start()
    try:
        before = len(logins(lab, "carol"))
        forged = {
            "X_Forwarded_For": "203.0.113.9",
            "X_Forwarded_Proto": "https",
            "X_Forwarded_Host": "portal.example",
        }
        client = Client(portal.url, "127.0.0.9")
        status, _ = client.sign_in("carol", password(lab, "carol") + "-wrong", **forged)
        assert status == 401
        event = last_login(lab, "carol", before)
        assert event["remote"] == "127.0.0.9", event
        # Had the forged scheme and host been believed, this Origin would have matched.
        status, _ = client.sign_in("carol", "x", Origin="https://portal.example", **forged)
        assert status == 403
    finally:
        assert portal.pid is not None
        stop_group(portal.pid)


# -- the browser story over HTTPS ----------------------------------------------------------


@needs_nginx
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_the_browser_story_through_nginx_over_https(lab: dict[str, Any]) -> None:
    """Sign in, set up, the code step, trust the browser, the account page: in headless
    Chromium that accepts the lab's certificate by its key alone."""
    with chromium() as plain:  # without the lab's key the certificate is refused
        page = plain.new_page()
        with pytest.raises(Exception, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto(lab["portal_url"] + "/signin")
    with chromium(f"--ignore-certificate-errors-spki-list={lab['portal_spki']}") as browser:
        alice = Person(browser, lab, "alice", "first browser")
        page = alice.page
        assert alice.sign_in() == "account"
        assert "Off. Signing in asks for your password only." in alice.text()
        cookies = {c["name"]: c for c in alice.context.cookies()}
        session = cookies["__Host-twostep"]
        assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Lax"
        # (page.request would go through Playwright's own client, not Chromium's.)
        response = page.goto(alice.url + "/")
        assert response is not None
        assert response.headers["strict-transport-security"].startswith("max-age=")

        page.click("text=Set up two-step verification")
        page.fill("#password", alice.password)
        alice.submit("/setup")
        key, step, codes = alice.confirm_new_key()
        assert len(codes) == 10
        assert "On. Signing in asks for your password and a code" in alice.text()
        alice.sign_out()

        phone = Person(browser, lab, "alice", "second browser")
        assert phone.sign_in() == "code"
        phone.check_accessible()
        code, step = next_code(key, step)
        leaks.remember(code)
        phone.enter_code(code, trust=True)
        assert phone.page.url == phone.url + "/"
        assert "this browser" in phone.text()
        phone.check_accessible()
        device = {c["name"]: c for c in phone.context.cookies()}["__Host-twostep-device"]
        assert device["secure"] and device["httpOnly"] and device["sameSite"] == "Strict"

        # "Add a device" (issue 18) through nginx: the Apple profile once, and the
        # passcode in it opens the lab's IMAP; a second download of either file is refused.
        phone.page.fill("#label", "iPhone")
        phone.submit("/passcodes")
        with phone.page.expect_download() as caught:
            phone.page.click("button[value=apple]")
        profile = plistlib.loads(Path(caught.value.path()).read_bytes())
        account = profile["PayloadContent"][0]
        leaks.remember(account["IncomingPassword"])
        assert account["IncomingMailServerPortNumber"] == lab["imap_port"]
        with imaplib.IMAP4(account["IncomingMailServerHostName"], lab["imap_port"]) as imap:
            imap.login(account["IncomingMailServerUsername"], account["IncomingPassword"])
        with phone.page.expect_navigation():
            phone.page.click("button[value=thunderbird]")
        assert "can be downloaded only once" in phone.text()
        phone.page.goto(phone.url + "/")
        phone.sign_out()
        assert phone.sign_in() == "account"  # trusted: no code asked
        for person in (alice, phone):
            person.context.close()


@needs_nginx
def test_lab_up_tls_proxy_from_the_command_line() -> None:
    """``twostep lab up --tls-proxy``: the portal's address is nginx's, over HTTPS with a
    certificate the lab's CA signed for 127.0.0.1; ``lab down`` stops nginx too."""
    directory = world_readable_directory("twostep-proxy-cli-") / "lab"
    twostep = [TWOSTEP]
    up = subprocess.run(
        [*twostep, "lab", "up", "--tls-proxy", "--dir", str(directory), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        assert up.returncode == 0, up.stderr
        data = json.loads(up.stdout)
        assert set(data) >= LAB_INFO_KEYS | {"portal_backend", "portal_ca", "portal_spki"}
        assert data["portal_url"].startswith("https://127.0.0.1:")
        assert data["portal_backend"] == f"unix:{directory}/portal/portal.sock"
        client = Client(data["portal_url"], "127.0.0.1", data["portal_ca"])
        assert client.request("GET", "/signin")[0] == 200  # verified: CA, name, dates
        config = (directory / "nginx" / "nginx.conf").read_text()
        directives = [line for line in config.splitlines() if not line.lstrip().startswith("#")]
        assert not any("/etc/" in line or "/var/" in line for line in directives)
        assert "listen 127.0.0.1:" in config
        assert f"proxy_pass http://unix:{directory}/portal/portal.sock:;" in config
    finally:
        down = subprocess.run(
            [*twostep, "lab", "down", "--dir", str(directory)],
            capture_output=True,
            text=True,
            check=False,
        )
    assert down.returncode == 0 and "stopped: nginx, portal, postfix" in down.stdout
