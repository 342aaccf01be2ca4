"""Two providers in multi-provider replication: fail-over, single use, one provider at a time."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock, config_data, make_secrets_dir
from support.flows import enroll, interactive_login, mail_login
from support.replication import providers, wait_until
from support.slapd import Slapd, user_dn
from support.stack import world_readable_directory

from pam_twostep.audit import MemorySink
from pam_twostep.config import Config, load_secrets, parse_config
from pam_twostep.core.decision import Outcome, Reason
from pam_twostep.directory import Directory
from pam_twostep.engine import Engine
from pam_twostep.lab.twostepd import Twostepd


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Slapd, Slapd]]:
    with providers(Path(tempfile.mkdtemp(prefix="twostep-replication-"))) as servers:
        yield servers


@pytest.fixture
def servers(pair: tuple[Slapd, Slapd]) -> tuple[Slapd, Slapd]:
    for server in pair:
        if server.process is None or not server.process.alive():
            server.start()
    pair[0].reset()
    wait_until(lambda: pair[0].snapshot() == pair[1].snapshot())
    return pair


def config_for(servers: tuple[Slapd, ...], base: Path, **ldap: Any) -> Config:
    data = config_data(servers[0], make_secrets_dir(base), ldap=ldap)
    data["ldap"]["uris"] = [s.uri for s in servers]
    return parse_config(data)


def engine_for(config: Config, clock: Clock, monotonic: Monotonic | None = None) -> Engine:
    loaded = load_secrets(config)
    directory = Directory(
        config.ldap, config.users, loaded.bind_password, clock=monotonic or Monotonic()
    )
    return Engine(config, directory, loaded.keyring, MemorySink(), clock=clock)


def synced(a: Slapd, b: Slapd) -> None:
    wait_until(lambda: a.snapshot() == b.snapshot())


def test_logins_continue_when_either_provider_dies(
    servers: tuple[Slapd, Slapd], tmp_path: Path
) -> None:
    a, b = servers
    clock = Clock()
    engine = engine_for(config_for((a,), tmp_path / "etc"), clock)
    enroll(engine, clock.now)
    passcode = engine.add_passcode("alice", "Phone").passcode
    engine.directory.close()
    data = config_data(a, tmp_path / "etc", daemon={"processes": 2})
    data["ldap"]["uris"] = [a.uri, b.uri]
    daemon = Twostepd(world_readable_directory("twostepd-") / "daemon", data)
    login = {"op": "auth", "user": "alice", "password": passcode, "service": "imap"}
    daemon.start()
    try:
        synced(a, b)
        assert daemon.ask(login)["result"] == "accept"
        a.kill()
        for _ in range(10):
            assert daemon.ask(login)["result"] == "accept"
        a.start()
        synced(a, b)
        b.kill()
        for _ in range(10):
            assert daemon.ask(login)["result"] == "accept"
    finally:
        daemon.stop()


def test_a_code_used_through_one_provider_is_refused_through_the_other(
    servers: tuple[Slapd, Slapd], tmp_path: Path
) -> None:
    a, b = servers
    clock = Clock()
    config_a = config_for((a,), tmp_path / "a")
    through_a = engine_for(config_a, clock)
    # the same keys, the other provider only
    data_b = config_data(b, tmp_path / "a")
    through_b = engine_for(parse_config(data_b), clock)
    try:
        _, codes = enroll(through_a, clock.now)
        synced(a, b)
        assert interactive_login(through_a, "alice", codes[0]).outcome is Outcome.ACCEPT
        synced(a, b)
        refused = interactive_login(through_b, "alice", codes[0])
        assert refused.outcome is Outcome.DENY and refused.reason is Reason.WRONG_CODE
        assert interactive_login(through_b, "alice", codes[1]).outcome is Outcome.ACCEPT
    finally:
        through_a.directory.close()
        through_b.directory.close()


def test_one_provider_at_a_time_and_back_only_after_failback(
    servers: tuple[Slapd, Slapd], tmp_path: Path
) -> None:
    a, b = servers
    clock, monotonic = Clock(), Monotonic()
    engine = engine_for(config_for((a, b), tmp_path, failback_after=60), clock, monotonic)
    directory = engine.directory
    try:
        assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
        a.kill()
        assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
        assert directory.server_in_use == b.uri
        a.start()
        monotonic.now += 59
        assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
        assert directory.server_in_use == b.uri  # replication may still be catching up
        synced(a, b)
        monotonic.now += 2
        assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
        assert directory.server_in_use == a.uri
        # nothing of the other provider is kept: the read and the write of a login
        # always go to the same server
        kept = directory._providers._idle + directory._providers._binders
        assert {index for index, _ in kept} == {0}
        assert directory.counts()["failover"] == 2
    finally:
        directory.close()


def test_a_provider_that_stays_down_costs_one_attempt_per_period(
    servers: tuple[Slapd, Slapd], tmp_path: Path
) -> None:
    a, b = servers
    clock, monotonic = Clock(), Monotonic()
    engine = engine_for(config_for((a, b), tmp_path, failback_after=60), clock, monotonic)
    directory = engine.directory
    try:
        a.kill()
        assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
        for _ in range(3):
            monotonic.now += 61
            for _ in range(5):
                assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
        assert directory.counts()["failback-probe"] == 3
        assert directory.server_in_use == b.uri
        assert user_dn("bob") in b.snapshot()
    finally:
        directory.close()
