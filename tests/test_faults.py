"""What logins do when things break: slapd killed, twostepd killed, the audit log unwritable."""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock, config_data, make_secrets_dir
from support.checkpassword import TEMPFAIL, credentials, run
from support.engines import engine_for
from support.flows import enroll
from support.slapd import POLICIES, USERS, Slapd, user_dn
from support.stack import install_clients, world_readable_directory

from pam_twostep import wire
from pam_twostep.config import parse_config
from pam_twostep.core.account import Attr, parse_account
from pam_twostep.lab.twostepd import Twostepd

RIGHT_FROM, WRONG_FROM = "192.0.2.10", "192.0.2.66"


@dataclass
class Reply:
    at: float
    right: bool
    result: str
    reason: str = ""


def passcode_for(slapd: Slapd, etc: Path) -> str:
    """Alice enrolled, with one passcode; lock-out far away."""
    slapd.set_attributes(f"cn=default,{POLICIES}", twostepLockoutMaxFailures=["100"])
    clock = Clock(time.time())
    with engine_for(parse_config(config_data(slapd, etc)), clock) as engine:
        enroll(engine, clock.now)
        return engine.add_passcode("alice", "Phone").passcode


@contextlib.contextmanager
def daemon_for(slapd: Slapd, etc: Path, **sections: Any) -> Iterator[Twostepd]:
    data = config_data(slapd, etc, **sections)
    data["daemon"]["processes"] = 2
    daemon = Twostepd(world_readable_directory("twostepd-") / "daemon", data)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


class Stream:
    """Logins one after another from a thread: every fifth a wrong passcode, each different."""

    def __init__(self, socket: Path, passcode: str) -> None:
        self.socket, self.passcode = socket, passcode
        self.replies: list[Reply] = []
        self.wrong_sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        for n in itertools.count():
            if self._stop.is_set():
                return
            right = n % 5 != 0
            secret = self.passcode if right else f"WRONG-{n:06d}-PASSCODE"
            request = {
                "op": "auth",
                "user": "alice",
                "password": secret,
                "service": "imap",
                "remote": RIGHT_FROM if right else WRONG_FROM,
            }
            reason = ""
            try:
                reply = wire.ask(str(self.socket), request, 5)
                result, reason = str(reply.get("result")), str(reply.get("reason") or "")
            except (OSError, wire.ProtocolError):
                result = "unreachable"  # what the clients turn into a temporary failure
            self.replies.append(Reply(time.monotonic(), right, result, reason))
            time.sleep(0.01)

    def stop(self) -> list[Reply]:
        self._stop.set()
        self._thread.join(30)
        return self.replies


def failures_stored(slapd: Slapd) -> int:
    return len(slapd.entry(user_dn("alice")).get(Attr.FAILURE.lower(), []))


def test_slapd_killed_mid_stream(slapd: Slapd, tmp_path: Path) -> None:
    etc = make_secrets_dir(tmp_path / "etc")
    passcode = passcode_for(slapd, etc)
    with daemon_for(slapd, etc) as daemon:
        stream = Stream(daemon.socket, passcode)
        time.sleep(1)
        killed = time.monotonic()
        slapd.kill()
        time.sleep(2)
        restarting = time.monotonic()
        slapd.start()
        restarted = time.monotonic()
        time.sleep(3)
        replies = stream.stop()

    assert not [r for r in replies if not r.right and r.result == "accept"]
    assert {r.result for r in replies} <= {"accept", "deny", "tempfail"}
    before = [r for r in replies if r.at < killed]
    down = [r for r in replies if killed + 0.1 < r.at < restarting]
    after = [r for r in replies if r.at > restarted]
    assert before and all(r.result == ("accept" if r.right else "deny") for r in before)
    assert len(down) > 20 and {r.result for r in down} == {"tempfail"}
    recovered = next(r.at for r in after if r.result == "accept")
    assert recovered - restarted < 3
    # only the wrong passcodes that were checked and answered "deny" were counted (the
    # guessing address is throttled after a few: refused unchecked, nothing stored)
    checked = [r for r in replies if not r.right and r.result == "deny" and r.reason != "throttled"]
    assert failures_stored(slapd) == len(checked)
    assert {r.reason for r in replies if not r.right and r.result == "deny"} <= {
        "wrong-passcode",
        "throttled",
    }


