"""Revocation reaches what is already open: real Dovecot (2.3 here, 2.4 in the chroot),
real IMAP sessions idling, twostepd ending them through doveadm's HTTP API, and the
auth cache flushed so a revoked passcode is refused at once."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Clock, config_data, make_secrets_dir
from support.engines import engine_for
from support.flows import enroll
from support.slapd import USERS, Slapd, user_dn
from support.stack import DOVECOT_24, MailStack, running_stack, source

from pam_twostep.config import parse_config
from pam_twostep.engine import Engine
from pam_twostep.lab.dovecot import SourceIMAP
from pam_twostep.lab.processes import free_port
from pam_twostep.lab.twostepd import Twostepd


@pytest.fixture(scope="module")
def stack(slapd_server: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailStack]:
    secrets = make_secrets_dir(tmp_path_factory.mktemp("sessions") / "etc")
    yield from running_stack(
        config_data(slapd_server, secrets, audit={"file": str(secrets / "audit.log")}),
        "lua",
        sessions=True,
        auth_cache=True,
    )


@pytest.fixture(scope="module")
def by_address(
    slapd_server: Slapd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MailStack]:
    """A site that chose ``mail_sessions.by_address``."""
    secrets = make_secrets_dir(tmp_path_factory.mktemp("by-address") / "etc")
    yield from running_stack(
        config_data(slapd_server, secrets), "lua", sessions=True, by_address=True
    )


@pytest.fixture(scope="module")
def uncached_twin(
    slapd_server: Slapd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MailStack]:
    """The same Dovecot setup with the auth cache on, but twostepd not told of it: shows
    that the cache is on and would keep a revoked passcode alive."""
    secrets = make_secrets_dir(tmp_path_factory.mktemp("cached") / "etc")
    yield from running_stack(config_data(slapd_server, secrets), "lua", auth_cache=True)


@pytest.fixture
def clock() -> Clock:
    return Clock(time.time())


@pytest.fixture
def admin(stack: MailStack, slapd: Slapd, clock: Clock) -> Iterator[Engine]:
    with engine_for(parse_config(stack.daemon.config), clock) as engine:
        yield engine


class Idler:
    """An IMAP session in IDLE, as a phone's mail app holds one for hours."""

    def __init__(self, stack: MailStack, user: str, secret: str, address: str) -> None:
        self.client = SourceIMAP("127.0.0.1", stack.dovecot.imap_port, address, timeout=20)
        self.client.login(user, secret)
        self.client.select("INBOX")
        self.client.send(b"i1 IDLE\r\n")
        assert self.client.readline().startswith(b"+")

    def closed_by_server(self) -> bool:
        """Whether the server says BYE (or hangs up) before the socket's 20 s timeout."""
        try:
            line = self.client.readline()
        except OSError:
            return False
        return line == b"" or line.startswith(b"* BYE")

    def still_open(self) -> bool:
        try:
            self.client.send(b"DONE\r\n")
            self.client.sock.settimeout(5)
            return self.client.readline().startswith(b"i1 OK")
        except OSError:
            return False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.shutdown()


def _audit(stack: MailStack) -> list[dict[str, object]]:
    path = Path(stack.daemon.config["audit"]["file"])
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _eventually_audited(stack: MailStack, reason: str) -> bool:
    """A background end's event: written once the servers answered, after the BYE."""
    for _ in range(100):
        ends = [e for e in _audit(stack) if e["action"] == "sessions-end"]
        if ends and ends[-1]["reason"] == reason:
            return True
        time.sleep(0.1)
    return False


def _imap(stack: MailStack, user: str, secret: str) -> str:
    status, text = stack.dovecot.imap_login(user, secret, source())
    return status if status == "OK" else text


