"""Races through the real components: one single-use secret presented 32 times at once.

twostepd runs two serving processes here, so the race is decided by the directory's
compare-and-swap, not by anything one process holds in memory.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock, config_data, make_secrets_dir
from support.concurrency import at_once
from support.engines import engine_for
from support.flows import enroll
from support.pam import module_lines, pam_service
from support.slapd import POLICIES, USERS, Slapd
from support.stack import (
    MailStack,
    install_clients,
    running_stack,
    running_twostepd,
    source,
    world_readable_directory,
)

from pam_twostep import wire
from pam_twostep.config import parse_config
from pam_twostep.core.totp import time_step, totp
from pam_twostep.engine import Engine
from pam_twostep.lab.twostepd import Twostepd

PARALLEL = 32
RACERS = [f"racer{n}" for n in range(12)]


def _settings(slapd: Slapd, etc: Path) -> dict[str, Any]:
    data = config_data(slapd, make_secrets_dir(etc))
    data["daemon"].update(processes=2, workers=16)
    return data


@pytest.fixture(scope="module")
def daemon(slapd_server: Slapd) -> Iterator[Twostepd]:
    yield from running_twostepd(
        "twostep-races-", lambda base: _settings(slapd_server, base / "etc")
    )


@pytest.fixture
def admin(daemon: Twostepd, slapd: Slapd) -> Iterator[Engine]:
    # a used backup code is checked against every one left (argon2id each): fewer, faster
    slapd.set_attributes(
        f"cn=default,{POLICIES}", twostepLockoutMaxFailures=["100"], twostepBackupCodeCount=["5"]
    )
    slapd.add_users(RACERS)
    with engine_for(parse_config(daemon.config), Clock(time.time())) as engine:
        yield engine


def password(user: str) -> str:
    return USERS.get(user, f"{user}-pw")


def code_of_next_step(key: bytes) -> str:
    """The code of the step after the current one, which the +-1 window accepts; never
    within a second of a step boundary, so the whole race sees the same window."""
    while time.time() % 30 > 28.5:
        time.sleep(0.2)
    return totp(key, (time_step(time.time(), 30) + 1) * 30)


# -- through the socket, many times -----------------------------------------------------


def ask(daemon: Twostepd, user: str, code: str) -> str:
    request = {
        "op": "auth",
        "user": user,
        "password": password(user),
        "code": code,
        "service": "sshd",
        "flow": "interactive",
    }
    return str(wire.ask(str(daemon.socket), request, 20)["result"])


def test_backup_code_races_through_the_daemon(daemon: Twostepd, admin: Engine) -> None:
    races = 0
    for user in RACERS[:6]:
        _, codes = enroll(admin, time.time(), user)
        for code in codes:
            results = at_once(PARALLEL, lambda _, u=user, c=code: ask(daemon, u, c))
            assert results.count("accept") == 1, results
            assert set(results) == {"accept", "deny"}
            admin.unlock(user)
            races += 1
    assert races == 30


def test_totp_races_through_the_daemon(daemon: Twostepd, admin: Engine) -> None:
    for user in RACERS:
        key, _ = enroll(admin, time.time(), user)
        code = code_of_next_step(key)
        results = at_once(PARALLEL, lambda _, u=user, c=code: ask(daemon, u, c))
        assert results.count("accept") == 1, results
        assert set(results) == {"accept", "deny"}


# -- through PAM: 32 pamtester processes, answers released at once ----------------------


@pytest.fixture(scope="module")
def pam_lines(daemon: Twostepd) -> list[str]:
    loader = install_clients(world_readable_directory("prefix-")) / (
        "lib/twostep/client/twostep_pam.py"
    )
    return module_lines(loader, f"socket={daemon.socket}")


def pam_race(service: str, user: str, code: str) -> list[int]:
    """Every process starts and waits at its first prompt; then all get their answers."""
    processes = [
        subprocess.Popen(
            ["pamtester", service, user, "authenticate"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(PARALLEL)
    ]
    time.sleep(0.5)
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(f"{password(user)}\n{code}\n")
        process.stdin.flush()
    for process in processes:
        assert process.stdin is not None
        process.stdin.close()
    return [process.wait(60) for process in processes]


def test_backup_code_races_through_pam(
    daemon: Twostepd, admin: Engine, pam_lines: list[str]
) -> None:
    _, codes = enroll(admin, time.time(), "alice")
    with pam_service(pam_lines) as service:
        for code in codes[:5]:
            exits = pam_race(service, "alice", code)
            assert exits.count(0) == 1, exits
            admin.unlock("alice")


def test_totp_races_through_pam(daemon: Twostepd, admin: Engine, pam_lines: list[str]) -> None:
    with pam_service(pam_lines) as service:
        for user in RACERS[:5]:
            key, _ = enroll(admin, time.time(), user)
            exits = pam_race(service, user, code_of_next_step(key))
            assert exits.count(0) == 1, exits


# -- through Dovecot ------------------------------------------------------------------


@pytest.fixture(scope="module")
def mail(slapd_server: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailStack]:
    etc = tmp_path_factory.mktemp("races") / "etc"
    yield from running_stack(_settings(slapd_server, etc), "lua")


def test_backup_codes_never_open_mail_even_raced(mail: MailStack, slapd: Slapd) -> None:
    """Mail takes application passcodes only once two-step is on: 32 logins at once with a
    backup code (alone or after the password) all fail, and the code is not used up."""
    slapd.set_attributes(f"cn=default,{POLICIES}", twostepLockoutMaxFailures=["100"])
    with engine_for(parse_config(mail.daemon.config), Clock(time.time())) as admin:
        _, codes = enroll(admin, time.time(), "alice")
        secrets = [codes[0], USERS["alice"] + codes[0]]
        results = at_once(
            PARALLEL,
            lambda i: mail.dovecot.imap_login("alice", secrets[i % 2], source())[0],
        )
        assert set(results) == {"NO"}
        assert admin.status("alice").backup_codes == len(codes)