def test_twostepd_killed_and_restarted_under_load(slapd: Slapd, tmp_path: Path) -> None:
    etc = make_secrets_dir(tmp_path / "etc")
    passcode = passcode_for(slapd, etc)
    program = install_clients(world_readable_directory("prefix-")) / (
        "lib/twostep/client/twostep-checkpassword"
    )
    with daemon_for(slapd, etc) as daemon:
        stream = Stream(daemon.socket, passcode)
        added: dict[str, str] = {}
        stop = threading.Event()

        def manage() -> None:
            for n in itertools.count():
                if stop.is_set():
                    return
                label = f"client {n}"
                request = {"op": "passcode-add", "user": "alice", "label": label}
                try:
                    added[label] = str(wire.ask(str(daemon.socket), request, 5).get("result"))
                except (OSError, wire.ProtocolError):
                    added[label] = "unreachable"
                time.sleep(0.02)

        manager = threading.Thread(target=manage)
        manager.start()
        time.sleep(1)
        daemon.kill()
        killed = time.monotonic()
        time.sleep(0.5)
        down = run(
            program,
            credentials("alice", passcode),
            socket_path=str(daemon.socket),
            argv=["/bin/true"],
        )
        restarting = time.monotonic()
        daemon.start()
        restarted = time.monotonic()
        time.sleep(2)
        stop.set()
        manager.join(30)
        replies = stream.stop()

    assert down.returncode == TEMPFAIL and b"Traceback" not in down.stderr
    assert not [r for r in replies if not r.right and r.result == "accept"]
    outage = [r for r in replies if killed < r.at < restarting]
    assert outage and {r.result for r in outage} == {"unreachable"}
    assert any(r.result == "accept" for r in replies if r.at > restarted)
    # every change is one LDAP modify: applied whole or not at all, never half
    entry = slapd.entry(user_dn("alice"))
    raw = {name: tuple(values) for name, values in entry.items()}
    from pam_twostep.core.account import RawEntry

    state = parse_account(RawEntry(user_dn("alice"), raw), "alice", "uid")
    stored = {p.label for p in state.passcodes}
    confirmed = {label for label, result in added.items() if result == "ok"}
    assert confirmed and confirmed <= stored
    assert stored - confirmed <= {"Phone"} | {
        label for label, result in added.items() if result == "unreachable"
    }


def _mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")


@pytest.fixture(params=["full", "read-only"])
def unwritable_audit_file(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "audit"
    if request.param == "full":
        _mount_tmpfs(mount, "size=64k,mode=0755")
        with contextlib.suppress(OSError), open(mount / "filler", "wb") as filler:
            filler.write(b"\0" * 1024 * 1024)
    else:
        _mount_tmpfs(mount, "ro,size=64k,mode=0755")
    try:
        yield mount / "audit.log"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_an_unwritable_audit_log_changes_no_outcome(
    slapd: Slapd, tmp_path: Path, unwritable_audit_file: Path
) -> None:
    etc = make_secrets_dir(tmp_path / "etc")
    passcode = passcode_for(slapd, etc)
    audit = {"syslog": False, "file": str(unwritable_audit_file)}
    with daemon_for(slapd, etc, audit=audit) as daemon:

        def login(secret: str, user: str = "alice") -> object:
            request = {"op": "auth", "user": user, "password": secret, "service": "imap"}
            return daemon.ask(request)["result"]

        for _ in range(3):
            assert login("WRONG-PASSCODE-AAAA-BBBB") == "deny"
            assert login(USERS["alice"]) == "deny"  # the password, once two-step is on
            assert login("x", user="nobody") == "deny"
            assert login(passcode) == "accept"
        log = daemon.log()
    assert "audit sink FileSink failed" in log
    assert not unwritable_audit_file.exists() or unwritable_audit_file.stat().st_size == 0