def test_revoking_a_passcode_ends_the_users_sessions_and_the_others_log_back_in(
    stack: MailStack, admin: Engine, clock: Clock
) -> None:
    """By default every session of the user ends: a copy of the passcode idling at an
    address it was not last seen at (a thief's) is not missed."""
    enroll(admin, clock.now)
    phone = admin.add_passcode("alice", "Phone").passcode
    laptop = admin.add_passcode("alice", "Laptop").passcode
    on_phone = Idler(stack, "alice", phone, source())
    thief = Idler(stack, "alice", phone, source())
    on_laptop = Idler(stack, "alice", laptop, source())
    try:
        reply = stack.daemon.ask({"op": "passcode-revoke", "user": "alice", "label": "Phone"})
        assert reply["result"] == "ok"
        # 2.3 counts the users kicked, 2.4 the connections
        assert reply["sessions"]["failed"] == [] and reply["sessions"]["ended"] >= 1
        assert on_phone.closed_by_server() and thief.closed_by_server()
        assert on_laptop.closed_by_server()
    finally:
        for idler in (on_phone, thief, on_laptop):
            idler.close()
    assert "[AUTHENTICATIONFAILED]" in _imap(stack, "alice", phone)
    assert _imap(stack, "alice", laptop) == "OK"
    ends = [e for e in _audit(stack) if e["action"] == "sessions-end"]
    assert ends[-1]["outcome"] == "ok" and ends[-1]["user"] == "alice"
    assert phone not in json.dumps(ends)


def test_by_address_another_passcodes_session_stays_up(
    by_address: MailStack, slapd: Slapd, clock: Clock
) -> None:
    with engine_for(parse_config(by_address.daemon.config), clock) as admin:
        enroll(admin, clock.now)
        phone = admin.add_passcode("alice", "Phone").passcode
        laptop = admin.add_passcode("alice", "Laptop").passcode
    on_phone = Idler(by_address, "alice", phone, source())
    on_laptop = Idler(by_address, "alice", laptop, source())
    try:
        request = {"op": "passcode-revoke", "user": "alice", "label": "Phone"}
        reply = by_address.daemon.ask(request)
        assert reply["sessions"]["failed"] == [] and reply["sessions"]["ended"] >= 1
        assert on_phone.closed_by_server()
        assert on_laptop.still_open()
    finally:
        on_phone.close()
        on_laptop.close()


@pytest.mark.skipif(
    DOVECOT_24,
    reason="Dovecot 2.4 caches a Lua passdb only if the script defines "
    "auth_passdb_get_cache_key(); twostep's does not, so nothing is cached to flush",
)
def test_the_auth_cache_forgets_a_revoked_passcode(
    stack: MailStack, uncached_twin: MailStack, admin: Engine, clock: Clock
) -> None:
    enroll(admin, clock.now)
    for mail in (uncached_twin, stack):
        passcode = admin.add_passcode("alice", f"Cached {mail.dovecot.imap_port}").passcode
        assert _imap(mail, "alice", passcode) == "OK"  # now in that Dovecot's cache
        label = f"Cached {mail.dovecot.imap_port}"
        mail.daemon.ask({"op": "passcode-revoke", "user": "alice", "label": label})
        outcome = _imap(mail, "alice", passcode)
        if mail is uncached_twin:
            assert outcome == "OK", "the auth cache is not on: this test proves nothing"
        else:
            assert "[AUTHENTICATIONFAILED]" in outcome


def test_a_password_change_ends_every_session(
    stack: MailStack, admin: Engine, clock: Clock
) -> None:
    enroll(admin, clock.now)
    passcode = admin.add_passcode("alice", "Tablet").passcode
    idler = Idler(stack, "alice", passcode, source())
    try:
        reply = stack.daemon.ask(
            {
                "op": "password-change",
                "user": "alice",
                "old": USERS["alice"],
                "new": "a new password 1",
            }
        )
        assert reply["result"] == "ok" and reply["sessions"]["failed"] == []
        assert idler.closed_by_server()
    finally:
        idler.close()


def test_a_password_changed_elsewhere_is_noticed_at_the_next_login(
    stack: MailStack, admin: Engine, clock: Clock, slapd: Slapd
) -> None:
    """ldappasswd, an admin's ldapmodify: twostepd sees records under another password
    on the entry at the next login of that user, and ends the sessions in the
    background. (With Dovecot's auth cache on, the old passcode itself is answered
    from the cache without asking twostepd, so the login here is another client's.)"""
    enroll(admin, clock.now)
    passcode = admin.add_passcode("alice", "Old phone").passcode
    idler = Idler(stack, "alice", passcode, source())
    try:
        slapd.set_attributes(user_dn("alice"), userPassword=["changed elsewhere"])
        assert "[AUTHENTICATIONFAILED]" in _imap(stack, "alice", "changed elsewhere")
        assert idler.closed_by_server()
    finally:
        idler.close()
    assert _eventually_audited(stack, "password-changed")


