"""Fuzz target: the checkpassword program's input, fd 3 and environment, and the reply.

An input holds four parts separated by a line with only \\x1e on it: what Dovecot
writes to fd 3, the environment (NAME=value lines), the arguments after the program
name (lines), and the daemon's reply line (empty: the daemon cannot be reached). The
program's own ``main`` runs with exactly these; only reading fd 3, the socket and
execve are stand-ins. Allowed: exit 1, 2, 3 or 111, or an exec of the reply program
after an accept or a found, with USER set and an environment execve would take.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["pam_twostep"]):
    from pam_twostep import checkpassword, wire

SEPARATOR = b"\n\x1e\n"
EXITS = {
    checkpassword.EXIT_DENY,
    checkpassword.EXIT_MISUSE,
    checkpassword.EXIT_UNKNOWN_USER,
    checkpassword.EXIT_TEMPFAIL,
}


class Exec(Exception):
    def __init__(self, path: str, argv: list[str], env: dict[bytes, bytes]) -> None:
        self.path, self.argv, self.env = path, argv, env


def _execve(path: str, argv: list[str], env: dict[bytes, bytes]) -> object:
    # what posix.execve refuses, it refuses with ValueError: that would be a finding
    for key, value in env.items():
        if not key or b"=" in key or b"\0" in key or b"\0" in value:
            raise AssertionError(f"execve would refuse the environment entry {key!r}")
    if any("\0" in part for part in (path, *argv)):
        raise AssertionError("execve would refuse an argument with NUL")
    raise Exec(path, argv, env)


def test_one_input(data: bytes) -> None:
    parts = data.split(SEPARATOR)
    fd3, env_text, argv_text, reply = (parts + [b""] * 4)[:4]
    environ = {}
    for line in env_text.split(b"\n"):
        name, equals, value = line.partition(b"=")
        if equals and name and b"\0" not in line:
            environ[name] = value
    argv = ["twostep-checkpassword"] + [
        a.decode("utf-8", "replace") for a in argv_text.split(b"\n") if a and b"\0" not in a
    ]
    asked: list[dict[str, object]] = []

    def ask(path: str, request: dict[str, object], timeout: float) -> dict[str, object]:
        assert 0.1 <= timeout <= 60
        wire.encode(request)  # what the program sends must be a valid request
        asked.append(request)
        if not reply:
            raise ConnectionRefusedError(path)
        answer = wire.decode(reply, wire.MAX_REPLY)
        if not isinstance(answer.get("result"), str):
            raise wire.ProtocolError("reply without a result")
        return answer

    try:
        code = checkpassword.main(
            argv, environ, lambda: fd3 if len(fd3) <= 512 else None, ask, _execve
        )
    except Exec as done:
        answer = wire.decode(reply, wire.MAX_REPLY)
        assert answer["result"] == ("found" if asked[0]["op"] == "lookup" else "accept")
        assert done.path == argv[1] and done.argv == argv[1:]
        user = done.env[b"USER"]
        assert user and b"\t" not in user
        assert (done.env.get(b"AUTHORIZED") == b"2") == (answer["result"] == "found")
        return
    assert code in EXITS, code
    if asked and asked[0]["op"] == "auth":
        assert code != checkpassword.EXIT_UNKNOWN_USER


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
