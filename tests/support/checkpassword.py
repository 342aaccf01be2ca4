"""Running the checkpassword program the way Dovecot does."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

__all__ = ["DENY", "MISUSE", "TEMPFAIL", "UNKNOWN", "credentials", "run"]

DENY, MISUSE, UNKNOWN, TEMPFAIL = 1, 2, 3, 111


def run(
    program: Path,
    data: bytes | None,
    *,
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    socket_path: str | None = None,
    as_dovecot: bool = True,
    extra: list[str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run the program the way Dovecot does: fd 3 carries the credentials, no PATH/HOME."""
    environment = {"SERVICE": "imap", "TCPREMOTEIP": "192.0.2.44", "TCPLOCALIP": "127.0.0.1"}
    if socket_path:
        environment["TWOSTEP_SOCKET"] = socket_path
    environment.update(env or {})
    read_end, write_end = os.pipe()
    if data is not None:
        os.write(write_end, data)
    os.close(write_end)
    dovecot = pwd.getpwnam("dovecot")

    def child() -> None:
        if data is not None:
            os.dup2(read_end, 3)
        else:
            os.closerange(3, 4)
        if as_dovecot:
            os.setgid(dovecot.pw_gid)
            os.setuid(dovecot.pw_uid)

    command = [*(extra or []), str(program)] if extra else [str(program)]
    try:
        return subprocess.run(
            [*command, *(argv if argv is not None else ["/usr/bin/env"])],
            # preexec_fn runs before the unlisted descriptors are closed: keep 3 listed
            env=environment,
            preexec_fn=child,
            pass_fds=(read_end, 3) if data is not None else (),
            capture_output=True,
            timeout=30,
            check=False,
            cwd="/",
        )
    finally:
        os.close(read_end)


def credentials(user: str, password: str) -> bytes:
    return user.encode() + b"\0" + password.encode() + b"\0\0"
