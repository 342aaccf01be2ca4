"""Dovecot 2.3 checkpassword: asks twostepd, then execs the reply program.

The program Dovecot runs is checkpassword/twostep-checkpassword, three lines that
import this module (compiled at install time, unlike a script) and call ``run``.

    passdb { driver = checkpassword; args = /usr/local/lib/twostep/client/twostep-checkpassword }

Reads "user NUL password NUL timestamp NUL" from fd 3 (at most 512 bytes), takes
SERVICE, TCPREMOTEIP/REMOTE_IP, TCPLOCALIP/LOCAL_IP and AUTH_SECURED from the
environment, and asks the daemon at $TWOSTEP_SOCKET (default /run/twostep/twostepd.sock),
waiting at most $TWOSTEP_TIMEOUT seconds (default 10). Pass both with Dovecot's
import_environment if the defaults do not fit.

Exit codes (what Dovecot does with them):
  exec argv[1]  accepted; USER is the canonical name, userdb fields are in EXTRA
  1             denied (IMAP NO [AUTHENTICATIONFAILED], POP3 -ERR [AUTH], SMTP 535)
  2             misuse: no reply program, fd 3 unreadable, NUL framing wrong, over 512 bytes
  3             userdb lookup (AUTHORIZED=1) of a user that does not exist
  111           temporary failure: daemon unreachable, slow, or answering nonsense

It runs as the dovecot user under Debian's /usr/bin/python3 with -I -S, and imports
only C-level modules (and pam_twostep.wire): each login starts a new process.
"""

import posix
import sys

from . import wire

MYPY = False
if MYPY:  # typing only: importing collections.abc would cost every login
    from collections.abc import Callable

    _Ask = Callable[[str, dict[str, object], float], dict[str, object]]
    _Execve = Callable[[str, list[str], dict[bytes, bytes]], object]

__all__ = ["EXIT_DENY", "EXIT_MISUSE", "EXIT_TEMPFAIL", "EXIT_UNKNOWN_USER", "main", "run"]

EXIT_DENY = 1
EXIT_MISUSE = 2
EXIT_UNKNOWN_USER = 3
EXIT_TEMPFAIL = 111
MAX_INPUT = 512
TIMEOUT = 10.0


def _read_fd3() -> bytes | None:
    data = b""
    while len(data) <= MAX_INPUT:
        chunk = posix.read(3, MAX_INPUT + 1 - len(data))
        if not chunk:
            return data
        data += chunk
    return None  # over the limit


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _exec(
    argv: list[str],
    env: dict[bytes, bytes],
    user: str,
    fields: dict[object, object],
    authorized: bool,
    execve: "_Execve",
) -> int:
    env[b"USER"] = user.encode("utf-8")
    extra = []
    for key, value in fields.items():
        if (
            isinstance(key, str)
            and isinstance(value, str)
            and key.isascii()
            and key.replace("_", "").isalnum()
            and "\0" not in value
        ):
            env[key.encode("ascii")] = value.encode("utf-8")
            extra.append(key)
    if extra:
        env[b"EXTRA"] = " ".join(extra).encode("ascii")
    if authorized:
        env[b"AUTHORIZED"] = b"2"
    try:
        execve(argv[1], argv[1:], env)
    except OSError:
        return EXIT_TEMPFAIL
    return EXIT_TEMPFAIL  # not reached, but for a stand-in execve in tests


def main(
    argv: list[str] | None = None,
    environ: dict[bytes, bytes] | None = None,
    read_input: "Callable[[], bytes | None]" = _read_fd3,
    ask: "_Ask" = wire.ask,
    execve: "_Execve" = posix.execve,
) -> int:
    """The program; its I/O is passed in only so that the fuzz target can drive it."""
    argv = sys.argv if argv is None else argv
    if len(argv) < 2:
        return EXIT_MISUSE
    try:
        data = read_input()
    except OSError:
        return EXIT_MISUSE
    if data is None:
        return EXIT_MISUSE
    parts = data.split(b"\0")
    if len(parts) < 3 or parts[-1] != b"":
        return EXIT_MISUSE
    env = dict(posix.environ if environ is None else environ)
    user = _text(parts[0])
    password = _text(parts[1])
    if not user or password is None or "\t" in user or "\n" in user:
        return EXIT_DENY
    authorized = env.get(b"AUTHORIZED") == b"1"
    if authorized and env.get(b"CREDENTIALS_LOOKUP") == b"1":
        return EXIT_DENY  # we never hand out a password (CRAM-MD5 and the like)
    if not authorized and not password:
        return EXIT_DENY

    def env_text(*names: bytes) -> str:
        for name in names:
            value = env.get(name)
            if value:
                return _text(value) or ""
        return ""

    path = env_text(b"TWOSTEP_SOCKET") or wire.DEFAULT_SOCKET
    try:
        timeout = float(env_text(b"TWOSTEP_TIMEOUT") or TIMEOUT)
    except ValueError:
        timeout = TIMEOUT
    if not 0.1 <= timeout <= 60.0:  # also false for NaN
        timeout = TIMEOUT
    request: dict[str, object]
    if authorized:
        request = {"op": "lookup", "user": user}
    else:
        request = {
            "op": "auth",
            "flow": "mail",
            "user": user,
            "password": password,
            "service": env_text(b"SERVICE") or "unknown",
            "remote": env_text(b"TCPREMOTEIP", b"REMOTE_IP"),
            "local": env_text(b"TCPLOCALIP", b"LOCAL_IP"),
            "secured": bool(env.get(b"AUTH_SECURED")),
        }
    try:
        reply = ask(path, request, timeout)
    except (OSError, wire.ProtocolError):
        return EXIT_TEMPFAIL
    result = reply.get("result")
    name = reply.get("user")
    fields = reply.get("fields") or {}
    if (
        result == ("found" if authorized else "accept")
        and isinstance(name, str)
        and name
        and isinstance(fields, dict)
        and "\t" not in name
        and "\0" not in name
    ):
        return _exec(argv, env, name, fields, authorized, execve)
    if result in ("deny", "challenge"):
        return EXIT_DENY
    if result == "unknown" and authorized:
        return EXIT_UNKNOWN_USER
    return EXIT_TEMPFAIL


def run() -> int:
    """What the program exits with; never a traceback towards Dovecot."""
    try:
        return main()
    except BaseException:  # noqa: BLE001 - any surprise is a temporary failure
        return EXIT_TEMPFAIL