def test_a_lock_out_ends_every_session(
    stack: MailStack, admin: Engine, clock: Clock, slapd: Slapd
) -> None:
    enroll(admin, clock.now)
    passcode = admin.add_passcode("alice", "Desk").passcode
    slapd.set_attributes(user_dn("alice"), twostepLockoutMaxFailures=["2"])
    idler = Idler(stack, "alice", passcode, source())
    try:
        # asked as the passdb asks (Dovecot's cache answers some repeats by itself)
        for n, guess in enumerate(("aaaa-bbbb-cccc-dddd", "eeee-ffff-gggg-hhhh")):
            request = {"op": "auth", "flow": "mail", "user": "alice", "password": guess}
            stack.daemon.ask({**request, "service": "imap", "remote": f"192.0.2.{n + 1}"})
        assert idler.closed_by_server()
    finally:
        idler.close()
    assert _eventually_audited(stack, "locked")


_API_KEY = "doveadm-key-7f3a9c"


def _daemon_asking(slapd: Slapd, tmp_path: Path, name: str, port: int) -> Twostepd:
    """A twostepd of its own whose one mail server is ``name`` on ``port`` (audit on)."""
    secrets = make_secrets_dir(tmp_path / "etc")
    (secrets / "doveadm.key").write_text(f"{_API_KEY}\n")
    (secrets / "doveadm.key").chmod(0o600)
    data = config_data(slapd, secrets, audit={"file": str(tmp_path / "audit.log")})
    data["mail_sessions"] = {
        "api_key_file": str(secrets / "doveadm.key"),
        "timeout": 1,
        "hosts": [{"name": name, "url": f"http://127.0.0.1:{port}/doveadm/v1"}],
    }
    daemon = Twostepd(tmp_path / "daemon", data)
    daemon.start()
    return daemon


def test_an_unreachable_mail_server_is_reported_and_the_change_stands(
    slapd: Slapd, tmp_path: Path, admin: Engine, clock: Clock
) -> None:
    daemon = _daemon_asking(slapd, tmp_path, "mail9", free_port())
    data = daemon.config
    try:
        with engine_for(parse_config(data), clock) as own:
            enroll(own, clock.now)
            own.add_passcode("alice", "Phone")
            own.add_passcode("alice", "Laptop")
        reply = daemon.ask({"op": "passcode-revoke", "user": "alice", "label": "Phone"})
        assert reply["result"] == "ok"
        assert reply["sessions"]["ended"] == 0
        (failure,) = reply["sessions"]["failed"]
        assert failure.startswith("mail9: ") and "connection refused" in failure
        cli = subprocess.run(
            [sys.executable, "-m", "pam_twostep.cli", "passcode", "revoke", "alice", "Laptop"],
            capture_output=True,
            check=False,
            text=True,
            env={**os.environ, "TWOSTEP_CONFIG": str(daemon.config_path)},
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        assert "passcode 'Laptop' revoked" in cli.stdout
        assert "warning: could not end open mail sessions on mail9" in cli.stderr
        assert "Traceback" not in cli.stderr
        status = daemon.ask({"op": "status", "user": "alice"})["status"]
        assert not status["passcodes"]
    finally:
        daemon.stop()
    events = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    ends = [e for e in events if e["action"] == "sessions-end"]
    assert [e["outcome"] for e in ends] == ["error", "error"]
    assert "mail9" in str(ends[0]["reason"])
    logs = (tmp_path / "audit.log").read_text() + cli.stderr + json.dumps(reply)
    assert _API_KEY not in logs


def test_a_dovecot_that_answers_oddly_is_a_reported_failure(
    slapd: Slapd, tmp_path: Path, clock: Clock
) -> None:
    """An HTTP server that takes the connection and answers garbage, as a confused
    proxy in front of doveadm would: reported, never a hang, the change stands."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n{not json")

    threading.Thread(target=serve, daemon=True).start()
    daemon = _daemon_asking(slapd, tmp_path, "odd", listener.getsockname()[1])
    data = daemon.config
    try:
        with engine_for(parse_config(data), clock) as own:
            enroll(own, clock.now)
            own.add_passcode("alice", "Phone")
        reply = daemon.ask({"op": "passcode-revoke", "user": "alice", "label": "Phone"})
        assert reply["result"] == "ok"
        (failure,) = reply["sessions"]["failed"]
        assert failure.startswith("odd: ") and "not JSON" in failure
    finally:
        daemon.stop()
        listener.close()
