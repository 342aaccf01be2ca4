"""Two providers in multi-provider replication: fail-over, single use, one provider per daemon.

Two ``Directory`` objects sharing one ``ProviderChoice`` are two serving processes of
one daemon, as the supervisor forks them (the sharing across a fork: test_choice.py);
whole daemons of several processes each: test_replicated_daemons.py.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock, config_data, make_secrets_dir
from support.concurrency import at_once
from support.flows import enroll, interactive_login, mail_login
from support.replication import consume_from, providers, wait_until
from support.slapd import Slapd, user_dn
from support.stack import world_readable_directory

from pam_twostep.audit import MemorySink
from pam_twostep.config import Config, load_secrets, parse_config
from pam_twostep.core.decision import Outcome, Reason
from pam_twostep.directory import Directory, ProviderChoice
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


def engine_for(
    config: Config,
    clock: Clock,
    monotonic: Monotonic | None = None,
    choice: ProviderChoice | None = None,
) -> Engine:
    loaded = load_secrets(config)
    directory = Directory(
        config.ldap,
        config.users,
        loaded.bind_password,
        choice=choice,
        clock=monotonic or Monotonic(),
    )
    return Engine(config, directory, loaded.keyring, MemorySink(), clock=clock)


def available(
    servers: tuple[Slapd, Slapd], base: Path, clock: Clock, monotonic: Monotonic
) -> Engine:
    """An engine on both providers under ``single_use: available``, fail-back after 60 s."""
    config = config_for(servers, base, failback_after=60, single_use="available")
    return engine_for(config, clock, monotonic)


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
    engine = available(servers, tmp_path, clock, monotonic)
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
        directory._providers.wait_for_probes()  # probes run in a thread of their own
        assert directory.server_in_use == a.uri
        assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
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
    engine = available(servers, tmp_path, clock, monotonic)
    directory = engine.directory
    try:
        a.kill()
        assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
        for _ in range(3):
            monotonic.now += 61
            for _ in range(5):
                assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
                directory._providers.wait_for_probes()
        assert directory.counts()["failback-probe"] == 3
        assert directory.server_in_use == b.uri
        assert user_dn("bob") in b.snapshot()
    finally:
        directory.close()


def kept_for(engine: Engine) -> set[int]:
    """The providers a directory holds connections to."""
    providers = engine.directory._providers
    return {index for index, _ in providers._idle + providers._binders}


@pytest.mark.parametrize("single_use", ["strict", "available"])
def test_the_processes_of_one_daemon_use_one_provider(
    servers: tuple[Slapd, Slapd], tmp_path: Path, single_use: str
) -> None:
    """The outage only one process noticed: the other, idle meanwhile, follows it to the
    second provider instead of going straight back to the first (issue 22)."""
    a, b = servers
    clock, monotonic, choice = Clock(), Monotonic(), ProviderChoice()
    config = config_for((a, b), tmp_path, single_use=single_use)
    busy, idle = (engine_for(config, clock, monotonic, choice) for _ in range(2))
    try:
        _, codes = enroll(busy, clock.now)
        assert mail_login(idle, "bob", "wrong").outcome is Outcome.DENY
        a.kill()
        # (strict: a deny, or a temporary failure where the failure count must be written)
        assert mail_login(busy, "bob", "wrong").outcome is not Outcome.ACCEPT
        a.start()
        synced(a, b)
        monotonic.now += config.ldap.timeout  # writes were held off that long (strict)
        # strict: reads go back to a as soon as it has caught up; available: not before
        # failback_after (60 s)
        reads = a.uri if single_use == "strict" else b.uri
        for engine in (busy, idle):
            assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
            engine.directory._providers.wait_for_probes()
        for engine in (busy, idle):
            assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
            assert engine.directory.server_in_use == reads
            writes = a.uri if single_use == "strict" else b.uri
            assert engine.directory.write_server == writes
            assert kept_for(engine) == ({0} if single_use == "strict" else {1})
        # one code through both "processes", one right after the other: once
        assert interactive_login(busy, "alice", codes[0]).outcome is Outcome.ACCEPT
        assert interactive_login(idle, "alice", codes[0]).outcome is not Outcome.ACCEPT
    finally:
        busy.directory.close()
        idle.directory.close()
        choice.close()


def test_strict_writes_only_on_the_first_provider(
    servers: tuple[Slapd, Slapd], tmp_path: Path
) -> None:
    """While the first URI is down, passcodes (which write nothing) still log in, codes
    are a temporary failure, and nothing twostep keeps is written to the second."""
    a, b = servers
    clock, monotonic = Clock(), Monotonic()
    engine = engine_for(config_for((a, b), tmp_path, timeout=2), clock, monotonic)
    try:
        _, codes = enroll(engine, clock.now)
        passcode = engine.add_passcode("alice", "Phone").passcode
        synced(a, b)
        single_use = ("twostepbackupcode", "twosteptotplaststep", "twostepsecret")
        before = {k: v for k, v in b.snapshot()[user_dn("alice")].items() if k in single_use}
        a.kill()
        assert mail_login(engine, "alice", passcode).outcome is Outcome.ACCEPT
        refused = interactive_login(engine, "alice", codes[0])
        assert refused.outcome is Outcome.TEMPFAIL
        assert refused.reason is Reason.DIRECTORY_UNAVAILABLE
        # a wrong passcode is still a deny, and counted (on b): lock-out still works
        assert mail_login(engine, "alice", "wrong").outcome is Outcome.DENY
        assert engine.directory.server_in_use == b.uri
        assert engine.directory.write_server == a.uri
        after = b.snapshot()[user_dn("alice")]
        assert {k: v for k, v in after.items() if k in single_use} == before
        assert after["twostepfailure"]
        a.start()
        # a write that failed spares the others its timeout: they fail at once, for that long
        assert interactive_login(engine, "alice", codes[0]).outcome is Outcome.TEMPFAIL
        monotonic.now += 2
        assert interactive_login(engine, "alice", codes[0]).outcome is Outcome.ACCEPT
        # read from the second provider, maybe before replication: the write decides
        assert interactive_login(engine, "alice", codes[0]).outcome is not Outcome.ACCEPT
        assert interactive_login(engine, "alice", codes[1]).outcome is Outcome.ACCEPT
    finally:
        engine.directory.close()


def test_fail_back_waits_until_the_returning_provider_has_caught_up(
    servers: tuple[Slapd, Slapd], tmp_path: Path
) -> None:
    a, b = servers
    clock, monotonic = Clock(), Monotonic()
    engine = available(servers, tmp_path, clock, monotonic)
    directory = engine.directory
    consume_from(a, 2, "ldap://127.0.0.1:9")  # a can no longer catch up from b
    try:
        enroll(engine, clock.now)
        wait_until(lambda: user_dn("alice") in b.snapshot() and a.snapshot() == b.snapshot())
        a.kill()
        engine.add_passcode("alice", "Phone")  # written to b only
        assert directory.server_in_use == b.uri
        a.start()
        probes = directory._providers.wait_for_probes
        monotonic.now += 61
        assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
        probes()
        assert directory.server_in_use == b.uri  # a answers, but lacks the passcode
        assert directory.counts()["failback-probe"] == 1
        monotonic.now += 0.5
        assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
        probes()
        assert directory.counts()["failback-probe"] == 1  # looked at again after 1 s
        consume_from(a, 2, b.uri)
        synced(a, b)
        monotonic.now += 0.6
        assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
        probes()
        assert directory.server_in_use == a.uri
        assert directory.counts()["failback-probe"] == 2
    finally:
        if a.process is None or not a.process.alive():
            a.start()
        consume_from(a, 2, b.uri)
        directory.close()


def test_a_read_after_a_restart_takes_a_fresh_connection(
    servers: tuple[Slapd, Slapd], tmp_path: Path
) -> None:
    """Every pooled connection went stale with the restart: the retry must not take
    another of them (it did, and idle processes gave temporary failures after outages)."""
    a, _ = servers
    engine = engine_for(config_for((a,), tmp_path), Clock())
    directory = engine.directory
    try:
        at_once(6, lambda _: directory.read(user_dn("bob"), ["uid"]))
        assert len(directory._providers._idle) > 1
        a.kill()
        a.start()
        connects = directory.counts()["connect"]
        assert directory.read(user_dn("bob"), ["uid"]) is not None
        assert directory.counts()["connect"] == connects + 1
        assert len(directory._providers._idle) == 1
    finally:
        directory.close()


def test_strict_still_counts_guesses_while_the_first_provider_is_down(
    servers: tuple[Slapd, Slapd], tmp_path: Path
) -> None:
    """Failure records are not single use: they go to the provider in use, so guessing
    while the first URI is down is still throttled and locked out (review of issue 22: they were
    temporary failures, never counted, and the right password then logged in)."""
    a, b = servers
    engine = engine_for(config_for((a, b), tmp_path), Clock())
    try:
        a.kill()
        reasons = [mail_login(engine, "bob", f"guess{n}").reason for n in range(12)]
        assert reasons[0] is Reason.WRONG_PASSWORD
        # the account's throttle, from the failures stored on b
        assert reasons[-1] in (Reason.THROTTLED, Reason.LOCKED)
        assert user_dn("bob") in b.snapshot() and b.snapshot()[user_dn("bob")]["twostepfailure"]
        assert mail_login(engine, "bob", "bob-pw").outcome is Outcome.DENY
    finally:
        engine.directory.close()


def test_processes_that_disagree_on_the_uris_serve_nothing(
    servers: tuple[Slapd, Slapd], tmp_path: Path
) -> None:
    """A process left on other ``ldap.uris`` (its reload failed, or it was forked after
    the file changed without one) would call another server "the first": it refuses.
    Only a reload makes new settings the daemon's."""
    a, b = servers
    choice = ProviderChoice()
    old = engine_for(config_for((a, b), tmp_path / "old"), Clock(), choice=choice)
    new = engine_for(config_for((b, a), tmp_path / "new"), Clock(), choice=choice)
    try:
        # forked from the edited file: it does not take the daemon over
        assert mail_login(old, "bob", "wrong").outcome is Outcome.DENY
        refused = mail_login(new, "bob", "wrong")
        assert refused.outcome is Outcome.TEMPFAIL
        assert refused.reason is Reason.DIRECTORY_UNAVAILABLE
        new.directory.adopt_settings()  # its reload succeeded
        assert mail_login(new, "bob", "wrong").outcome is Outcome.DENY
        refused = mail_login(old, "bob", "wrong")
        assert refused.outcome is Outcome.TEMPFAIL
        assert refused.reason is Reason.DIRECTORY_UNAVAILABLE
        # reloaded with the same settings: it serves again
        again = engine_for(config_for((b, a), tmp_path / "again"), Clock(), choice=choice)
        assert mail_login(again, "bob", "wrong").outcome is Outcome.DENY
        again.directory.close()
    finally:
        old.directory.close()
        new.directory.close()
        choice.close()


