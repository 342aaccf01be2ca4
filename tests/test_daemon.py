"""twostepd as a process: protocol, framing limits, peer credentials, parallelism, signals."""

from __future__ import annotations

import json
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import config_data, make_secrets_dir
from support.engines import engine_for
from support.proxy import DelayProxy
from support.slapd import USERS, Slapd, ssha, user_dn
from support.stack import world_readable_directory

from pam_twostep import wire
from pam_twostep.lab.twostepd import Twostepd


@pytest.fixture
def base() -> Path:
    return world_readable_directory("twostepd-")


def make_daemon(slapd: Slapd, base: Path, **overrides: Any) -> Twostepd:
    daemon_settings = {"request_timeout": 1, "idle_timeout": 5, **overrides.pop("daemon", {})}
    data = config_data(slapd, make_secrets_dir(base / "etc"), daemon=daemon_settings, **overrides)
    return Twostepd(base / "daemon", data)


@pytest.fixture
def daemon(slapd: Slapd, base: Path) -> Iterator[Twostepd]:
    instance = make_daemon(slapd, base)
    instance.start()
    yield instance
    instance.stop()


def raw(path: Path, data: bytes, *, read: bool = True, timeout: float = 10) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:  # as wire.ask does: a full listen queue is waited for
            try:
                sock.connect(str(path))
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        sock.sendall(data)
        if not read:
            return b""
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk


def auth(user: str = "bob", password: str | None = None, **extra: object) -> dict[str, object]:
    return {
        "op": "auth",
        "user": user,
        "password": USERS.get(user, "x") if password is None else password,
        "service": "imap",
        "remote": "192.0.2.3",
        **extra,
    }


# -- the protocol ----------------------------------------------------------------------


def test_requests_and_replies(daemon: Twostepd) -> None:
    assert daemon.ask({"op": "ping", "id": 7}) == {"result": "ok", "id": 7}
    assert daemon.ask(auth()) == {"result": "accept", "user": "bob", "method": "password"}
    assert daemon.ask(auth(password="wrong")) == {"result": "deny", "reason": "wrong-password"}
    assert daemon.ask(auth("nobody")) == {"result": "deny", "reason": "unknown-user"}
    assert daemon.ask({"op": "lookup", "user": "BOB"}) == {"result": "found", "user": "bob"}
    assert daemon.ask({"op": "lookup", "user": "nobody"}) == {"result": "unknown"}
    assert daemon.ask({"op": "launch"}) == {"result": "error", "error": "unknown-op"}


def test_several_requests_on_one_connection(daemon: Twostepd) -> None:
    lines = b"".join(wire.encode({"op": "ping", "id": i}) for i in range(5))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(daemon.socket))
        sock.sendall(lines)
        received = b""
        while received.count(b"\n") < 5:
            received += sock.recv(4096)
    assert [wire.decode(line)["id"] for line in received.splitlines()] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"op": "auth", "user": "bob"}, "malformed"),
        (auth(extra_field=1), "malformed"),
        (auth(user=5), "malformed"),
        (auth(password=["x"]), "malformed"),
        (auth(secured="yes"), "malformed"),
        (auth(flow="sideways"), "malformed"),
        (auth(user="x" * 600), "malformed"),
        ({"op": 5}, "unknown-op"),
        ({}, "unknown-op"),
        ({"op": "ping", "junk": 1}, "malformed"),
    ],
)
def test_requests_that_do_not_fit_their_schema(
    daemon: Twostepd, request_: dict[str, object], error: str
) -> None:
    assert daemon.ask(request_) == {"result": "error", "error": error}


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"not json\n", "malformed"),
        (b"[1,2]\n", "malformed"),
        (b'{"op":"ping"} trailing\n', "malformed"),
        (b'{"op":"ping","a":NaN}\n', "malformed"),
        (b"\xff\xfe\n", "malformed"),
        (b'{"op":"auth","user":"\\ud800","password":"x","service":"imap"}\n', "malformed"),
        (b"\n", "malformed"),
        (b"{" + b"x" * 10_000 + b"}\n", "too-large"),
        (b"[" * 8000 + b"\n", "malformed"),
    ],
)
def test_garbage_gets_an_error_and_the_connection_closed(
    daemon: Twostepd, data: bytes, error: str
) -> None:
    reply = raw(daemon.socket, data)
    assert wire.decode(reply) == {"result": "error", "error": error}
    assert daemon.ask({"op": "ping"}) == {"result": "ok"}  # the daemon is fine


def test_slow_drip_senders_are_cut_off_and_others_served(daemon: Twostepd) -> None:
    with socket.socket(socket.AF_UNIX) as slow:
        slow.settimeout(10)
        slow.connect(str(daemon.socket))
        started = time.monotonic()
        for byte in b'{"op":':
            slow.sendall(bytes([byte]))
            assert daemon.ask({"op": "ping"}) == {"result": "ok"}
            time.sleep(0.1)
        reply = slow.recv(4096)
        assert wire.decode(reply) == {"result": "error", "error": "timeout"}
        assert time.monotonic() - started < 5


