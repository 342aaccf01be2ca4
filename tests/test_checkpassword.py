"""The checkpassword program as Dovecot runs it: fd 3, the environment, exit codes, exec."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import config_data, make_secrets_dir
from support.checkpassword import DENY, MISUSE, TEMPFAIL, UNKNOWN, credentials, run
from support.slapd import USERS, Slapd
from support.stack import install_clients, world_readable_directory

from pam_twostep.lab.twostepd import Twostepd


@pytest.fixture(scope="module")
def setup(slapd_server: Slapd) -> Iterator[tuple[Path, Twostepd]]:
    base = world_readable_directory("twostep-checkpassword-")
    secrets = make_secrets_dir(base / "etc")
    config = config_data(
        slapd_server, secrets, services={"userdb_fields": {"userdb_email": "mail"}}
    )
    daemon = Twostepd(base / "daemon", config)
    daemon.start()
    program = install_clients(base / "prefix") / "lib/twostep/client/twostep-checkpassword"
    try:
        yield program, daemon
    finally:
        daemon.stop()


def test_accept_execs_the_reply_program_with_user_and_fields(setup, slapd: Slapd) -> None:  # type: ignore[no-untyped-def]
    program, daemon = setup
    result = run(program, credentials("BOB", USERS["bob"]), socket_path=str(daemon.socket))
    assert result.returncode == 0, result.stderr
    env = dict(line.split("=", 1) for line in result.stdout.decode().splitlines())
    assert env["USER"] == "bob"
    assert env["userdb_email"] == "bob@example.org"
    assert env["EXTRA"] == "userdb_email"
    assert "AUTHORIZED" not in env
    assert result.stderr == b""


@pytest.mark.parametrize(
    ("data", "argv", "code"),
    [
        (b"bob\0pw\0\0", [], MISUSE),  # no reply program
        (None, None, MISUSE),  # fd 3 not open
        (b"bob\0" + b"x" * 600 + b"\0\0", None, MISUSE),  # over 512 bytes
        (b"bob\0secret", None, MISUSE),  # NUL framing missing
        (b"bob\0secret\0timestamp", None, MISUSE),
        (b"", None, MISUSE),
        (b"\0\0\0", None, DENY),  # empty user
        (b"bob\0\0\0", None, DENY),  # empty password
        (b"b\xffb\0pw\0\0", None, DENY),  # not UTF-8
        (b"bob\0p\xffw\0\0", None, DENY),
        (b"bo\tb\0pw\0\0", None, DENY),  # TAB, newline
        (b"bo\nb\0pw\0\0", None, DENY),
        (b"*\0pw\0\0", None, DENY),  # LDAP metacharacters reach nobody
        (b"*)(uid=*\0pw\0\0", None, DENY),
        (b"bob\0wrong\0\0", None, DENY),
    ],
)
def test_hostile_input(
    setup,
    slapd: Slapd,
    data: bytes | None,
    argv: list[str] | None,  # type: ignore[no-untyped-def]
    code: int,
) -> None:
    program, daemon = setup
    before = slapd.snapshot()
    result = run(program, data, argv=argv, socket_path=str(daemon.socket))
    assert result.returncode == code
    assert b"Traceback" not in result.stderr and result.stdout == b""
    if data is not None and b"wrong" not in data:
        assert slapd.snapshot() == before


@pytest.mark.parametrize(
    "env",
    [
        {"SERVICE": "\udcff"},
        {"TCPREMOTEIP": "x" * 100},
        {"SERVICE": "IMAP;DROP"},
        {"AUTH_SECURED": "secured"},
        {"TWOSTEP_TIMEOUT": "nan"},
        {"TWOSTEP_TIMEOUT": "-1"},
    ],
)
def test_hostile_environment(setup, slapd: Slapd, env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    program, daemon = setup
    safe = {k: v.encode("utf-8", "surrogateescape").decode("latin-1") for k, v in env.items()}
    result = run(
        program, credentials("bob", USERS["bob"]), env=safe, socket_path=str(daemon.socket)
    )
    assert result.returncode in (0, TEMPFAIL)
    assert b"Traceback" not in result.stderr


def test_userdb_lookups(setup, slapd: Slapd) -> None:  # type: ignore[no-untyped-def]
    program, daemon = setup
    found = run(program, b"Bob\0\0\0", env={"AUTHORIZED": "1"}, socket_path=str(daemon.socket))
    assert found.returncode == 0
    env = dict(line.split("=", 1) for line in found.stdout.decode().splitlines())
    assert (env["AUTHORIZED"], env["USER"]) == ("2", "bob")
    unknown = run(program, b"nobody\0\0\0", env={"AUTHORIZED": "1"}, socket_path=str(daemon.socket))
    assert unknown.returncode == UNKNOWN
    credentials_lookup = run(
        program,
        b"bob\0\0\0",
        env={"AUTHORIZED": "1", "CREDENTIALS_LOOKUP": "1", "SCHEME": "CRAM-MD5"},
        socket_path=str(daemon.socket),
    )
    assert credentials_lookup.returncode == DENY


def test_daemon_unreachable(setup) -> None:  # type: ignore[no-untyped-def]
    program, _ = setup
    result = run(program, credentials("bob", USERS["bob"]), socket_path="/nonexistent/sock")
    assert result.returncode == TEMPFAIL
    assert result.stderr == b""


def fake_daemon(path: Path, answer: bytes | None) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    os.chmod(path, 0o666)
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(8192)
        if answer is not None:
            conn.sendall(answer)
            conn.close()
        else:
            threading.Event().wait(5)  # never answers
            conn.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    "answer",
    [
        b"nonsense\n",
        b"{}\n",
        b'{"result":"accept"}\n',
        b'{"result":"accept","user":"a\\tb"}\n',
        b'{"result":"maybe"}\n',
        b"",
        b"{" * 9000,
        None,
    ],
)
def test_daemon_answering_nonsense_or_nothing(setup, tmp_path: Path, answer: bytes | None) -> None:  # type: ignore[no-untyped-def]
    program, _ = setup
    directory = world_readable_directory("fake-")
    path = directory / "sock"
    thread = fake_daemon(path, answer)
    result = run(
        program,
        credentials("bob", USERS["bob"]),
        socket_path=str(path),
        env={"TWOSTEP_TIMEOUT": "1"},
    )
    assert result.returncode == TEMPFAIL
    assert result.stdout == b"" and b"Traceback" not in result.stderr
    thread.join(6)


def test_imports_only_what_it_needs_from_compiled_bytecode(setup) -> None:  # type: ignore[no-untyped-def]
    program, daemon = setup
    baseline = run(
        program,
        None,
        extra=["/usr/bin/python3", "-IS", "-v", "-c", "pass"],
        argv=[],
        as_dovecot=True,
    )
    result = run(
        program,
        credentials("bob", USERS["bob"]),
        socket_path=str(daemon.socket),
        extra=["/usr/bin/python3", "-IS", "-v"],
        argv=["/bin/true"],
    )
    assert result.returncode == 0

    def imported(output: bytes) -> set[str]:
        return {
            line.split()[1]
            for line in output.decode().splitlines()
            if line.startswith("import ") and "#" in line
        }

    added = imported(result.stderr) - imported(baseline.stderr)
    assert added == {
        "'_json'",
        "'_socket'",
        "'pam_twostep'",
        "'pam_twostep.wire'",
        "'pam_twostep.checkpassword'",
    }, added
    assert f"code object from '{program.parent}/pam_twostep/__pycache__/wire" in (
        result.stderr.decode()
    )