def test_twostep_check_says_whether_fail_back_can_compare(
    servers: tuple[Slapd, Slapd], tmp_path: Path
) -> None:
    from pam_twostep.check import _ldap_findings

    a, b = servers
    config = config_for((a, b), tmp_path)
    password = load_secrets(config).bind_password
    findings = [str(f) for f in _ldap_findings(config, password, None, None)]
    assert f"ok   {a.uri}: consumes every code (ldap.single_use strict); it is this host's" in (
        "\n".join(findings)
    )
    for server in (a, b):
        assert f"ok   {server.uri}: contextCSN readable (fail-back waits" in "\n".join(findings)
    single = engine_for(config_for((a,), tmp_path / "one"), Clock())
    try:
        assert single.directory.context_csns()  # the pair's: one CSN per server ID
    finally:
        single.directory.close()


def test_strict_a_swap_lost_to_a_lagging_read_is_a_temporary_failure(
    servers: tuple[Slapd, Slapd], tmp_path: Path
) -> None:
    """Reads on b, which does not receive a's changes; writes on a. The second use of a
    code reads it as unused from b, and its swap on a fails: never an accept, and not a
    counted replay either (the owner's next login would be punished for b's lag)."""
    a, b = servers
    clock, monotonic = Clock(), Monotonic()
    engine = engine_for(config_for((a, b), tmp_path, timeout=0.5), clock, monotonic)
    try:
        _, codes = enroll(engine, clock.now)
        synced(a, b)
        consume_from(b, 1, "ldap://127.0.0.1:9")  # b no longer catches up from a
        a.kill()
        assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
        a.start()
        monotonic.now += 0.6  # past the writes held off, short of a fail-back probe
        assert engine.directory.server_in_use == b.uri
        assert interactive_login(engine, "alice", codes[0]).outcome is Outcome.ACCEPT
        again = interactive_login(engine, "alice", codes[0])
        assert again.outcome is Outcome.TEMPFAIL
        assert again.reason is Reason.DIRECTORY_UNAVAILABLE
    finally:
        if not (a.process and a.process.alive()):
            a.start()
        consume_from(b, 1, a.uri)
        engine.directory.close()


