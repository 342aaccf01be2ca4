"""Stale clients as a site meets them: real Dovecot (2.3 here, 2.4 in the chroot) and
Postfix asking twostepd through the shipped clients, audit on, the owner told through
the configured hook; ``twostep`` (the CLI, as an admin runs it) shows and dismisses."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Clock, config_data, make_secrets_dir
from support.engines import engine_for
from support.flows import enroll
from support.slapd import USERS, Slapd
from support.stack import MailStack, running_stack, source, world_readable_directory

from pam_twostep.config import parse_config
from pam_twostep.engine import Engine


@pytest.fixture(scope="module")
def told() -> Path:
    directory = world_readable_directory("twostep-told-")
    directory.chmod(0o1777)
    return directory


@pytest.fixture(scope="module")
def stack(
    slapd_server: Slapd, tmp_path_factory: pytest.TempPathFactory, told: Path
) -> Iterator[MailStack]:
    secrets = make_secrets_dir(tmp_path_factory.mktemp("stale") / "etc")
    hook = told / "hook"
    hook.write_text(f'#!/bin/sh\ncat > {told}/told.$$.eml\necho "$TWOSTEP_LABEL" > {told}/l.$$\n')
    hook.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    yield from running_stack(
        config_data(
            slapd_server,
            secrets,
            audit={"file": str(secrets / "audit.log")},
            stale_clients={"notify": {"command": [str(hook)], "to": "{user}@example.org"}},
        ),
        "lua",
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(time.time())


@pytest.fixture
def admin(stack: MailStack, slapd: Slapd, clock: Clock, told: Path) -> Iterator[Engine]:
    for old in told.glob("told.*"):
        old.unlink()
    with engine_for(parse_config(stack.daemon.config), clock) as engine:
        yield engine


def _twostep(stack: MailStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pam_twostep.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TWOSTEP_CONFIG": str(stack.daemon.config_path)},
        check=False,
    )


def _imap(stack: MailStack, secret: str, address: str) -> str:
    status, text = stack.dovecot.imap_login("alice", secret, address)
    return status if status == "OK" else text


def _audit(stack: MailStack) -> list[dict[str, object]]:
    path = Path(stack.daemon.config["audit"]["file"])
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _listed(stack: MailStack, count: int) -> str:
    """``stale-clients list`` once it shows ``count``: twostepd records them in the
    background, after the refusal has been sent."""
    deadline = time.monotonic() + 30
    while True:
        listed = _twostep(stack, "stale-clients", "list", "alice")
        assert listed.returncode == 0, listed.stderr
        if f"stale clients: {count}" in listed.stdout or time.monotonic() > deadline:
            return listed.stdout
        time.sleep(0.1)


def _messages(told: Path, count: int) -> list[Path]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list(told.glob("told.*.eml"))) < count:
        time.sleep(0.05)
    return sorted(told.glob("told.*.eml"))


def test_a_phone_with_a_revoked_passcode_is_shown_told_once_and_dismissed(
    stack: MailStack, admin: Engine, clock: Clock, told: Path
) -> None:
    enroll(admin, clock.now)
    phone = admin.add_passcode("alice", "Phone").passcode
    phone_address = source()
    assert _imap(stack, phone, phone_address) == "OK"
    revoked = _twostep(stack, "passcode", "revoke", "alice", "Phone")
    assert revoked.returncode == 0, revoked.stderr
    for _ in range(3):  # the phone retries
        assert "[AUTHENTICATIONFAILED]" in _imap(stack, phone, phone_address)
    assert stack.postfix.send("alice", phone, phone_address, "PLAIN")[0] == 535

    listed = _listed(stack, 2)
    assert listed.count("still uses the revoked passcode 'Phone'") == 2, listed
    assert f"at {phone_address} (imap)" in listed
    assert f"at {phone_address} (smtp)" in listed
    status = _twostep(stack, "status", "alice")
    assert "stale clients: 2" in status.stdout
    as_json = json.loads(_twostep(stack, "--json", "status", "alice").stdout)
    assert as_json["recent_failures"] == 1  # the same secret counts once
    assert len(_messages(told, 2)) == 2  # one per stale client, not per retry
    time.sleep(0.5)
    assert len(list(told.glob("told.*.eml"))) == 2
    assert {p.read_text() for p in told.glob("l.*")} == {"Phone\n"}

    imap_id = next(c["id"] for c in as_json["stale_clients"] if c["service"] == "imap")
    dismissed = _twostep(stack, "stale-clients", "dismiss", "alice", imap_id)
    assert dismissed.returncode == 0 and "dismissed" in dismissed.stdout
    assert _twostep(stack, "stale-clients", "list", "alice").stdout.count("(imap)") == 0
    unknown = _twostep(stack, "stale-clients", "dismiss", "alice", "nosuchid")
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr

    events = _audit(stack)
    assert [e["reason"] for e in events if e["action"] == "stale-client"] == [
        "passcode",
        "passcode",
    ]
    assert [e["outcome"] for e in events if e["action"] == "stale-client-notice"] == ["ok"] * 2
    logs = json.dumps(events) + "".join(p.read_text() for p in told.glob("told.*"))
    assert phone not in logs and phone.replace("-", "") not in logs


def test_a_guesser_over_imap_is_no_stale_client(
    stack: MailStack, admin: Engine, clock: Clock, told: Path
) -> None:
    enroll(admin, clock.now)
    phone = admin.add_passcode("alice", "Phone").passcode
    _twostep(stack, "passcode", "revoke", "alice", "Phone")
    for n in range(4):
        guess = f"{n}" * 4 + phone[4:]
        assert "[AUTHENTICATIONFAILED]" in _imap(stack, guess, source())
    time.sleep(1)  # what would have been recorded in the background has been
    assert "stale clients: 0" in _twostep(stack, "stale-clients", "list", "alice").stdout
    assert not list(told.glob("told.*.eml"))


def test_the_old_password_at_imap_after_a_change(
    stack: MailStack, admin: Engine, clock: Clock
) -> None:
    address = source()
    assert _imap(stack, USERS["alice"], address) == "OK"  # two-step off: the password
    reply = stack.daemon.ask(
        {"op": "password-change", "user": "alice", "old": USERS["alice"], "new": "New pass 42"}
    )
    assert reply["result"] == "ok"
    # the new password's verifier, which dates the old one, is written in the background;
    # a login matched before it lands is told as "a password that has since been changed"
    time.sleep(1)
    assert "[AUTHENTICATIONFAILED]" in _imap(stack, USERS["alice"], address)
    listed = _listed(stack, 1)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert f"(imap) still uses the password from before {day}" in listed, listed
    assert USERS["alice"] not in listed and "New pass 42" not in json.dumps(_audit(stack))