def test_many_idle_connections_cost_nobody(daemon: Twostepd) -> None:
    idle = []
    try:
        for _ in range(300):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(daemon.socket))
            idle.append(sock)
        started = time.monotonic()
        assert daemon.ask(auth())["result"] == "accept"
        assert time.monotonic() - started < 2
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"secret": "not base32!"}, "not importable"),
        ({"secret": "JBSWY3DP"}, "bits"),
        ({"match_attribute": "uid)(x=*"}, "not an attribute name"),
        ({"digits": 9}, "digits"),
        ({"backup_codes": "ok123456,x"}, "backup code"),
    ],
)
def test_import_requests_that_cannot_be_imported(
    daemon: Twostepd, fields: dict[str, object], why: str
) -> None:
    request = {
        "op": "import-account",
        "match_attribute": "uid",
        "match_value": "bob",
        "secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        **fields,
    }
    reply = daemon.ask(request)
    assert reply["result"] == "refused" and why in str(reply["message"]), reply


def test_memory_stays_bounded_under_hostile_connections(slapd: Slapd, base: Path) -> None:
    """A thousand connections, half of them holding almost a whole message, and oversized
    frames on top: the daemon serves others throughout and its memory stays bounded."""
    daemon = make_daemon(slapd, base, daemon={"request_timeout": 30, "max_connections": 1024})
    daemon.start()
    held: list[socket.socket] = []
    try:
        before = int(daemon.ask({"op": "stats"})["rss_kb"])  # type: ignore[call-overload]
        for n in range(1000):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(daemon.socket))
            if n % 2:
                sock.sendall(b'{"op":"ping","id":"' + b"x" * (wire.MAX_MESSAGE - 40))
            held.append(sock)
        for _ in range(20):
            assert wire.decode(raw(daemon.socket, b"y" * 100_000 + b"\n")) == {
                "result": "error",
                "error": "too-large",
            }
        assert daemon.ask(auth())["result"] == "accept"
        during = int(daemon.ask({"op": "stats"})["rss_kb"])  # type: ignore[call-overload]
        assert during - before < 40_000, (before, during)
    finally:
        for sock in held:
            sock.close()
        daemon.stop()


def test_connection_limit(slapd: Slapd, base: Path) -> None:
    daemon = make_daemon(slapd, base, daemon={"max_connections": 3})
    daemon.start()
    held = []
    try:
        for _ in range(3):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(daemon.socket))
            held.append(sock)
        time.sleep(0.2)
        assert daemon.ask({"op": "ping"}) == {"result": "error", "error": "busy"}
        held.pop().close()
        time.sleep(0.2)
        assert daemon.ask({"op": "ping"}) == {"result": "ok"}
    finally:
        for sock in held:
            sock.close()
        daemon.stop()


def test_idle_connections_are_closed(slapd: Slapd, base: Path) -> None:
    daemon = make_daemon(slapd, base, daemon={"idle_timeout": 1})
    daemon.start()
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(daemon.socket))
            assert sock.recv(10) == b""  # closed by the daemon after a second of silence
    finally:
        daemon.stop()


# -- who may ask -----------------------------------------------------------------------


