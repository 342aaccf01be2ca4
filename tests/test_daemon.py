"""twostepd as a process: protocol, framing limits, peer credentials, parallelism, signals."""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import config_data, make_secrets_dir
from support.engines import engine_for
from support.flood import as_user
from support.proxy import DelayProxy
from support.slapd import USERS, Slapd, ssha, user_dn
from support.stack import world_readable_directory

from pam_twostep import wire
from pam_twostep.lab.processes import Process, wait_for
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
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                # Linux reports a UNIX socket closed with our bytes unread (a refused
                # oversized message) as a reset, after the reply queued before it
                if not received:
                    raise
                return received
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
        for _ in range(200):  # within daemon.max_connections_per_uid (256)
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
    daemon = make_daemon(
        slapd,
        base,
        daemon={"request_timeout": 30, "max_connections": 1024, "max_connections_per_uid": 1024},
    )
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
    time.sleep(0.2)  # the start-up probe's connection is gone
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

NOBODY = pwd.getpwnam("nobody")
DOVECOT = pwd.getpwnam("dovecot")
MAIL_GID = grp.getgrnam("mail").gr_gid
OPEN_SOCKET = {"socket_mode": "0666"}
"""For tests of the daemon's own checks: every local user reaches it, as with the old
default, and it must refuse them itself."""


