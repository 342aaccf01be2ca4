"""Two hosts, two providers: whole daemons of two serving processes each (issue 22).

Host A lists ``[provider a, provider b]``; host B lists the same two, but reaches a
through a forwarder that can drop packets (``support.blackhole``). After each outage
(brief, noticed by only some processes, not at all by an idle host, a split where
packets are dropped, not refused) one code is raced through every process of both
hosts. Under ``strict`` no code is ever accepted twice; under ``available`` a code is
accepted at most once per provider, and how often that happens is printed (the window
docs/security.md describes).
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Clock, config_data, make_secrets_dir
from support.blackhole import Blackhole
from support.concurrency import at_once
from support.engines import engine_for
from support.flows import enroll
from support.replication import providers, wait_until
from support.slapd import POLICIES, Slapd, user_dn
from support.stack import world_readable_directory

from pam_twostep.config import parse_config
from pam_twostep.core.totp import time_step, totp
from pam_twostep.engine import Engine
from pam_twostep.lab.twostepd import Twostepd

EACH = 8
"""Requests per host in a race: with two processes per host, both get some."""
TIMEOUT = 1
RACERS = [f"racer{n}" for n in range(100)]
_USERS = iter(RACERS)
"""Each race a fresh account, across both modes (they share the providers)."""
FAILBACK = 2


@dataclass
class Hosts:
    a: Slapd
    b: Slapd
    path: Blackhole
    one: Twostepd
    two: Twostepd
    admin: Engine
    mode: str
    users: Iterator[str] = field(default_factory=lambda: _USERS)
    doubles: Counter[str] = field(default_factory=Counter)
    raced: set[str] = field(default_factory=set)
    """Users raced through both hosts, whose entry both providers may have written at
    once: compared only in part (see ``in_step``)."""
    """Races in which a code was accepted twice, by scenario (``available`` only)."""

    @property
    def daemons(self) -> tuple[Twostepd, Twostepd]:
        return self.one, self.two


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Slapd, Slapd]]:
    with providers(Path(tempfile.mkdtemp(prefix="twostep-hosts-"))) as servers:
        a, _ = servers
        a.add_users(RACERS)
        # every loser of a race is a failure: room for them; fewer codes, faster checks
        a.set_attributes(
            f"cn=default,{POLICIES}",
            twostepLockoutMaxFailures=["100"],
            twostepBackupCodeCount=["5"],
        )
        yield servers


@pytest.fixture(scope="module", params=["strict", "available"])
def hosts(pair: tuple[Slapd, Slapd], request: pytest.FixtureRequest) -> Iterator[Hosts]:
    a, b = pair
    base = world_readable_directory("twostep-hosts-")
    secrets = make_secrets_dir(base / "etc")
    path = Blackhole(a.port)
    started: list[Twostepd] = []
    try:
        for name, first in (("one", a.uri), ("two", path.uri)):
            data = config_data(
                a,
                secrets,
                ldap={"timeout": TIMEOUT, "failback_after": FAILBACK},
                daemon={"processes": 2, "workers": 8},
            )
            data["ldap"].update(uris=[first, b.uri], single_use=request.param)
            daemon = Twostepd(base / name, data)
            daemon.start()
            started.append(daemon)
        with engine_for(parse_config(started[0].config), Clock(time.time())) as admin:
            hosts = Hosts(a, b, path, started[0], started[1], admin, request.param)
            yield hosts
            print(f"\n{request.param}: races with a code accepted twice: {dict(hosts.doubles)}")
    finally:
        for daemon in started:
            daemon.stop()
        path.close()


def in_step(hosts: Hosts) -> bool:
    """Whether both providers hold the same entries, but for what both may have written
    at once: with the same value deleted on both providers at once, OpenLDAP 2.6 (Debian
    13) was seen to keep entries apart for good (2.5 converges). Failure records go to
    the provider in use in either mode, so they are left out; under ``available`` so is
    every entry raced through both hosts (codes were consumed on both). Under ``strict``
    the single-use values are consumed on the first provider alone: they must agree."""
    left, right = hosts.a.snapshot(), hosts.b.snapshot()
    for snapshot in (left, right):
        for entry in snapshot.values():
            entry.pop("twostepfailure", None)
        if hosts.mode == "available":
            for user in hosts.raced:
                snapshot.pop(user_dn(user), None)
    return left == right


def _alive(server: Slapd) -> bool:
    return server.process is not None and server.process.alive()


@pytest.fixture
def healthy(hosts: Hosts) -> Hosts:
    """Both providers up and in step, the path open, both hosts back on provider a."""
    hosts.path.thaw()
    for server in (hosts.a, hosts.b):
        if not _alive(server):
            server.start()
    wait_until(lambda: in_step(hosts))
    time.sleep(FAILBACK + TIMEOUT)
    for daemon in hosts.daemons:
        wait_until(lambda d=daemon: on_first(d), timeout=15)
    return hosts


def on_first(daemon: Twostepd) -> bool:
    """Whether the daemon reads from its first URI (a lookup gives it the chance to fail
    back first)."""
    daemon.ask({"op": "lookup", "user": "bob"})
    stats = daemon.ask({"op": "stats"})
    return stats["ldap_server"] == daemon.config["ldap"]["uris"][0]


def server_of(daemon: Twostepd) -> str:
    return str(daemon.ask({"op": "stats"})["ldap_server"])


def ask(daemon: Twostepd, user: str, code: str) -> str:
    request = {
        "op": "auth",
        "user": user,
        "password": f"{user}-pw",
        "code": code,
        "service": "sshd",
        "flow": "interactive",
    }
    try:
        return str(daemon.ask(request, 20)["result"])
    except OSError as exc:
        return f"error: {exc}"


Account = tuple[str, bytes, list[str]]


def accounts(hosts: Hosts, count: int) -> list[Account]:
    """Users enrolled now (while the write provider is up) and replicated: user, TOTP
    key, backup codes."""
    made = []
    for _ in range(count):
        user = next(hosts.users)
        key, codes = enroll(hosts.admin, time.time(), user)
        made.append((user, key, codes))
    wait_until(lambda: in_step(hosts))
    return made


def race(
    hosts: Hosts,
    targets: tuple[Twostepd, ...],
    scenario: str,
    totp_code: bool,
    account: Account | None = None,
) -> int:
    """One fresh code, ``EACH`` times at once through each of ``targets``; the accepts.
    Every result is an accept, a deny or a temporary failure: nothing else."""
    user, key, codes = account or accounts(hosts, 1)[0]
    if totp_code:
        while time.time() % 30 > 27:  # the whole race within one window
            time.sleep(0.2)
        code = totp(key, (time_step(time.time(), 30) + 1) * 30)
    else:
        code = codes[0]
    if len(targets) > 1:
        hosts.raced.add(user)
    results = at_once(EACH * len(targets), lambda i: ask(targets[i // EACH], user, code))
    assert set(results) <= {"accept", "deny", "tempfail"}, results
    accepts = results.count("accept")
    if hosts.mode == "strict" or len(targets) == 1:
        assert accepts <= 1, (scenario, results)
    else:
        assert accepts <= 2, (scenario, results)  # at most once per provider
        if accepts == 2:
            hosts.doubles[scenario] += 1
    return accepts


def both(hosts: Hosts, scenario: str, ready: list[Account] | None = None) -> None:
    """Three races through every process of both hosts: backup code, TOTP, backup code."""
    ready = ready or accounts(hosts, 3)
    for account, totp_code in zip(ready, (False, True, False), strict=True):
        race(hosts, hosts.daemons, scenario, totp_code, account)


def window(hosts: Hosts) -> None:
    """``available``, hosts on different providers: a backup code through host one, then
    after a delay through host two; printed: which delays still saw it accepted twice."""
    delays = (0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
    ready = accounts(hosts, len(delays))
    twice = []
    for (user, _, codes), delay in zip(ready, delays, strict=True):
        hosts.raced.add(user)
        first = ask(hosts.one, user, codes[0])
        time.sleep(delay)
        second = ask(hosts.two, user, codes[0])
        assert first == "accept"
        if second == "accept":
            twice.append(delay)
    print(f"\navailable, hosts split: accepted twice at delays {twice} of {list(delays)} s")


def test_a_brief_outage_that_only_some_processes_notice(healthy: Hosts) -> None:
    hosts = healthy
    hosts.a.kill()
    # one request: one process of host two notices, the other stays idle
    hosts.two.ask({"op": "lookup", "user": "bob"})
    assert server_of(hosts.two) == hosts.b.uri
    hosts.a.start()
    wait_until(lambda: in_step(hosts))
    time.sleep(TIMEOUT)  # strict: writes were held off that long
    # the whole daemon moved: every process of it reads from b until fail-back
    assert {server_of(hosts.two) for _ in range(10)} == {hosts.b.uri}
    for totp_code in (False, True):
        assert race(hosts, (hosts.two,), "one host", totp_code) == 1
    # host one was idle throughout: it is still on a
    assert server_of(hosts.one) == hosts.a.uri
    both(hosts, "idle host")


def test_a_split_where_packets_are_dropped(healthy: Hosts) -> None:
    hosts = healthy
    user = next(hosts.users)
    enroll(hosts.admin, time.time(), user)
    passcode = hosts.admin.add_passcode(user, "Phone").passcode
    wait_until(lambda: in_step(hosts))
    mail = {"op": "auth", "user": user, "password": passcode, "service": "imap"}
    hosts.path.freeze()
    started = time.monotonic()
    # host two loses provider a without a refusal: reads move to b after the timeout,
    # and passcodes (which write nothing) log in again, in either mode
    wait_until(lambda: hosts.two.ask(mail, 20)["result"] == "accept", timeout=15)
    print(f"\n{hosts.mode}: reads through host two again after {time.monotonic() - started:.1f} s")
    assert server_of(hosts.two) == hosts.b.uri
    both(hosts, "split")
    if hosts.mode == "strict":
        # codes through the cut-off host are a temporary failure, never an accept
        user = next(hosts.users)
        _, codes = enroll(hosts.admin, time.time(), user)
        wait_until(lambda: in_step(hosts))
        assert ask(hosts.two, user, codes[0]) == "tempfail"
        assert ask(hosts.one, user, codes[0]) == "accept"
    else:
        window(hosts)
    hosts.path.thaw()
    time.sleep(FAILBACK + TIMEOUT)
    wait_until(lambda: on_first(hosts.two), timeout=15)
    both(hosts, "after the split")


def test_a_provider_killed_under_load(healthy: Hosts) -> None:
    hosts = healthy
    ready = accounts(hosts, 3)
    hosts.a.kill()
    both(hosts, "provider a down", ready)
    hosts.a.start()
    wait_until(lambda: in_step(hosts))
    both(hosts, "provider a back")