def ask_as(user: str, socket_path: Path, request: dict[str, object]) -> dict[str, object]:
    account = pwd.getpwnam(user)
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); from pam_twostep import wire; "
        "print(json.dumps(wire.ask(sys.argv[2], json.loads(sys.argv[3]), 10)))"
    )
    result = subprocess.run(
        [
            "/usr/bin/python3",
            "-I",
            "-B",
            "-c",
            code,
            str(Path(wire.__file__).parents[1]),
            str(socket_path),
            json.dumps(request),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_peers_are_told_apart_by_their_credentials(daemon: Twostepd) -> None:
    assert ask_as("dovecot", daemon.socket, auth())["result"] == "accept"
    assert ask_as("nobody", daemon.socket, auth()) == {"result": "error", "error": "forbidden"}
    deadline = time.monotonic() + 5
    while "refused connection from nobody" not in daemon.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "refused connection from nobody" in daemon.log(), daemon.log()[-2000:]


def test_groups_grant_rights(slapd: Slapd, base: Path) -> None:
    daemon = make_daemon(
        slapd, base, daemon={"verify": {"groups": ["nogroup"]}, "manage": {"users": []}}
    )
    daemon.start()
    try:
        assert ask_as("nobody", daemon.socket, auth())["result"] == "accept"
        # root is not special: listed nowhere, it may ask nothing
        assert daemon.ask(auth()) == {"result": "error", "error": "forbidden"}
    finally:
        daemon.stop()


# -- parallel work ---------------------------------------------------------------------


def test_one_slow_directory_operation_stalls_nobody(slapd: Slapd, base: Path) -> None:
    admin = slapd.admin()
    admin.add(
        user_dn("slowpoke"),
        ["inetOrgPerson"],
        {"uid": "slowpoke", "cn": "S", "sn": "S", "userPassword": ssha("pw")},
    )
    admin.unbind()
    proxy = DelayProxy(slapd.port, b"slowpoke", delay=2.5)
    daemon = make_daemon(slapd, base, ldap={"uris": [proxy.uri], "timeout": 10})
    daemon.start()
    try:
        daemon.ask(auth())  # warm the pool
        slow_reply: list[dict[str, object]] = []
        slow = threading.Thread(
            target=lambda: slow_reply.append(daemon.ask(auth("slowpoke", "pw")))
        )
        slow.start()
        time.sleep(0.3)
        started = time.monotonic()
        for _ in range(10):
            assert daemon.ask(auth())["result"] == "accept"
        assert time.monotonic() - started < 2  # all done while slowpoke still waits
        slow.join(10)
        assert slow_reply == [{"result": "accept", "user": "slowpoke", "method": "password"}]
    finally:
        daemon.stop()
        proxy.close()


def test_a_directory_operation_past_its_timeout_is_a_temporary_failure(
    slapd: Slapd, base: Path
) -> None:
    proxy = DelayProxy(slapd.port, b"bob", delay=4)
    daemon = make_daemon(slapd, base, ldap={"uris": [proxy.uri], "timeout": 1})
    daemon.start()
    try:
        started = time.monotonic()
        assert daemon.ask(auth())["result"] == "tempfail"
        assert time.monotonic() - started < 4
        assert daemon.ask(auth("carol"))["result"] == "accept"
    finally:
        daemon.stop()
        proxy.close()


# -- signals ---------------------------------------------------------------------------


def test_sighup_reloads_configuration_and_keys(daemon: Twostepd) -> None:
    assert daemon.ask(auth(service="webmail"))["result"] == "accept"  # interactive: password
    daemon.config["services"] = {"mail": ["imap", "webmail"]}
    daemon.config["policy"]["defaults"] = {"mail_password": False}
    daemon.write_config()
    daemon.reload()
    deadline = time.monotonic() + 10
    while "reloaded" not in daemon.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert daemon.ask(auth(service="webmail")) == {
        "result": "deny",
        "reason": "password-not-accepted",
    }


def test_a_broken_configuration_is_refused_on_reload(daemon: Twostepd) -> None:
    daemon.config_path.write_text("ldap: [broken\n")
    daemon.reload()
    deadline = time.monotonic() + 10
    while "reload refused" not in daemon.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "reload refused" in daemon.log()
    assert daemon.ask(auth())["result"] == "accept"


def test_sigterm_finishes_requests_in_flight(slapd: Slapd, base: Path) -> None:
    proxy = DelayProxy(slapd.port, b"bob", delay=1.5)
    daemon = make_daemon(slapd, base, ldap={"uris": [proxy.uri], "timeout": 10})
    daemon.start()
    replies: list[dict[str, object]] = []
    try:
        worker = threading.Thread(target=lambda: replies.append(daemon.ask(auth())))
        worker.start()
        time.sleep(0.5)
        daemon.signal(signal.SIGTERM)
        worker.join(10)
        assert replies == [{"result": "accept", "user": "bob", "method": "password"}]
        assert daemon.process is not None and daemon.process.popen.wait(10) == 0
        assert not daemon.socket.exists()
    finally:
        daemon.stop()
        proxy.close()


def test_bad_configuration_exits_78(base: Path) -> None:
    path = base / "bad.yaml"
    path.write_text(yaml.safe_dump({"ldap": {"uris": "nope"}}))
    result = subprocess.run(
        [sys.executable, "-m", "pam_twostep.daemon", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 78
    assert "ldap.uris" in result.stderr and "Traceback" not in result.stderr


def test_check_mode(daemon: Twostepd) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pam_twostep.daemon",
            "--check",
            "--config",
            str(daemon.config_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_continuations_spare_a_bind_and_prove_nothing_else(daemon: Twostepd, slapd: Slapd) -> None:
    from support.flows import enroll

    from pam_twostep.account import Attr  # noqa: F401 - the schema is loaded by the fixture
    from pam_twostep.config import parse_config
    from pam_twostep.totp import totp

    past = time.time() - 300  # enrolled earlier: the code of now is unused
    with engine_for(parse_config(daemon.config), lambda: past) as engine:
        key, _ = enroll(engine, past)
    challenge = daemon.ask(auth("alice", service="sshd"))
    assert challenge["result"] == "challenge" and isinstance(challenge["continuation"], str)
    token = str(challenge["continuation"])
    code = totp(key, time.time())
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    # a continuation that does not verify means the password is checked: wrong -> deny
    denied = daemon.ask(
        auth("alice", password="wrong", service="sshd", code=code, continuation=forged)
    )
    assert denied["result"] == "deny"
    # another user's continuation does not transfer either
    assert (
        daemon.ask(auth("bob", password="wrong", service="sshd", code=code, continuation=token))[
            "result"
        ]
        == "deny"
    )
    accepted = daemon.ask(auth("alice", password="", service="sshd", code=code, continuation=token))
    assert accepted["result"] == "accept" and accepted["method"] == "totp"