def ask_as_ids(
    uid: int, gid: int, groups: list[int], socket_path: Path, request: dict[str, object]
) -> dict[str, object]:
    """One request from a process with exactly these credentials; a connection the
    socket's permissions refuse comes back as ``{"oserror": "EACCES"}``."""
    code = (
        "import errno, sys, json; sys.path.insert(0, sys.argv[1]); from pam_twostep import wire\n"
        "try: print(json.dumps(wire.ask(sys.argv[2], json.loads(sys.argv[3]), 10)))\n"
        "except PermissionError as e: print(json.dumps({'oserror': errno.errorcode[e.errno]}))"
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
        user=uid,
        group=gid,
        extra_groups=groups,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def ask_as(user: str, socket_path: Path, request: dict[str, object]) -> dict[str, object]:
    account = pwd.getpwnam(user)
    return ask_as_ids(account.pw_uid, account.pw_gid, [], socket_path, request)


def wait_for_log(daemon: Twostepd, text: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while text not in daemon.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert text in daemon.log(), daemon.log()[-2000:]
    return daemon.log()


def test_the_socket_keeps_other_users_out(daemon: Twostepd) -> None:
    """0660 by default: root and the socket's group get in, other users not at all."""
    status = daemon.socket.stat()
    assert stat.S_IMODE(status.st_mode) == 0o660
    assert status.st_gid == grp.getgrnam("dovecot").gr_gid  # the lab's daemon.socket_group
    assert ask_as("nobody", daemon.socket, auth()) == {"oserror": "EACCES"}
    assert ask_as("dovecot", daemon.socket, auth())["result"] == "accept"
    assert daemon.ask(auth())["result"] == "accept"


def test_peers_are_told_apart_by_their_credentials(slapd: Slapd, base: Path) -> None:
    daemon = make_daemon(slapd, base, daemon=OPEN_SOCKET)
    daemon.start()
    try:
        assert ask_as("dovecot", daemon.socket, auth())["result"] == "accept"
        assert ask_as("nobody", daemon.socket, auth()) == {"result": "error", "error": "forbidden"}
        wait_for_log(daemon, f"refused connection from uid {NOBODY.pw_uid}, pid")
        assert "not in daemon.verify or daemon.manage" in daemon.log()
        assert "daemon.socket_mode 0666 lets every local user connect" in daemon.log()
    finally:
        daemon.stop()


def test_groups_grant_rights(slapd: Slapd, base: Path) -> None:
    daemon = make_daemon(
        slapd,
        base,
        daemon={
            **OPEN_SOCKET,
            "verify": {"groups": ["mail"]},
            "manage": {"users": []},
            "self_service": {"users": []},
        },
    )
    daemon.start()
    try:
        nobody, nogroup = NOBODY.pw_uid, NOBODY.pw_gid
        # the group as the process's primary group, or among its supplementary groups
        assert ask_as_ids(nobody, MAIL_GID, [], daemon.socket, auth())["result"] == "accept"
        assert ask_as_ids(nobody, nogroup, [MAIL_GID], daemon.socket, auth())["result"] == "accept"
        assert ask_as_ids(nobody, nogroup, [], daemon.socket, auth())["error"] == "forbidden"
        # root is not special: listed nowhere, it may ask nothing
        assert daemon.ask(auth()) == {"result": "error", "error": "forbidden"}
    finally:
        daemon.stop()


class NamespacedTwostepd(Twostepd):
    """twostepd in a mount namespace of its own whose /etc/passwd and /etc/group carry
    extra entries after the local ones, as NSS serves directory accounts (files, then
    ldap or sss): the host's files are untouched."""

    def __init__(self, directory: Path, config: dict[str, Any], extra: dict[str, str]):
        super().__init__(directory, config)
        self.files = []
        for name, lines in extra.items():
            path = directory / name
            path.write_text(Path("/etc", name).read_text() + lines)
            os.chmod(path, 0o644)
            self.files.append(path)

    def start(self, wait: bool = True) -> None:
        if self.socket.exists():
            self.socket.unlink()
        script = (
            'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && exec "$@"'
        )
        self.process = Process(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
                *map(str, self.files),
                sys.executable,
                "-m",
                "pam_twostep.daemon",
                "--config",
                str(self.config_path),
            ],
            self.directory / "twostepd.log",
        )
        self.pid = self.process.pid
        if wait:
            wait_for(self.ready, 15, "twostepd")


def test_rights_go_by_id_not_by_the_name_nss_gives_a_uid(slapd: Slapd, base: Path) -> None:
    """S1: where NSS also serves directory accounts, one named ``dovecot`` (uid 4242) or
    a group named ``mail`` (gid 4343) must not carry the local dovecot's or mail's rights.
    On 060c6b0 both were accepted: the peer's uid was turned into a name and the name
    compared."""
    if subprocess.run(["unshare", "--mount", "true"], check=False).returncode != 0:
        pytest.skip("no mount namespaces here")
    data = config_data(
        slapd,
        make_secrets_dir(base / "etc"),
        daemon={
            **OPEN_SOCKET,
            "request_timeout": 1,
            "verify": {"users": ["dovecot"], "groups": ["mail"]},
            "manage": {"users": ["root"]},
        },
    )
    extra = {
        "passwd": "dovecot:x:4242:4242:a directory user:/nonexistent:/usr/sbin/nologin\n",
        "group": "mail:x:4343:\n",
    }
    daemon = NamespacedTwostepd(base / "daemon", data, extra)
    daemon.start()
    try:
        forbidden = {"result": "error", "error": "forbidden"}
        assert ask_as_ids(4242, 4242, [], daemon.socket, auth()) == forbidden
        assert ask_as_ids(4444, 4343, [], daemon.socket, auth()) == forbidden
        assert ask_as_ids(4444, 4444, [4343], daemon.socket, auth()) == forbidden
        # the accounts the names meant when the daemon started keep their rights
        assert ask_as("dovecot", daemon.socket, auth())["result"] == "accept"
        assert ask_as_ids(4444, MAIL_GID, [], daemon.socket, auth())["result"] == "accept"
        log = wait_for_log(daemon, "refused connection from uid 4242, pid")
        assert f"verify: uids {DOVECOT.pw_uid}, gids {MAIL_GID}" in log
    finally:
        daemon.stop()


def test_a_reload_resolves_names_again_and_ends_rights_taken_away(daemon: Twostepd) -> None:
    talker = as_user(
        DOVECOT.pw_uid,
        DOVECOT.pw_gid,
        [],
        "talk",
        str(daemon.socket),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert talker.stdin is not None and talker.stdout is not None
    try:

        def say(request: dict[str, object]) -> str:
            assert talker.stdin is not None and talker.stdout is not None
            talker.stdin.write(json.dumps(request) + "\n")
            talker.stdin.flush()
            return talker.stdout.readline().strip()

        assert json.loads(say({"op": "ping"})) == {"result": "ok"}
        daemon.config["daemon"]["verify"] = {"users": ["root"]}
        daemon.write_config()
        daemon.reload_and_wait()
        # the connection made while dovecot was listed: refused now, and closed
        assert json.loads(say({"op": "ping"})) == {"result": "error", "error": "forbidden"}
        assert say({"op": "ping"}) == "closed"
        assert ask_as("dovecot", daemon.socket, auth()) == {"result": "error", "error": "forbidden"}
        daemon.config["daemon"]["verify"] = {"users": ["root", "dovecot"]}
        daemon.write_config()
        daemon.reload_and_wait()
        assert ask_as("dovecot", daemon.socket, auth())["result"] == "accept"
    finally:
        talker.kill()
        talker.wait(10)


def test_unknown_names_grant_nothing_and_are_logged(slapd: Slapd, base: Path) -> None:
    daemon = make_daemon(
        slapd, base, daemon={"verify": {"users": ["root", "no-such-user-x"], "groups": ["nogrp-x"]}}
    )
    daemon.start()
    try:
        assert daemon.ask(auth())["result"] == "accept"
        log = wait_for_log(daemon, "daemon.verify.users: no-such-user-x: no such user or group")
        assert "daemon.verify.groups: nogrp-x: no such user or group" in log
    finally:
        daemon.stop()


def test_a_missing_socket_group_is_a_configuration_error(slapd: Slapd, base: Path) -> None:
    daemon = make_daemon(slapd, base, daemon={"socket_group": "no-such-group-x"})
    for extra in ([], ["--check"]):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pam_twostep.daemon",
                *extra,
                "--config",
                str(daemon.config_path),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 78, result.stderr
        assert "daemon.socket_group: no group named 'no-such-group-x'" in result.stderr
        assert "Traceback" not in result.stderr
        assert not daemon.socket.exists()


def test_the_socket_is_never_left_open_or_in_the_way(base: Path) -> None:
    """twostepd running as a user outside daemon.socket_group cannot give the socket to
    that group: it says why and leaves no socket behind; a file that is not a socket is
    never removed to make room."""
    scratch = base / "scratch"
    scratch.mkdir()
    os.chmod(scratch, 0o1777)
    code = (
        "import sys, os; sys.path.insert(0, sys.argv[1])\n"
        "from pam_twostep.config import parse_config\n"
        "from pam_twostep.daemon import _listen\n"
        "data = {'ldap': {'uris': 'ldapi:///', 'bind_dn': 'cn=x', 'bind_password_file': '/x'},\n"
        "        'users': {'base': 'dc=x'}, 'keys': {'current': 'k'},\n"
        "        'daemon': {'socket': sys.argv[2], 'socket_group': 'mail'}}\n"
        "try: _listen(parse_config(data))\n"
        "except OSError as e: print(type(e).__name__, e)\n"
        "print(os.path.lexists(sys.argv[2]))"
    )
    root = str(Path(wire.__file__).parents[1])

    def listen_as_nobody(path: Path) -> str:
        return subprocess.run(
            [sys.executable, "-I", "-B", "-c", code, root, str(path)],
            capture_output=True,
            text=True,
            check=True,
            user=NOBODY.pw_uid,
            group=NOBODY.pw_gid,
            extra_groups=[],
            cwd="/",
        ).stdout

    out = listen_as_nobody(scratch / "twostepd.sock")
    assert out.startswith("PermissionError [Errno 1] cannot give it to group mail"), out
    assert out.endswith("False\n"), out  # no socket left, not even a closed one
    in_the_way = scratch / "not-a-socket"
    in_the_way.write_text("keep me")
    os.chmod(in_the_way, 0o644)
    out = listen_as_nobody(in_the_way)
    assert "Address already in use" in out and in_the_way.read_text() == "keep me", out


def test_the_descriptor_limit_is_raised_for_max_connections() -> None:
    """Each connection is a descriptor: with the soft limit below max_connections the
    daemon would fail to accept the very connections it means to serve."""
    code = (
        "import resource, logging, sys; sys.path.insert(0, sys.argv[1]); "
        "logging.basicConfig(); "
        "from pam_twostep.config import DaemonConfig; from pam_twostep.daemon import "
        "_descriptor_limit; "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, int(sys.argv[2]))); "
        "_descriptor_limit(DaemonConfig(max_connections=2048)); "
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    root = str(Path(wire.__file__).parents[1])
    roomy = subprocess.run(
        [sys.executable, "-c", code, root, "8192"], capture_output=True, text=True, check=True
    )
    assert roomy.stdout.strip() == str(2048 + 256) and roomy.stderr == ""
    tight = subprocess.run(
        [sys.executable, "-c", code, root, "1000"], capture_output=True, text=True, check=True
    )
    assert tight.stdout.strip() == "1000" and "raise LimitNOFILE to 2304" in tight.stderr


# -- floods ------------------------------------------------------------------------------


def logins_during(daemon: Twostepd, seconds: float, threads: int = 4) -> list[tuple[str, float]]:
    """Real logins from root, back to back on fresh connections, as sshd's PAM makes them."""
    deadline = time.monotonic() + seconds

    def worker() -> list[tuple[str, float]]:
        done = []
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                result = str(daemon.ask(auth())["result"])
            except (OSError, wire.ProtocolError) as exc:
                result = type(exc).__name__
            done.append((result, time.monotonic() - started))
        return done

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
        return [item for future in futures for item in future.result()]


def test_a_flood_from_an_unlisted_uid_stops_no_login(slapd: Slapd, base: Path) -> None:
    """H2: as nobody, keep 1,100 idle connections open, opening a new one for each that
    closes, while root and dovecot log in. The socket is 0666 here (the old default) so
    the flood reaches the daemon itself. On 060c6b0 the flood's connections were held
    until request_timeout (30 s here) and every login from root answered busy."""
    daemon = make_daemon(slapd, base, daemon={**OPEN_SOCKET, "request_timeout": 30})
    daemon.start()
    try:
        assert daemon.ask(auth())["result"] == "accept"  # warm the pool
        flooder = as_user(
            NOBODY.pw_uid,
            NOBODY.pw_gid,
            [],
            "flood",
            str(daemon.socket),
            "1100",
            "8",
            stdout=subprocess.PIPE,
        )
        time.sleep(1.0)  # the flood is under way
        started = time.monotonic()
        logins = logins_during(daemon, 5.0)
        dovecot = [ask_as("dovecot", daemon.socket, auth())["result"] for _ in range(3)]
        elapsed = time.monotonic() - started
        out, _ = flooder.communicate(timeout=60)
        stats = json.loads(out)
        results = Counter(result for result, _ in logins)
        slowest = max(seconds for _, seconds in logins)
        figures = {
            "flood": stats,
            "logins": dict(results),
            "login_seconds_max": round(slowest, 3),
            "dovecot": dovecot,
            "elapsed": round(elapsed, 2),
        }
        print("\nflood figures:", json.dumps(figures))
        assert results == {"accept": len(logins)} and len(logins) >= 20, figures
        assert dovecot == ["accept"] * 3, figures
        assert slowest < 5, figures
        # the flood was real: well over 1,100 connections, each closed by the daemon at once
        assert stats["opened"] >= 1100 and stats["closed_by_daemon"] >= 1000, figures
        assert stats["replies"].keys() == {'{"result":"error","error":"forbidden"}'}, figures
        assert stats["max_lifetime"] < 3 and stats["oldest_still_open"] < 3, figures
        # and logged a few times, not once per connection
        refusals = daemon.log().count("refused")
        assert 1 <= refusals <= 5, daemon.log()[-3000:]
        assert daemon.ask({"op": "stats"})["result"] == "ok"
    finally:
        daemon.stop()


def test_refusals_from_many_uids_stay_a_few_log_lines(slapd: Slapd, base: Path) -> None:
    """A user with subordinate uids (/etc/subuid) can connect from thousands of uids:
    each is logged once up to a point, then all together, and none is looked up."""
    daemon = make_daemon(slapd, base, daemon=OPEN_SOCKET)
    daemon.start()
    code = (
        "import os, socket, sys\n"
        "for uid in range(50000, 50100):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os.setgroups([]); os.setgid(uid); os.setuid(uid)\n"
        "        s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.recv(100)\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"
    )
    try:
        subprocess.run(["/usr/bin/python3", "-I", "-c", code, str(daemon.socket)], check=True)
        log = wait_for_log(daemon, "refused connection from other uids, pid")
        assert log.count("refused connection from uid 5") == 64, log[-3000:]
        assert daemon.ask(auth())["result"] == "accept"
    finally:
        daemon.stop()


def test_a_greedy_listed_uid_meets_its_own_limit(slapd: Slapd, base: Path) -> None:
    """A uid with the verify right that opens 300 connections and keeps them (a runaway
    Dovecot) holds at most max_connections_per_uid (256) of them; the rest are answered
    busy and closed at once, and other uids log in as before."""
    daemon = make_daemon(slapd, base)
    daemon.start()
    holder = as_user(
        DOVECOT.pw_uid,
        DOVECOT.pw_gid,
        [],
        "hold",
        str(daemon.socket),
        "300",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        held = json.loads(holder.stdout.readline())
        assert held == {
            "open": 256,
            "closed": 44,
            "replies": {'{"result":"error","error":"busy"}': 44},
        }, held
        logins = logins_during(daemon, 1.5)
        assert Counter(result for result, _ in logins) == {"accept": len(logins)}
        assert ask_as("dovecot", daemon.socket, auth()) == {"result": "error", "error": "busy"}
        wait_for_log(daemon, "it has daemon.max_connections_per_uid (256) open")
    finally:
        holder.kill()
        holder.wait(10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the daemon sees the holder's connections close
        if ask_as("dovecot", daemon.socket, auth())["result"] == "accept":
            break
        time.sleep(0.1)
    else:
        pytest.fail("dovecot still refused after its connections closed")
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


def _serving_processes(supervisor: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == supervisor and fields[0] != "Z":
                    found.add(int(entry.name))
    return found


_DISAGREE = "ERROR: ldap.uris or ldap.single_use differ"


def test_a_process_forked_from_an_edited_file_does_not_take_the_daemon_over(
    slapd: Slapd, base: Path
) -> None:
    """Review of issue 22: the process the supervisor forked to replace one that died
    read ``ldap.uris`` edited but not reloaded, made them the daemon's, and the process
    still on the running configuration refused to serve. A reload changes them, and so
    does the death of the last process on them (else every login would be refused)."""
    daemon = make_daemon(slapd, base, daemon={"processes": 2})
    daemon.start()
    try:
        assert daemon.pid is not None
        supervisor = daemon.pid
        wait_for(lambda: len(_serving_processes(supervisor)) == 2, 10, "two serving processes")
        first = _serving_processes(supervisor)
        daemon.config["ldap"]["uris"] = [*daemon.config["ldap"]["uris"], "ldap://127.0.0.1:9"]
        daemon.write_config()
        died = min(first)
        os.kill(died, signal.SIGKILL)
        wait_for(
            lambda: len(_serving_processes(supervisor) - first) == 1, 15, "a replacement process"
        )
        (replacement,) = _serving_processes(supervisor) - first
        (running,) = first - {died}
        wait_for(lambda: daemon.log().count("listening on") == 3, 15, "the replacement listening")
        answers = Counter(str(daemon.ask(auth())["result"]) for _ in range(40))
        assert answers["accept"] > 0, answers
        refusing = {
            int(line.split("[", 1)[1].split("]", 1)[0])
            for line in daemon.log().splitlines()
            if _DISAGREE in line
        }
        assert running not in refusing
        assert refusing <= {replacement}
        # the last process on the running settings dies: the replacements take over
        os.kill(running, signal.SIGKILL)
        wait_for(lambda: daemon.log().count("listening on") == 4, 15, "another replacement")
        wait_for(
            lambda: {str(daemon.ask(auth())["result"]) for _ in range(20)} == {"accept"},
            10,
            "the replacements serving",
        )
        assert "on the running ldap settings is left" in daemon.log()
        # the reload makes the edited file the daemon's, in every process
        before = daemon.log().count("configuration and keys reloaded")
        daemon.reload()
        wait_for(
            lambda: daemon.log().count("configuration and keys reloaded") >= before + 2,
            10,
            "both reloaded",
        )
        assert {str(daemon.ask(auth())["result"]) for _ in range(20)} == {"accept"}
    finally:
        daemon.stop()


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


def _check(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pam_twostep.daemon", "--check", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        check=False,
    )


def test_check_mode(daemon: Twostepd) -> None:
    # the tests' twostepd runs as root, and so its files are root's
    result = _check(daemon.config_path, "--user", "root")
    assert result.returncode == 0, result.stderr


def test_check_as_root_judges_the_files_as_the_service_user(base: Path) -> None:
    """Root reads every file; twostepd, run as its own user, would not: key files made by
    root are refused, each with the command that fixes it."""
    etc = make_secrets_dir(base / "etc")
    path = base / "twostep.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "ldap": {
                    "uris": ["ldap://127.0.0.1:1/"],
                    "bind_dn": "cn=twostep,dc=example,dc=org",
                    "bind_password_file": str(etc / "ldap.secret"),
                },
                "users": {"base": "ou=people,dc=example,dc=org"},
                "policy": {"base": "ou=p,dc=example,dc=org"},
                "keys": {"current": "k1", "directory": str(etc / "keys")},
                "totp": {"issuer": "Example"},
                "audit": {"syslog": False},
                "daemon": {"socket_group": "root"},
            }
        )
    )
    path.chmod(0o644)
    os.chown(etc / "keys", NOBODY.pw_uid, NOBODY.pw_gid)
    key = etc / "keys" / "k1.key"
    result = _check(path, "--user", "nobody")
    assert result.returncode == 78, result.stderr
    assert (
        f"keys.directory: key file {key}: the service user nobody cannot read it (owner root,"
        f" mode 0600); run chown nobody:nogroup {key}"
    ) in result.stderr
    assert f"ldap.bind_password_file {etc / 'ldap.secret'}: the service user" in result.stderr
    assert "Traceback" not in result.stderr and "usable" not in result.stdout
    for owned in (key, etc / "ldap.secret"):
        os.chown(owned, NOBODY.pw_uid, NOBODY.pw_gid)
    result = _check(path, "--user", "nobody")
    assert result.returncode == 0, result.stderr
    assert "configuration and secret files are usable" in result.stdout
    result = _check(path, "--user", "twostep-no-such-user")
    assert result.returncode == 78
    assert "the service user twostep-no-such-user does not exist" in result.stderr
    # --user says who --check judges for: the daemon itself has no use for it
    result = subprocess.run(
        [sys.executable, "-m", "pam_twostep.daemon", "--user", "nobody", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "--user goes with --check" in result.stderr


def test_continuations_spare_a_bind_and_prove_nothing_else(daemon: Twostepd, slapd: Slapd) -> None:
    from support.flows import enroll

    from pam_twostep.config import parse_config
    from pam_twostep.core.account import Attr  # noqa: F401 - the schema is loaded by the fixture
    from pam_twostep.core.totp import totp

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