def test_strict_a_hold_on_writes_does_not_move_the_daemon(
    servers: tuple[Slapd, Slapd], tmp_path: Path
) -> None:
    """Review of issue 22: during a hold on writes an unguarded write moved every read
    to b without trying a (and, in the next test, a wrong old password on a password
    change took the retry and kept codes failing)."""
    a, b = servers
    clock, monotonic = Clock(), Monotonic()
    engine = engine_for(config_for((a, b), tmp_path, timeout=1), clock, monotonic)
    directory = engine.directory
    try:
        _, codes = enroll(engine, clock.now)
        directory._providers._choice.writes_down(monotonic.now + 100)
        directory._providers._drop_idle(0)  # nothing pooled: the write connects
        directory.add_values_if_missing(user_dn("bob"), "objectClass", "twostepAccount")
        assert mail_login(engine, "bob", "wrong").outcome is Outcome.DENY
        assert directory.server_in_use == a.uri
        assert "failover" not in directory.counts()
        monotonic.now += 101
        assert interactive_login(engine, "alice", codes[0]).outcome is Outcome.ACCEPT
    finally:
        directory.close()


def test_strict_a_password_change_does_not_take_the_write_retry(
    servers: tuple[Slapd, Slapd], tmp_path: Path
) -> None:
    a, b = servers
    clock, monotonic = Clock(), Monotonic()
    engine = engine_for(config_for((a, b), tmp_path, timeout=1), clock, monotonic)
    directory = engine.directory
    try:
        _, codes = enroll(engine, clock.now)
        directory._providers._choice.writes_down(monotonic.now + 1)
        monotonic.now += 2  # the hold ran out: the next write retries the first URI
        directory._providers._choice.move(0, 1, monotonic.now)  # reads on b, as after a blip
        directory._providers._drop_idle(0)  # the code's write must connect to a
        assert not directory.change_password(user_dn("alice"), "not-the-password", "x-pw-1")
        assert interactive_login(engine, "alice", codes[0]).outcome is Outcome.ACCEPT
        assert directory.server_in_use == b.uri
    finally:
        directory.close()
